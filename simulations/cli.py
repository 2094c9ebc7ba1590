"""``ringmesh sim run SCENARIO.toml --out DIR`` (also ``python -m simulations run ...``).

A scenario with a ``[sweep]`` table runs every point of the sweep in parallel (processes,
or a Dask cluster with ``--dask ADDRESS``); ``--no-sweep`` runs just the base scenario.
``--set KEY=VALUE`` overrides any scenario value (``--set ring.nodes=2000``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ring.cli import dispatch

from . import memory


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario file (TOML)")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a scenario value, e.g. ring.nodes=2000 (repeatable)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-sweep", action="store_true", help="ignore [sweep]: one run")
    p.add_argument("--workers", type=int, default=None, help="sweep processes (default: cores-1)")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run sweep points on a Dask distributed scheduler")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--malloc", choices=memory.CHOICES, default="auto",
                   help="allocator: mimalloc on huge pages, about a tenth faster for large "
                        "rings (auto: when installed), or CPython's pymalloc; results are "
                        "the same either way")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="run ring simulations (scenarios, sweeps)")
    s = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    r = s.add_parser("run", help="run a scenario file and write results, summary, plots")
    add_run_arguments(r)
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.scenario in sys.argv:
        # Run from a command line: start it again on the allocator asked for if need be.
        # (Called from inside another program, the process is not this command's to restart.)
        memory.ensure(args.malloc)
    from . import scenario as sc
    from .runner import run_scenario
    from .sweep import run_sweep

    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    if args.no_plots:
        overrides.append("plots=false")
    d, base = sc.load(args.scenario, overrides)
    if args.no_sweep:
        d["sweep"] = None
    show = not args.quiet and sys.stderr.isatty()
    if d["sweep"] is not None:
        doc = run_sweep(d, args.out, base_dir=base, workers=args.workers,
                        dask_address=args.dask, progress=show)
        for pt in doc["points"]:
            print(json.dumps({"value": pt["value"], **pt["metrics"]}))
        print(f"sweep of {len(doc['points'])} points written to {args.out} "
              f"in {doc['wall_seconds']} s")
        return 0
    summary = run_scenario(d, args.out, base_dir=base, progress=show)
    brief = {k: summary[k] for k in ("name", "seed", "nodes", "active_at_end", "events_run",
                                     "wall_seconds") if k in summary}
    for kind in ("lookup", "probe", "stanza"):
        if kind in summary:
            s = summary[kind]
            brief[kind] = {k: s[k] for k in ("requests", "failed_fraction", "hops_mean",
                                             "latency_p50", "latency_p99", "timeouts_mean")}
    print(json.dumps(brief, indent=2))
    print(f"results written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations",
                                     description="ringmesh ring simulator")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("run", help="run a scenario file")
    add_run_arguments(r)
    r.set_defaults(func=run)
    return dispatch(parser, argv, "simulations")
