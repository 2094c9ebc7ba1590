"""The compiled build of the hot modules (``ring.compiled``) against the interpreted one.

    .venv/bin/python -m benchmarks.bench_compiled [--slice SECONDS] [--repeat K]
                                                  [--nodes N] [--full] [--no-check]

Builds the modules with mypyc in a copy of the source tree (a temporary directory: the
checkout itself is left as it is), beside a second, uncompiled copy, then

1. checks determinism: small scenarios (churn with stanzas and lookups; a mass failure
   with probes; lossy links with joins) run in a child process per build, and their
   results.ndjson must be the same bytes -- the command fails otherwise;
2. measures the 10^5-node churn hour of bench_sim both ways, alternately, K times: CPU
   per event (process time, so a shared machine disturbs it less than wall time), events
   per simulated second (the same both ways: the same events run), and the hour's CPU
   projected from a slice of S simulated seconds after the warm-up, or measured whole
   (``--full``, about 20 + 13 minutes).

Needs mypy (``pip install -e '.[fast]'``) and a C compiler.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TREE = ("ring", "simulations", "topology", "edge", "benchmarks", "tests", "pyproject.toml")

# (scenario file, overrides): small and quick; between them churn, lossy links, a mass
# failure, the underlay latency model, and every kind of record.
SCENARIOS = (
    ("simulations/scenarios/fig12_churn.toml",
     ["ring.nodes=500", "warmup=120", "duration=1800", "churn.join_rate=0.1",
      "churn.fail_rate=0.1", "latency.loss=0.01"]),
    ("simulations/scenarios/fig11_mass_failure.toml",
     ["ring.nodes=1000", "events.0.fraction=0.3"]),
    ("simulations/scenarios/exp4_latency_stretch.toml", ["ring.nodes=200"]),
)

CHILD = """
import json, sys, time
from ring.compiled import describe
from benchmarks.bench_sim import churn_hour
ch = churn_hour(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "full")
ch["core"] = describe()
print(json.dumps(ch))
"""


def copy_tree(dest: Path) -> Path:
    dest.mkdir(parents=True)
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", ".pytest_cache", "build")
    for name in TREE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=skip)
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def _run(tree: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _core(tree: Path) -> str:
    proc = _run(tree, ["-c", "from ring.compiled import describe; print(describe())"], 120)
    return proc.stdout.strip() or proc.stderr.strip()[-300:]


def check_determinism(trees: dict[str, Path], work: Path) -> bool:
    ok = True
    for scenario, sets in SCENARIOS:
        digests = {}
        for kind, tree in trees.items():
            out = work / f"{Path(scenario).stem}-{kind}"
            args = ["-m", "simulations", "run", scenario, "--out", str(out), "--no-plots",
                    "--no-sweep", "--quiet"]
            for s in sets:
                args += ["--set", s]
            c0 = time.perf_counter()
            proc = _run(tree, args, 1800)
            if proc.returncode != 0:
                print(f"  {scenario} ({kind}) failed: {proc.stderr.strip()[-800:]}")
                return False
            data = (out / "results.ndjson").read_bytes()
            digests[kind] = (hashlib.sha256(data).hexdigest(), data.count(b"\n"),
                             time.perf_counter() - c0)
        same = len({d[0] for d in digests.values()}) == 1 and digests["compiled"][1] > 0
        ok = ok and same
        print(f"  {Path(scenario).stem} ({', '.join(sets)}): "
              + "; ".join(f"{k} {d[1]:,} records sha256 {d[0][:16]} in {d[2]:.0f} s"
                          for k, d in digests.items())
              + f" -> {'SAME BYTES' if same else 'DIFFERENT'}", flush=True)
    return ok


def churn(tree: Path, nodes: int, slice_s: float, full: bool) -> dict[str, Any]:
    proc = _run(tree, ["-c", CHILD, str(nodes), str(slice_s), "full" if full else "slice"],
                4 * 3600)
    if proc.returncode != 0:
        raise SystemExit(f"churn run failed in {tree}: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_compiled")
    ap.add_argument("--slice", type=float, default=120.0,
                    help="simulated seconds of the churn hour to time after the warm-up")
    ap.add_argument("--full", action="store_true", help="time the whole churn hour instead")
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs of each build")
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--no-check", action="store_true", help="skip the determinism check")
    ap.add_argument("--keep", default=None, help="build in this directory and keep it")
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])

    from ring.compiled import MODULES, build

    with tempfile.TemporaryDirectory(prefix="ringmesh-compiled-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        trees = {"interpreted": copy_tree(work / "interpreted"),
                 "compiled": copy_tree(work / "compiled")}
        t0 = time.perf_counter()
        build(trees["compiled"])
        print(f"mypyc build of {len(MODULES)} modules: {time.perf_counter() - t0:.0f} s wall")
        for kind, tree in trees.items():
            print(f"{kind:>11}: {_core(tree)}", flush=True)
        ok = True
        if not args.no_check:
            print("determinism: the same scenario and seed in both builds", flush=True)
            ok = check_determinism(trees, work)
            print(f"determinism: {'PASS' if ok else 'FAIL'}", flush=True)
        rows: dict[str, list[dict[str, Any]]] = {"interpreted": [], "compiled": []}
        for rep in range(args.repeat):
            for kind, tree in trees.items():
                ch = churn(tree, args.nodes, args.slice, args.full)
                rows[kind].append(ch)
                word = "whole hour" if args.full else f"slice of {ch['simulated_s']:.0f} s"
                print(f"churn {ch['nodes']:,} nodes, {word}, {kind:>11}: "
                      f"{ch['cpu_us_per_event']:.2f} us CPU/event, "
                      f"{ch['events'] / ch['simulated_s']:,.0f} events/simulated s, "
                      f"build + warm-up {ch['setup_s']:.0f} s, hour CPU "
                      f"{'' if args.full else '(projected) '}{ch['hour_cpu_s'] / 60:.1f} min, "
                      f"lookups ok {ch['lookups_ok']}/{ch['lookups']}", flush=True)
        same = all(a["events"] == b["events"] and a["lookups_ok"] == b["lookups_ok"]
                   for a, b in zip(rows["interpreted"], rows["compiled"]))
        ratio = [a["cpu_us_per_event"] / b["cpu_us_per_event"]
                 for a, b in zip(rows["interpreted"], rows["compiled"])]
        hour = [b["hour_cpu_s"] / 60 for b in rows["compiled"]]
        verdict = ("not judged here (a slice)" if not args.full or args.nodes < 100_000
                   else "MET" if max(hour) <= 10 else "NOT MET")
        print(f"compiled / interpreted: {min(ratio):.2f}-{max(ratio):.2f} x less CPU per "
              f"event; same events both ways: {same}; compiled hour "
              f"{min(hour):.1f}-{max(hour):.1f} min of CPU (goal <= 10 min: {verdict})")
        ok = ok and same
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
