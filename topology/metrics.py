"""Numbers that describe a graph or an overlay over it.

- ``degree_stats``: mean, max, percentiles of vertex degree (heavy tails show in p99/max).
- ``diameter``: longest shortest path in hops (exact below ``exact_limit`` vertices, else a
  lower bound by double sweeps from seeded random starts, which is tight in practice).
- ``path_stretch``: for overlay paths, the ratio of the latency along the overlay hops to
  the direct latency between the endpoints (1 is as good as the underlay allows).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import networkx as nx


def _pct(vals: Sequence[float], q: float) -> float:
    k = max(0, min(len(vals) - 1, int(round(q / 100 * len(vals) + 0.5)) - 1))
    return vals[k]


def degree_stats(g: nx.Graph) -> dict[str, Any]:
    degs = sorted(d for _, d in g.degree())
    if not degs:
        return {"vertices": 0}
    return {"vertices": len(degs), "edges": g.number_of_edges(),
            "mean": round(sum(degs) / len(degs), 4), "min": degs[0], "p50": _pct(degs, 50),
            "p99": _pct(degs, 99), "max": degs[-1]}


def diameter(g: nx.Graph, *, exact_limit: int = 2000, sweeps: int = 8, seed: int = 0) -> int:
    """Diameter in hops of a connected graph (directed graphs: of the underlying graph)."""
    u = g.to_undirected() if g.is_directed() else g
    if u.number_of_nodes() == 0:
        raise ValueError("empty graph has no diameter")
    if not nx.is_connected(u):
        raise ValueError("graph is not connected: diameter is infinite")
    if u.number_of_nodes() <= exact_limit:
        return int(nx.diameter(u))
    rng = random.Random(seed)
    nodes = sorted(u.nodes, key=str)
    best = 0
    for _ in range(sweeps):
        start = rng.choice(nodes)
        dist = nx.single_source_shortest_path_length(u, start)
        far = max(dist, key=lambda n: (dist[n], str(n)))
        dist2 = nx.single_source_shortest_path_length(u, far)
        best = max(best, max(dist2.values()))
    return best


def path_latency(path: Sequence[int], latency: Callable[[int, int], float]) -> float:
    return sum(latency(a, b) for a, b in zip(path, path[1:]))


def path_stretch(paths: Iterable[Sequence[int]],
                 latency: Callable[[int, int], float]) -> dict[str, Any]:
    """Stretch of overlay paths (sequences of overlay node indices) under a latency model."""
    vals = []
    for p in paths:
        if len(p) < 2 or p[0] == p[-1]:
            continue
        direct = latency(p[0], p[-1])
        if direct <= 0:
            continue
        vals.append(path_latency(p, latency) / direct)
    vals.sort()
    if not vals:
        return {"paths": 0}
    return {"paths": len(vals), "mean": round(sum(vals) / len(vals), 4),
            "p50": round(_pct(vals, 50), 4), "p99": round(_pct(vals, 99), 4),
            "max": round(vals[-1], 4)}


def latency_summary(g: nx.Graph, *, sample: int = 200, seed: int = 0,
                    weight: str = "latency_ms") -> dict[str, Any]:
    """Shortest-path latency between sampled vertex pairs of a weighted underlay (ms)."""
    rng = random.Random(seed)
    nodes = sorted(g.nodes, key=str)
    if len(nodes) < 2:
        return {"pairs": 0}
    srcs = rng.sample(nodes, min(sample, len(nodes)))
    vals = []
    for s in srcs[: max(1, min(20, len(srcs)))]:
        dist = nx.single_source_dijkstra_path_length(g, s, weight=weight)
        for t in rng.sample(nodes, min(sample // 10 + 1, len(nodes))):
            if t != s and t in dist:
                vals.append(dist[t])
    vals.sort()
    if not vals:
        return {"pairs": 0}
    return {"pairs": len(vals), "mean_ms": round(sum(vals) / len(vals), 3),
            "p50_ms": round(_pct(vals, 50), 3), "p99_ms": round(_pct(vals, 99), 3)}
