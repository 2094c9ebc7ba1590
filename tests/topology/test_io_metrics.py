import networkx as nx
import pytest

from topology.generators import generate
from topology.io import read_graph, write_graph
from topology.metrics import degree_stats, diameter, path_stretch


@pytest.mark.parametrize("ext", [".graphml", ".json"])
def test_round_trip_keeps_structure_and_latency(tmp_path, ext):
    g = generate("waxman", seed=3, n=50)
    p = write_graph(g, tmp_path / f"g{ext}")
    h = read_graph(p)
    assert sorted(h.nodes) == sorted(g.nodes)
    assert sorted((min(u, v), max(u, v), round(w, 9)) for u, v, w in h.edges(data="latency_ms")) \
        == sorted((min(u, v), max(u, v), round(w, 9)) for u, v, w in g.edges(data="latency_ms"))
    assert h.nodes[0]["x"] == pytest.approx(g.nodes[0]["x"])


def test_unknown_format_and_bad_files(tmp_path):
    g = nx.path_graph(3)
    with pytest.raises(ValueError, match="unknown graph format"):
        write_graph(g, tmp_path / "g.txt")
    bad = tmp_path / "bad.graphml"
    bad.write_text("<graphml><oops")
    with pytest.raises(ValueError, match="not a GraphML"):
        read_graph(bad)
    badj = tmp_path / "bad.json"
    badj.write_text("{]")
    with pytest.raises(ValueError, match="node-link"):
        read_graph(badj)


def test_metrics_on_known_graphs():
    ring = generate("ring-lattice", n=40, k=4)
    assert diameter(ring) == 10  # 40 vertices, 2 steps per hop, halfway round
    st = degree_stats(ring)
    assert st["mean"] == 4 and st["min"] == st["max"] == 4
    big = nx.cycle_graph(3000)
    assert diameter(big, exact_limit=100) == 1500  # double sweep finds the exact value
    with pytest.raises(ValueError, match="not connected"):
        diameter(nx.Graph([(0, 1), (2, 3)]))


def test_path_stretch():
    pos = {0: 0.0, 1: 1.0, 2: 3.0, 3: 2.0}

    def lat(a, b):
        return abs(pos[a] - pos[b])

    st = path_stretch([[0, 1, 2], [0, 2, 3], [1, 1], [0]], lat)
    # [0,1,2]: 3/3 = 1 ; [0,2,3]: (3+1)/2 = 2
    assert st["paths"] == 2 and st["mean"] == 1.5 and st["max"] == 2.0
