import json

import networkx as nx
import pytest

from ring.cli import main
from ring.config import RingConfig
from simulations.driver import Simulation
from simulations.oracle import build_static_ring
from topology.latency import ConstantLatency
from topology.snapshot import StatusRecord, crawl, draw, read_records, records_from_cores, to_graph


def _ring(n=24):
    sim = Simulation(RingConfig(expected_nodes=n), seed=1, latency=ConstantLatency(1), ids="hash")
    build_static_ring(sim, n)
    return sim


def test_graph_of_a_converged_ring():
    sim = _ring()
    g = to_graph(records_from_cores(sim.nodes))
    assert g.number_of_nodes() == 24
    succ = nx.DiGraph([(u, v) for u, v, d in g.edges(data=True)
                       if d["kind"] == "successor" and d["rank"] == 0])
    assert nx.is_isomorphic(succ, nx.cycle_graph(24, create_using=nx.DiGraph))
    assert all(g.nodes[n]["queried"] for n in g.nodes)
    fingers = [d["index"] for *_, d in g.edges(data=True) if d["kind"] == "finger"]
    assert fingers and all(0 <= i < 160 for i in fingers)


def test_admin_status_records_parse_and_bad_ones_are_rejected():
    st = {"node": {"id": "0a", "addr": "h:1"},
          "predecessor": {"id": "ff", "addr": "h:3"},
          "successors": [{"id": "1b", "addr": "h:2", "link": "up"}],
          "fingers": [{"index": 150, "id": "1b", "addr": "h:2"}]}
    r = StatusRecord.from_status(st)
    assert (r.id, r.addr, r.successors[0].id, r.predecessor.id, r.fingers[0][0]) == \
        (10, "h:1", 27, 255, 150)
    for bad in ({}, {"node": None}, {"node": {"id": "zz"}}, {"node": {"id": "1"},
                                                             "successors": [5]}):
        with pytest.raises(ValueError, match="malformed status record"):
            StatusRecord.from_status(bad)


def test_crawl_follows_pointers_and_survives_unreachable_nodes():
    sim = _ring(30)
    recs = {r.addr: r for r in records_from_cores(sim.nodes)}
    dead = sim.refs[7].addr
    errors = []

    def fetch(addr):
        if addr == dead:
            raise OSError("connection refused")
        return recs[addr]

    got = crawl(sim.refs[0].addr, fetch, on_error=lambda a, e: errors.append(a))
    assert len(got) == 29 and errors == [dead]
    assert len(crawl(sim.refs[0].addr, fetch, max_nodes=5)) == 5


def test_cli_snapshot_from_records_writes_graphml_and_png(tmp_path):
    sim = _ring(16)
    recs = tmp_path / "recs.json"
    recs.write_text(json.dumps([r.to_json() for r in records_from_cores(sim.nodes)]))
    back = read_records(recs)
    assert [r.id for r in back] == [n.me.id for n in sim.nodes]
    out, png = tmp_path / "ring.graphml", tmp_path / "ring.png"
    assert main(["topology", "snapshot", "--records", str(recs), "--out", str(out),
                 "--png", str(png)]) == 0
    g = nx.read_graphml(out)
    assert g.number_of_nodes() == 16
    assert png.stat().st_size > 5000


def test_cli_snapshot_with_a_custom_fetcher(tmp_path, monkeypatch):
    sim = _ring(10)
    recs = {r.addr: r for r in records_from_cores(sim.nodes)}
    import types
    import sys

    mod = types.ModuleType("fake_fetch_mod")
    mod.fetch = lambda addr: recs[addr]
    monkeypatch.setitem(sys.modules, "fake_fetch_mod", mod)
    out = tmp_path / "r.json"
    assert main(["topology", "snapshot", sim.refs[0].addr, "--crawl", "--fetcher",
                 "fake_fetch_mod:fetch", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["nodes"]) == 10


def test_draw_handles_large_rings(tmp_path):
    sim = _ring(300)
    p = draw(to_graph(records_from_cores(sim.nodes)), tmp_path / "big.png")
    assert p.stat().st_size > 5000
