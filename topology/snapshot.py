"""A live ring as a graph: status records in, a networkx graph and a picture out.

A status record is what one node knows of its neighbourhood: its id and address, its
successor list, its predecessor and its fingers. Records come from somewhere else -- a
live node's admin channel, a file, a simulation -- through a *fetcher*, a plain function
``fetch(address) -> StatusRecord``, so this module never opens a socket itself.

``crawl`` starts at one address and follows successors and fingers breadth-first, fetching
each node it has an address for, up to ``max_nodes``. The graph is directed: one edge per
pointer, ``kind`` "successor" (with ``rank``), "predecessor" or "finger" (with ``index``);
nodes carry ``addr``, ``short`` (top 32 bits of the id, hex) and ``queried`` (whether its
own record was read, rather than only seen in others').
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

MAX_NODES = 100_000
MAX_RECORDS_FILE = 256 << 20


@dataclass(frozen=True)
class Pointer:
    id: int
    addr: str


@dataclass(frozen=True)
class StatusRecord:
    id: int
    addr: str
    successors: tuple[Pointer, ...] = ()
    predecessor: Pointer | None = None
    fingers: tuple[tuple[int, Pointer], ...] = field(default=())  # (index, node)

    @classmethod
    def from_status(cls, st: dict[str, Any]) -> StatusRecord:
        """Parse the ``status`` answer of a live node's admin channel (ids as hex strings)."""
        try:
            me = _ptr(st["node"])
            if me is None:
                raise ValueError("status without its own node")
            succ = tuple(p for p in (_ptr(s) for s in st.get("successors") or ()) if p)
            fing = tuple((int(f["index"]), p) for f in st.get("fingers") or ()
                         if (p := _ptr(f)) is not None)
            return cls(me.id, me.addr, succ, _ptr(st.get("predecessor")), fing)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed status record: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        def p(x: Pointer | None) -> dict[str, str] | None:
            return None if x is None else {"id": f"{x.id:x}", "addr": x.addr}

        return {"node": {"id": f"{self.id:x}", "addr": self.addr},
                "successors": [p(s) for s in self.successors], "predecessor": p(self.predecessor),
                "fingers": [{"index": i, **p(f)} for i, f in self.fingers]}  # type: ignore[dict-item]


def _ptr(d: Any) -> Pointer | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise ValueError("a node pointer is a map with id and addr")
    raw = d["id"]
    node_id = int(raw, 16) if isinstance(raw, str) else int(raw)
    if node_id < 0:
        raise ValueError("negative node id")
    addr = str(d.get("addr", ""))
    if len(addr) > 255:
        raise ValueError("address longer than 255 characters")
    return Pointer(node_id, addr)


Fetcher = Callable[[str], StatusRecord]


def to_graph(records: Iterable[StatusRecord], *, bits: int = 160) -> nx.DiGraph:
    """The ring as a directed graph of pointers; nodes are keyed by integer id."""
    g = nx.DiGraph(kind="ring-snapshot", bits=bits)
    width = (min(bits, 32) + 3) // 4
    shift = max(bits - 32, 0)

    def add(p: Pointer | StatusRecord, queried: bool = False) -> None:
        if p.id not in g:
            g.add_node(p.id, addr=p.addr, short=format(p.id >> shift, f"0{width}x"),
                       queried=queried)
        elif queried:
            g.nodes[p.id]["queried"] = True

    for r in records:
        add(r, queried=True)
        for rank, s in enumerate(r.successors):
            add(s)
            if s.id != r.id and not (g.has_edge(r.id, s.id)
                                     and g.edges[r.id, s.id]["kind"] == "successor"):
                g.add_edge(r.id, s.id, kind="successor", rank=rank)
        if r.predecessor is not None and r.predecessor.id != r.id:
            add(r.predecessor)
            if not g.has_edge(r.id, r.predecessor.id):
                g.add_edge(r.id, r.predecessor.id, kind="predecessor")
        for idx, f in r.fingers:
            add(f)
            if f.id == r.id:
                continue
            if not g.has_edge(r.id, f.id):
                g.add_edge(r.id, f.id, kind="finger", index=idx)
            elif g.edges[r.id, f.id]["kind"] != "finger":
                g.edges[r.id, f.id].setdefault("finger_index", idx)  # also a finger
    return g


def crawl(start: str, fetch: Fetcher, *, max_nodes: int = 1000,
          on_error: Callable[[str, Exception], None] | None = None) -> list[StatusRecord]:
    """Fetch ``start``, then every node its successors and fingers point at, breadth-first."""
    if not 1 <= max_nodes <= MAX_NODES:
        raise ValueError(f"max_nodes must be in 1..{MAX_NODES}")
    seen = {start}
    queue = deque([start])
    out: list[StatusRecord] = []
    while queue and len(out) < max_nodes:
        addr = queue.popleft()
        try:
            rec = fetch(addr)
        except (OSError, ValueError) as exc:
            if on_error is not None:
                on_error(addr, exc)
            continue
        out.append(rec)
        for p in (*rec.successors, *(f for _, f in rec.fingers)):
            if p.addr and p.addr not in seen:
                seen.add(p.addr)
                queue.append(p.addr)
    return out


def read_records(path: str | Path) -> list[StatusRecord]:
    """Records saved as JSON: a list of status maps (as the admin channel answers)."""
    p = Path(path)
    if p.stat().st_size > MAX_RECORDS_FILE:
        raise ValueError(f"{p}: larger than {MAX_RECORDS_FILE} bytes")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not JSON: {exc}") from None
    if isinstance(data, dict) and "records" in data:
        data = data["records"]
    if not isinstance(data, list):
        raise ValueError(f"{p}: expected a list of status records")
    return [StatusRecord.from_status(d.get("status", d) if isinstance(d, dict) else d)
            for d in data]


def records_from_cores(cores: Iterable[Any]) -> list[StatusRecord]:
    """Status records straight from ring cores (simulations, in-memory clusters)."""
    out = []
    for c in cores:
        t = c.table
        out.append(StatusRecord(
            c.me.id, c.me.addr, tuple(Pointer(s.id, s.addr) for s in t.successors),
            None if t.predecessor is None else Pointer(t.predecessor.id, t.predecessor.addr),
            tuple((i, Pointer(f.id, f.addr)) for i, f in sorted(t.fingers.items()))))
    return out


def draw(g: nx.DiGraph, path: str | Path, *, title: str | None = None,
         label_limit: int = 64) -> Path:
    """Draw the ring: nodes at their angle on the id circle, immediate successors around it,
    fingers as chords (the rest of each successor list stays in the graph file, not drawn). Labels (short ids) only for rings of at most ``label_limit`` nodes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bits = int(g.graph.get("bits", 160))
    pos = {}
    for n in g.nodes:
        a = 2 * math.pi * (n / float(1 << bits))
        pos[n] = (math.sin(a), math.cos(a))  # clockwise from the top, like the paper
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="#dddddd"))
    groups = {
        ("#7fa7d9", 0.5): lambda d: d.get("kind") == "finger" or "finger_index" in d,
        ("#333333", 0.9): lambda d: d.get("kind") == "successor" and d.get("rank") == 0,
    }
    for (colour, alpha), wanted in groups.items():
        edges = [(u, v) for u, v, d in g.edges(data=True) if wanted(d)]
        if edges:
            arrows = {"arrows": True, "arrowsize": 6} if len(g) <= 200 else {"arrows": False}
            nx.draw_networkx_edges(g, pos, edgelist=edges, ax=ax, edge_color=colour, alpha=alpha,
                                   width=0.7, **arrows)
    queried = [n for n, d in g.nodes(data=True) if d.get("queried")]
    others = [n for n in g.nodes if n not in set(queried)]
    size = 30 if len(g) <= 200 else 6
    nx.draw_networkx_nodes(g, pos, nodelist=queried, node_size=size, node_color="#d9534f", ax=ax)
    if others:
        nx.draw_networkx_nodes(g, pos, nodelist=others, node_size=size, node_color="#aaaaaa",
                               ax=ax)
    if len(g) <= label_limit:
        labels = {n: g.nodes[n].get("short", "") for n in g.nodes}
        lp = {n: (x * 1.12, y * 1.12) for n, (x, y) in pos.items()}
        nx.draw_networkx_labels(g, lp, labels=labels, font_size=6, ax=ax)
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_aspect("equal")
    ax.axis("off")
    n_f = sum(1 for *_, d in g.edges(data=True) if d.get("kind") == "finger" or "finger_index" in d)
    ax.set_title(title or f"ring snapshot: {len(g)} nodes ({len(queried)} queried); "
                          f"black: successors, blue: {n_f} finger pointers", fontsize=9)
    p = Path(path)
    fig.tight_layout()
    fig.savefig(p, dpi=120)
    plt.close(fig)
    return p
