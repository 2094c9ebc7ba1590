"""Seeded underlay graphs: who is wired to whom, and how long each wire takes.

Every generator returns an undirected ``networkx.Graph`` on vertices ``0..n-1`` whose edges
carry ``latency_ms`` (one-way propagation delay of the link) and whose graph attribute
``kind`` names the generator. Geometric generators also store each vertex's position as
``x``/``y`` (unit square) and derive link latency from distance, so that triangle
inequality roughly holds as it does on the Internet. Graphs are always connected: a
disconnected draw is stitched together with the shortest possible extra links, because a
simulated host that cannot reach the others measures nothing useful.

The same ``seed`` always yields the same graph (networkx's generators take a seed; every
other draw here comes from one ``random.Random(seed)``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx

MAX_VERTICES = 200_000  # an underlay is precomputed per run; beyond this, use a matrix file

# One-way latency across the whole unit square (corner to corner is sqrt(2) times this):
# about a continent, the scale of the wide-area measurements DHT papers simulate.
DEFAULT_SPAN_MS = 100.0
MIN_LINK_MS = 0.1


@dataclass(frozen=True)
class LatencyRange:
    """Link latencies drawn uniformly from [lo, hi] milliseconds."""

    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi:
            raise ValueError(f"latency range needs 0 <= lo <= hi, got [{self.lo}, {self.hi}]")

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(self.lo, self.hi)


def _check_n(n: int, least: int = 1) -> None:
    if not least <= n <= MAX_VERTICES:
        raise ValueError(f"vertex count must be in {least}..{MAX_VERTICES}, got {n}")


def _distance_latency(g: nx.Graph, span_ms: float) -> None:
    for u, v, data in g.edges(data=True):
        d = math.dist((g.nodes[u]["x"], g.nodes[u]["y"]), (g.nodes[v]["x"], g.nodes[v]["y"]))
        data["latency_ms"] = max(d * span_ms, MIN_LINK_MS)


def _positions_to_xy(g: nx.Graph) -> None:
    for _, data in g.nodes(data=True):
        x, y = data.pop("pos")
        data["x"], data["y"] = float(x), float(y)


def _stitch(g: nx.Graph, rng: random.Random, latency: Callable[[int, int], float]) -> None:
    """Join every component to the largest by one extra link, chosen deterministically."""
    comps = sorted((sorted(c) for c in nx.connected_components(g)), key=lambda c: (-len(c), c[0]))
    main = comps[0]
    for comp in comps[1:]:
        u, v = rng.choice(comp), rng.choice(main)
        g.add_edge(u, v, latency_ms=latency(u, v), stitched=True)
        main = main + comp


def _stitch_geometric(g: nx.Graph, rng: random.Random, span_ms: float) -> None:
    def lat(u: int, v: int) -> float:
        a, b = g.nodes[u], g.nodes[v]
        return max(math.dist((a["x"], a["y"]), (b["x"], b["y"])) * span_ms, MIN_LINK_MS)

    _stitch(g, rng, lat)


def waxman(n: int, *, alpha: float = 0.15, beta: float = 0.4, seed: int = 0,
           span_ms: float = DEFAULT_SPAN_MS) -> nx.Graph:
    """Waxman's random graph: link probability decays with distance (alpha: decay, beta: density)."""
    _check_n(n)
    if not (0 < alpha <= 1 and 0 < beta <= 1):
        raise ValueError("waxman alpha and beta must be in (0, 1]")
    g = nx.waxman_graph(n, beta=beta, alpha=alpha, seed=seed)
    _positions_to_xy(g)
    _distance_latency(g, span_ms)
    _stitch_geometric(g, random.Random(seed), span_ms)
    g.graph.update(kind="waxman", seed=seed, alpha=alpha, beta=beta)
    return g


def random_geometric(n: int, *, radius: float | None = None, seed: int = 0,
                     span_ms: float = DEFAULT_SPAN_MS) -> nx.Graph:
    """Points in the unit square, linked when closer than ``radius`` (default: just above the
    connectivity threshold sqrt(ln n / (pi n)))."""
    _check_n(n)
    if radius is None:
        radius = 1.5 * math.sqrt(math.log(max(n, 2)) / (math.pi * n))
    if not 0 < radius <= 2:
        raise ValueError("random geometric radius must be in (0, 2]")
    g = nx.random_geometric_graph(n, radius, seed=seed)
    _positions_to_xy(g)
    _distance_latency(g, span_ms)
    _stitch_geometric(g, random.Random(seed), span_ms)
    g.graph.update(kind="random-geometric", seed=seed, radius=radius)
    return g


def barabasi_albert(n: int, *, m: int = 2, seed: int = 0,
                    link_ms: LatencyRange = LatencyRange(2.0, 40.0)) -> nx.Graph:
    """Preferential attachment (heavy-tailed degrees, like the AS graph); link latencies are
    drawn from ``link_ms`` since the model has no geometry."""
    _check_n(n, least=2)
    if not 1 <= m < n:
        raise ValueError(f"barabasi-albert m must be in 1..{n - 1}")
    g = nx.barabasi_albert_graph(n, m, seed=seed)
    rng = random.Random(seed)
    for u, v in sorted(g.edges()):
        g.edges[u, v]["latency_ms"] = link_ms.draw(rng)
    g.graph.update(kind="barabasi-albert", seed=seed, m=m)
    return g


def ring_lattice(n: int, *, k: int = 4, link_ms: float = 10.0, seed: int = 0) -> nx.Graph:
    """Each vertex linked to its k nearest neighbours on a circle: long paths, no shortcuts."""
    _check_n(n, least=3)
    if not (2 <= k < n and k % 2 == 0):
        raise ValueError("ring lattice k must be even and in 2..n-1")
    if link_ms <= 0:
        raise ValueError("ring lattice link_ms must be positive")
    g = nx.watts_strogatz_graph(n, k, 0.0, seed=seed)
    nx.set_edge_attributes(g, float(link_ms), "latency_ms")
    g.graph.update(kind="ring-lattice", seed=seed, k=k)
    return g


def transit_stub(*, transit_domains: int = 4, transit_size: int = 8, stubs_per_transit: int = 3,
                 stub_size: int = 8, seed: int = 0, intra_stub_ms: LatencyRange = LatencyRange(1, 5),
                 stub_transit_ms: LatencyRange = LatencyRange(5, 20),
                 intra_transit_ms: LatencyRange = LatencyRange(10, 30),
                 inter_transit_ms: LatencyRange = LatencyRange(30, 100),
                 p_intra: float = 0.5) -> nx.Graph:
    """A two-level Internet-like graph in the manner of GT-ITM's transit-stub model.

    Transit domains form a connected core (a ring of domains plus random extra links); each
    transit vertex hangs ``stubs_per_transit`` stub domains off it. Within a domain,
    vertices are a random connected graph (a spanning path plus links with ``p_intra``).
    Vertices carry ``role`` ("transit"/"stub") and ``domain``; access networks belong on stubs.
    """
    for name, v in (("transit_domains", transit_domains), ("transit_size", transit_size),
                    ("stub_size", stub_size)):
        if v < 1:
            raise ValueError(f"transit-stub {name} must be at least 1")
    if stubs_per_transit < 0:
        raise ValueError("transit-stub stubs_per_transit must be >= 0")
    total = transit_domains * transit_size * (1 + stubs_per_transit * stub_size)
    _check_n(total)
    if not 0 <= p_intra <= 1:
        raise ValueError("transit-stub p_intra must be in [0, 1]")
    rng = random.Random(seed)
    g = nx.Graph()
    nxt = 0

    def domain(size: int, role: str, name: str, lat: LatencyRange) -> list[int]:
        nonlocal nxt
        vs = list(range(nxt, nxt + size))
        nxt += size
        for v in vs:
            g.add_node(v, role=role, domain=name)
        order = vs[:]
        rng.shuffle(order)
        for a, b in zip(order, order[1:]):
            g.add_edge(a, b, latency_ms=lat.draw(rng))
        for i, a in enumerate(vs):
            for b in vs[i + 1:]:
                if not g.has_edge(a, b) and rng.random() < p_intra / max(size - 1, 1) * 2:
                    g.add_edge(a, b, latency_ms=lat.draw(rng))
        return vs

    transits = [domain(transit_size, "transit", f"T{t}", intra_transit_ms)
                for t in range(transit_domains)]
    for t in range(transit_domains):
        if transit_domains > 1 and (t + 1 < transit_domains or transit_domains > 2):
            a = rng.choice(transits[t])
            b = rng.choice(transits[(t + 1) % transit_domains])
            g.add_edge(a, b, latency_ms=inter_transit_ms.draw(rng))
    for t in range(transit_domains):
        for u in range(t + 2, transit_domains):
            if rng.random() < 0.5:
                g.add_edge(rng.choice(transits[t]), rng.choice(transits[u]),
                           latency_ms=inter_transit_ms.draw(rng))
    for t, tv in enumerate(transits):
        for j, hub in enumerate(tv):
            for s in range(stubs_per_transit):
                stub = domain(stub_size, "stub", f"T{t}.{j}.S{s}", intra_stub_ms)
                g.add_edge(hub, rng.choice(stub), latency_ms=stub_transit_ms.draw(rng))
    g.graph.update(kind="transit-stub", seed=seed)
    return g


GENERATORS: dict[str, Callable[..., nx.Graph]] = {
    "waxman": waxman,
    "barabasi-albert": barabasi_albert,
    "random-geometric": random_geometric,
    "transit-stub": transit_stub,
    "ring-lattice": ring_lattice,
}


def generate(kind: str, *, seed: int = 0, **params: object) -> nx.Graph:
    """Build an underlay by generator name; ``params`` are that generator's keyword arguments.

    Latency ranges may be given as ``[lo, hi]`` lists (as they come from TOML or JSON).
    """
    gen = GENERATORS.get(kind)
    if gen is None:
        raise ValueError(f"unknown topology {kind!r}; choose from {', '.join(GENERATORS)}")
    clean: dict[str, object] = {}
    for k, v in params.items():
        if k.endswith("_ms") and isinstance(v, (list, tuple)):
            if len(v) != 2:
                raise ValueError(f"{k} must be [lo, hi]")
            v = LatencyRange(float(v[0]), float(v[1]))
        clean[k] = v
    try:
        return gen(seed=seed, **clean)
    except TypeError as exc:
        raise ValueError(f"bad parameters for topology {kind!r}: {exc}") from None
