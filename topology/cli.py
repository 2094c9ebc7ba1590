"""``ringmesh topology``: generate underlays, measure graphs, snapshot a live ring.

- ``generate KIND --vertices N --out FILE`` writes a seeded underlay (GraphML or JSON);
- ``metrics FILE`` prints degree statistics, diameter and (if weighted) path latencies;
- ``snapshot ADMIN [ADMIN ...] --out ring.graphml [--png ring.png]`` asks each node's
  local admin channel for its status and turns successors and fingers into a graph. With
  ``--crawl`` it also follows the pointers it finds; since admin channels listen only
  locally, the fetcher must know where each ring address's admin channel is
  (``--admin-map map.json``: ``{"ring-host:port": "unix:/path.sock", ...}``), or be
  replaced (``--fetcher package.module:function``, any ``fetch(addr) -> StatusRecord``).
  ``--records FILE`` draws saved status records instead (no network at all).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from .generators import GENERATORS, generate
from .io import read_graph, write_graph
from .metrics import degree_stats, diameter, latency_summary
from .snapshot import Fetcher, StatusRecord, crawl, draw, read_records, to_graph


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("topology", help="underlay graphs, metrics, and ring snapshots")
    s = p.add_subparsers(dest="topology_command", metavar="SUBCOMMAND")

    g = s.add_parser("generate", help="generate a seeded underlay graph")
    g.add_argument("kind", choices=sorted(GENERATORS))
    g.add_argument("--vertices", type=int, default=None,
                   help="vertex count (not for transit-stub: use --param)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="generator parameter, e.g. alpha=0.2 or stub_size=10")
    g.add_argument("--out", required=True, help="output file (.graphml or .json)")
    g.set_defaults(func=cmd_generate)

    m = s.add_parser("metrics", help="degree, diameter and latency statistics of a graph")
    m.add_argument("graph", help="a .graphml or .json graph")
    m.set_defaults(func=cmd_metrics)

    sn = s.add_parser("snapshot", help="a live ring as a graph (GraphML/JSON) and a PNG")
    sn.add_argument("addr", nargs="*", help="admin channel(s) to query (unix:PATH or HOST:PORT)")
    sn.add_argument("--out", required=True, help="graph file to write (.graphml or .json)")
    sn.add_argument("--png", default=None, help="also draw the ring to this PNG")
    sn.add_argument("--records", default=None, help="read status records from a JSON file")
    sn.add_argument("--save-records", default=None, help="write the fetched records as JSON")
    sn.add_argument("--crawl", action="store_true", help="follow successors and fingers")
    sn.add_argument("--admin-map", default=None, help="JSON map: ring address -> admin channel")
    sn.add_argument("--fetcher", default=None, metavar="MODULE:FUNCTION",
                    help="custom fetch(addr) -> StatusRecord")
    sn.add_argument("--max-nodes", type=int, default=1000)
    sn.add_argument("--timeout", type=float, default=10.0, help="per-request time limit (s)")
    sn.add_argument("--bits", type=int, default=160, help="key space bits (for drawing)")
    sn.set_defaults(func=cmd_snapshot)


def _param(text: str) -> tuple[str, Any]:
    k, sep, v = text.partition("=")
    if not sep or not k:
        raise ValueError(f"--param {text!r} is not NAME=VALUE")
    try:
        val: Any = json.loads(v)
    except json.JSONDecodeError:
        val = v
    return k.strip(), val


def cmd_generate(args: argparse.Namespace) -> int:
    params = dict(_param(p) for p in args.param)
    if args.vertices is not None:
        if args.kind == "transit-stub":
            raise ValueError("transit-stub size comes from its parameters (transit_domains, ...)")
        params["n"] = args.vertices
    elif args.kind != "transit-stub":
        raise ValueError("--vertices is required")
    g = generate(args.kind, seed=args.seed, **params)
    write_graph(g, args.out)
    print(json.dumps({"kind": args.kind, "seed": args.seed, **degree_stats(g)}))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    g = read_graph(args.graph)
    out: dict[str, Any] = {"degree": degree_stats(g)}
    try:
        out["diameter_hops"] = diameter(g)
    except ValueError as exc:
        out["diameter_hops"] = str(exc)
    if any("latency_ms" in d for *_, d in g.edges(data=True)) and not g.is_directed():
        out["latency"] = latency_summary(g)
    print(json.dumps(out, indent=2))
    return 0


def admin_fetcher(timeout: float = 10.0, admin_map: dict[str, str] | None = None) -> Fetcher:
    """Fetch status records over live nodes' admin channels (``ring.live.admin``)."""
    try:
        import trio

        from ring.live.admin import admin_call
    except ImportError as exc:
        raise ValueError(f"the live node's admin client is not available ({exc}); "
                         "use --records FILE or --fetcher MODULE:FUNCTION") from None
    amap = admin_map or {}

    def fetch(addr: str) -> StatusRecord:
        spec = amap.get(addr, addr)
        answer = trio.run(admin_call, spec, {"op": "status"}, timeout)
        return StatusRecord.from_status(answer["status"])

    return fetch


def _load_fetcher(spec: str) -> Fetcher:
    mod, sep, fn = spec.partition(":")
    if not sep:
        raise ValueError("--fetcher must be MODULE:FUNCTION")
    try:
        f = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load fetcher {spec!r}: {exc}") from None
    if not callable(f):
        raise ValueError(f"fetcher {spec!r} is not callable")
    return f  # type: ignore[no-any-return]


def cmd_snapshot(args: argparse.Namespace) -> int:
    if args.records:
        records = read_records(args.records)
    else:
        if not args.addr:
            raise ValueError("give at least one admin address, or --records FILE")
        amap = None
        if args.admin_map:
            amap = json.loads(Path(args.admin_map).read_text(encoding="utf-8"))
            if not isinstance(amap, dict):
                raise ValueError("--admin-map must be a JSON object")
        fetch = _load_fetcher(args.fetcher) if args.fetcher else admin_fetcher(args.timeout, amap)
        errors: list[str] = []

        def note(addr: str, exc: Exception) -> None:
            errors.append(f"{addr}: {exc}")

        records = []
        seen: set[int] = set()
        for a in args.addr:
            got = crawl(a, fetch, max_nodes=args.max_nodes, on_error=note) if args.crawl else []
            if not args.crawl:
                try:
                    got = [fetch(a)]
                except (OSError, ValueError) as exc:
                    note(a, exc)
            for r in got:
                if r.id not in seen:
                    seen.add(r.id)
                    records.append(r)
        for e in errors:
            print(f"ringmesh topology: {e}", file=sys.stderr)
        if not records:
            raise ValueError("no status record could be fetched")
    if args.save_records:
        Path(args.save_records).write_text(
            json.dumps([r.to_json() for r in records], indent=1) + "\n", encoding="utf-8")
    g = to_graph(records, bits=args.bits)
    write_graph(g, args.out)
    if args.png:
        draw(g, args.png)
    print(json.dumps({"nodes": g.number_of_nodes(), "queried": len(records),
                      "edges": g.number_of_edges(), "out": args.out, "png": args.png}))
    return 0
