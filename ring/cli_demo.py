"""``ringmesh demo-memory``: an in-memory ring of N cores, routing JIDs and printing every hop."""

from __future__ import annotations

import argparse
import math

from .config import RingConfig
from .events import ProbeResult
from .ids import jid_key
from .keyspace import KeySpace
from .memcluster import InMemoryCluster


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo-memory", help="build an in-memory ring of cores (no sockets) and route JIDs across it")
    p.add_argument("--nodes", type=int, default=64, help="ring size (default 64)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jids", nargs="*", default=None, help="JIDs to route (default: a few)")
    p.set_defaults(func=run)


def describe_route(space: KeySpace, names: dict[int, str], jid: str, key: int,
                   result: ProbeResult) -> str:
    """One line for a probed route: the JID, its key, and every node it crossed."""
    path = " -> ".join(f"{names.get(x, '?')}({space.short(x)})" for x in result.trace)
    return f"  {jid}  key {space.short(key)}  {result.hops} hops: {path}"


def describe_mean_hops(hops: list[int], n_nodes: int) -> str:
    return (f"mean hops {sum(hops) / len(hops):.2f} "
            f"(Chord expects about 1/2 log2 N = {0.5 * math.log2(max(n_nodes, 2)):.2f})")


def run(args: argparse.Namespace) -> int:
    n = args.nodes
    if not 1 <= n <= 100_000:
        raise ValueError("--nodes must be between 1 and 100000")
    cluster = InMemoryCluster(RingConfig(expected_nodes=n), seed=args.seed)
    sp = cluster.space
    for _ in range(n):
        cluster.add_node()
        cluster.run_for(0.05)
    ok = cluster.run_until(lambda: cluster.converged() and cluster.fingers_correct(),
                           timeout=600)
    print(f"ring of {n} nodes built by joins: "
          f"{'converged' if ok else 'NOT converged'} after {cluster.now:.1f} virtual s, "
          f"{cluster.messages_delivered} messages")
    names = {r.id: r.addr for r in cluster.ring_order()}
    jids = args.jids or ["juliet@ring.example", "romeo@ring.example/orchard",
                         "chat.ring.example", "pubsub.ring.example", "nurse@ring.example"]
    origin = cluster.active()[0]
    hops_seen = []
    for jid in jids:
        key = jid_key(sp, jid)
        cluster.probe(origin.me.addr, key)
        cluster.run_for(0.1)
        res = [e for _, e in cluster.events_of(ProbeResult) if e.dest == key]
        if not res:
            print(f"  {jid}: no answer")
            continue
        hops_seen.append(res[-1].hops)
        print(describe_route(sp, names, jid, key, res[-1]))
    if hops_seen:
        print(describe_mean_hops(hops_seen, n))
    return 0
