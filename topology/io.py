"""Read and write graphs as GraphML (for Gephi, yEd, igraph) or JSON (node-link form).

GraphML carries only scalar attributes, so tuples and lists are stored as JSON strings on
the way out and left as strings on the way in; positions are kept as ``x``/``y`` floats.
Files are capped in size before parsing, and XML parsing is networkx's (ElementTree: no
external entities are fetched).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx

MAX_GRAPH_FILE = 512 << 20


def _scalar(v: Any) -> Any:
    if isinstance(v, (bool, int, float, str)):
        return v
    if v is None:
        return ""
    return json.dumps(v, default=str)


def _graphml_safe(g: nx.Graph) -> nx.Graph:
    h = g.copy()
    for k in list(h.graph):
        h.graph[k] = _scalar(h.graph[k])
    for _, d in h.nodes(data=True):
        for k in list(d):
            d[k] = _scalar(d[k])
    for *_, d in h.edges(data=True):
        for k in list(d):
            d[k] = _scalar(d[k])
    return h


def write_graph(g: nx.Graph, path: str | Path) -> Path:
    """Write ``g`` as GraphML (``.graphml``/``.xml``) or JSON (``.json``), by extension."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext in (".graphml", ".xml"):
        nx.write_graphml(_graphml_safe(g), p)
    elif ext == ".json":
        data = nx.node_link_data(g, edges="links")
        p.write_text(json.dumps(data, default=str, indent=1) + "\n", encoding="utf-8")
    else:
        raise ValueError(f"unknown graph format {ext or '(none)'!r}: use .graphml or .json")
    return p


def read_graph(path: str | Path) -> nx.Graph:
    """Read a graph written by ``write_graph`` (or any GraphML / node-link JSON)."""
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_GRAPH_FILE:
        raise ValueError(f"{p}: {size} bytes is over the {MAX_GRAPH_FILE} byte limit")
    ext = p.suffix.lower()
    if ext in (".graphml", ".xml"):
        try:
            g = nx.read_graphml(p, node_type=str)
        except Exception as exc:  # networkx raises several kinds for bad XML
            raise ValueError(f"{p}: not a GraphML graph: {exc}") from None
        return _int_labels(g)
    if ext == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            return nx.node_link_graph(data, edges="links")
        except (json.JSONDecodeError, KeyError, TypeError, nx.NetworkXError) as exc:
            raise ValueError(f"{p}: not a node-link JSON graph: {exc}") from None
    raise ValueError(f"unknown graph format {ext or '(none)'!r}: use .graphml or .json")


def _int_labels(g: nx.Graph) -> nx.Graph:
    """GraphML labels are strings; give integer-looking ones back their integer form."""
    if all(isinstance(n, str) and n.lstrip("-").isdigit() for n in g.nodes):
        return nx.relabel_nodes(g, {n: int(n) for n in g.nodes}, copy=True)
    return g
