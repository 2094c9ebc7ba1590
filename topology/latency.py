"""Per-pair latency between overlay nodes, fixed for a whole run.

Researchers compare runs, so a pair of nodes must see the same delay on every message (a
matrix, not a fresh random draw per message). Every model here maps overlay node indices
``0, 1, 2, ...`` (in creation order, so churn can add nodes at any time) to a one-way
latency in **seconds**; placement of node ``i`` depends only on the seed and ``i``.

- ``ConstantLatency``: the same delay everywhere (a baseline, and for hop-count studies).
- ``PairwiseUniform``: each pair gets its own fixed delay in [lo, hi], from a hash.
- ``Euclidean``: nodes at seeded points of a unit square, delay proportional to distance.
- ``UnderlayLatency``: nodes attached to vertices of a weighted underlay graph; delay is the
  shortest-path latency between the vertices plus both access links.
- ``MatrixLatency``: a measured RTT matrix (King-style): nodes mapped onto its hosts.

Loss is not a latency property; the simulated network applies it per message.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import networkx as nx

MAX_MATRIX_HOSTS = 20_000  # a 20k x 20k float64 matrix is 3.2 GB: the cap on what we load
MAX_MATRIX_BYTES = 2 << 30


class LatencyModel(Protocol):
    def latency(self, a: int, b: int) -> float:
        """One-way latency in seconds from overlay node ``a`` to ``b`` (0 when a == b)."""


class ConstantLatency:
    __slots__ = ("seconds",)

    def __init__(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("latency must be >= 0 ms")
        self.seconds = ms / 1000.0

    def latency(self, a: int, b: int) -> float:
        return 0.0 if a == b else self.seconds


_M30 = (1 << 30) - 1


def _mix30(x: int) -> int:
    """A bijection of 30-bit numbers that scatters every input bit over the output.

    Products of two numbers below 2**30 are what the compiled build multiplies as machine
    words (a 64-bit mix made a dozen big numbers per call: 0.7 us, once per simulated
    message).
    """
    x = ((x ^ (x >> 15)) * 0x2C1B3C6D) & _M30
    x = ((x ^ (x >> 13)) * 0x297A2D39) & _M30
    return x ^ (x >> 15)


class PairwiseUniform:
    """A fixed delay per unordered pair, uniform in [lo, hi] ms, from a hash of (seed, pair):
    no table, so it scales to any number of nodes (pairs are told apart by the low 30 bits
    of the node indices: up to 2**30 nodes in one run)."""

    __slots__ = ("lo", "span", "salt")

    def __init__(self, lo_ms: float, hi_ms: float, *, seed: int = 0) -> None:
        if not 0 <= lo_ms <= hi_ms:
            raise ValueError("uniform latency needs 0 <= lo <= hi")
        self.lo = lo_ms / 1000.0
        self.span = (hi_ms - lo_ms) / 1000.0
        self.salt = _mix30(((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) >> 34) & _M30)

    def latency(self, a: int, b: int) -> float:
        if a == b:
            return 0.0
        if a > b:
            a, b = b, a
        x = _mix30(_mix30(self.salt ^ (a & _M30)) ^ (b & _M30))
        return self.lo + self.span * (x / 1073741824.0)


class Euclidean:
    """Nodes at seeded points of the unit square; delay = distance * span + base."""

    __slots__ = ("span", "base", "_rng", "_x", "_y")

    def __init__(self, *, span_ms: float = 100.0, base_ms: float = 1.0, seed: int = 0) -> None:
        if span_ms < 0 or base_ms < 0:
            raise ValueError("euclidean span_ms and base_ms must be >= 0")
        self.span = span_ms / 1000.0
        self.base = base_ms / 1000.0
        self._rng = random.Random(seed)
        self._x = array("d")
        self._y = array("d")

    def _ensure(self, i: int) -> None:
        while len(self._x) <= i:
            self._x.append(self._rng.random())
            self._y.append(self._rng.random())

    def latency(self, a: int, b: int) -> float:
        if a == b:
            return 0.0
        if a >= len(self._x) or b >= len(self._x):
            self._ensure(max(a, b))
        x, y = self._x, self._y
        return self.base + self.span * math.hypot(x[a] - x[b], y[a] - y[b])


class _Placed:
    """Shared machinery: node i sits on host ``host[i]`` behind an access link."""

    def __init__(self, hosts: Sequence[int], *, access_ms: tuple[float, float], seed: int,
                 distinct_first: bool) -> None:
        if not hosts:
            raise ValueError("no hosts to place overlay nodes on")
        lo, hi = access_ms
        if not 0 <= lo <= hi:
            raise ValueError("access_ms needs 0 <= lo <= hi")
        self._hosts = list(hosts)
        self._rng = random.Random(seed)
        self._order = self._hosts[:]
        if distinct_first:
            self._rng.shuffle(self._order)  # one node per host until every host is used
        else:
            self._order = []
        self._lo, self._hi = lo / 1000.0, hi / 1000.0
        self.host = array("l")
        self.access = array("d")

    def _ensure(self, i: int) -> None:
        rng = self._rng
        while len(self.host) <= i:
            k = len(self.host)
            h = self._order[k] if k < len(self._order) else rng.choice(self._hosts)
            self.host.append(h)
            self.access.append(rng.uniform(self._lo, self._hi))

    def place(self, i: int) -> int:
        """The host (underlay vertex or matrix row) of overlay node ``i``."""
        if i >= len(self.host):
            self._ensure(i)
        return self.host[i]


class UnderlayLatency(_Placed):
    """Shortest-path latency over a weighted underlay (``latency_ms`` on edges).

    Overlay nodes attach to vertices chosen by ``attach``: "any" vertex (each vertex once
    before any is reused), only "stub" vertices (transit-stub graphs: hosts live in access
    networks, not in the backbone), or "degree" (proportionally to vertex degree).
    Shortest paths are computed per source vertex on first use and cached, so only the
    vertices that host nodes cost anything.
    """

    def __init__(self, graph: nx.Graph, *, seed: int = 0, attach: str = "any",
                 access_ms: tuple[float, float] = (0.5, 2.0), weight: str = "latency_ms") -> None:
        if graph.number_of_nodes() == 0:
            raise ValueError("empty underlay graph")
        if not nx.is_connected(graph):
            raise ValueError("underlay graph is not connected")
        try:
            order = sorted(graph.nodes)
        except TypeError:  # mixed label types: any fixed order will do
            order = sorted(graph.nodes, key=str)
        mapping = {v: i for i, v in enumerate(order)}
        self.graph = nx.relabel_nodes(graph, mapping, copy=True)
        self.weight = weight
        for u, v, d in self.graph.edges(data=True):
            w = d.get(weight)
            if not isinstance(w, (int, float)) or w < 0 or math.isnan(w):
                raise ValueError(f"edge {u}-{v} lacks a non-negative {weight!r}")
        verts = sorted(self.graph.nodes)
        if attach == "any":
            hosts = verts
        elif attach == "stub":
            hosts = [v for v in verts if self.graph.nodes[v].get("role") == "stub"]
            if not hosts:
                raise ValueError("attach='stub' needs a graph with stub vertices (transit-stub)")
        elif attach == "degree":
            hosts = [v for v in verts for _ in range(self.graph.degree(v))]
        else:
            raise ValueError(f"unknown attach policy {attach!r} (any, stub, degree)")
        super().__init__(hosts, access_ms=access_ms, seed=seed, distinct_first=attach != "degree")
        self._n = len(verts)
        self._rows: dict[int, array] = {}

    def _row(self, v: int) -> array:
        row = self._rows.get(v)
        if row is None:
            dist = nx.single_source_dijkstra_path_length(self.graph, v, weight=self.weight)
            row = array("d", [0.0]) * self._n
            for u, d in dist.items():
                row[u] = d / 1000.0
            self._rows[v] = row
        return row

    def vertex_latency(self, u: int, v: int) -> float:
        """Shortest-path one-way latency (seconds) between two underlay vertices."""
        if u > v:
            u, v = v, u
        return self._row(u)[v]

    def latency(self, a: int, b: int) -> float:
        if a == b:
            return 0.0
        n = len(self.host)
        if a >= n or b >= n:
            self._ensure(max(a, b))
        u, v = self.host[a], self.host[b]
        if u > v:
            u, v = v, u
        row = self._rows.get(u)
        if row is None:
            row = self._row(u)
        return row[v] + self.access[a] + self.access[b]


def read_rtt_matrix(path: str | Path, *, unit: str = "ms") -> list[array]:
    """Read a square RTT matrix: one row per line, numbers split by whitespace or commas.

    Lines starting with ``#`` are comments. Unknown entries are negative numbers or
    ``nan``/``-``; they are filled from the symmetric entry, else with the median of the
    known RTTs (measured matrices such as King's have gaps). ``unit``: "ms", "us" or "s".
    Returns rows of RTTs in milliseconds.
    """
    scale = {"ms": 1.0, "us": 1e-3, "s": 1e3}.get(unit)
    if scale is None:
        raise ValueError(f"unknown RTT unit {unit!r} (ms, us, s)")
    p = Path(path)
    if p.stat().st_size > MAX_MATRIX_BYTES:
        raise ValueError(f"{p}: matrix file larger than {MAX_MATRIX_BYTES} bytes")
    rows: list[array] = []
    with p.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            vals = array("d")
            for tok in s.replace(",", " ").split():
                if tok in ("-", "nan", "NaN", "x"):
                    vals.append(-1.0)
                    continue
                try:
                    vals.append(float(tok) * scale)
                except ValueError:
                    raise ValueError(f"{p}:{lineno}: not a number: {tok!r}") from None
            rows.append(vals)
            if len(rows) > MAX_MATRIX_HOSTS:
                raise ValueError(f"{p}: more than {MAX_MATRIX_HOSTS} rows")
    n = len(rows)
    if n == 0:
        raise ValueError(f"{p}: empty matrix")
    for i, r in enumerate(rows):
        if len(r) != n:
            raise ValueError(f"{p}: row {i + 1} has {len(r)} entries, expected {n} (square matrix)")
    known = sorted(v for i, r in enumerate(rows) for j, v in enumerate(r)
                   if i != j and v >= 0 and not math.isnan(v))
    median = known[len(known) // 2] if known else 0.0
    for i in range(n):
        for j in range(n):
            v = rows[i][j]
            if i == j:
                rows[i][j] = 0.0
            elif v < 0 or math.isnan(v):
                w = rows[j][i]
                rows[i][j] = w if w >= 0 and not math.isnan(w) else median
    return rows


class MatrixLatency(_Placed):
    """Latency from a measured RTT matrix: one-way = RTT / 2 between the hosts of two nodes,
    plus access links. The first ``hosts`` nodes get distinct hosts; later ones share."""

    def __init__(self, rtt_ms: Sequence[Sequence[float]], *, seed: int = 0,
                 access_ms: tuple[float, float] = (0.0, 0.0)) -> None:
        n = len(rtt_ms)
        if n == 0 or any(len(r) != n for r in rtt_ms):
            raise ValueError("RTT matrix must be square and non-empty")
        super().__init__(range(n), access_ms=access_ms, seed=seed, distinct_first=True)
        self._oneway = [array("d", (v / 2000.0 for v in row)) for row in rtt_ms]

    @classmethod
    def from_file(cls, path: str | Path, *, unit: str = "ms", seed: int = 0,
                  access_ms: tuple[float, float] = (0.0, 0.0)) -> MatrixLatency:
        return cls(read_rtt_matrix(path, unit=unit), seed=seed, access_ms=access_ms)

    def latency(self, a: int, b: int) -> float:
        if a == b:
            return 0.0
        n = len(self.host)
        if a >= n or b >= n:
            self._ensure(max(a, b))
        return self._oneway[self.host[a]][self.host[b]] + self.access[a] + self.access[b]
