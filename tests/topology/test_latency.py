import math
import random

import networkx as nx
import pytest

from topology.generators import generate
from topology.latency import (
    ConstantLatency,
    Euclidean,
    MatrixLatency,
    PairwiseUniform,
    UnderlayLatency,
    read_rtt_matrix,
)


def test_pairwise_uniform_is_fixed_symmetric_and_uniform():
    m = PairwiseUniform(10, 50, seed=7)
    rng = random.Random(1)
    pairs = [(rng.randrange(10**6), rng.randrange(10**6)) for _ in range(20000)]
    vals = [m.latency(a, b) for a, b in pairs if a != b]
    assert all(0.010 <= v <= 0.050 for v in vals)
    assert sum(vals) / len(vals) == pytest.approx(0.030, abs=0.0005)
    # roughly flat: each fifth of the range holds about a fifth of the pairs
    for k in range(5):
        lo, hi = 0.010 + k * 0.008, 0.010 + (k + 1) * 0.008
        assert 0.18 < sum(lo <= v < hi for v in vals) / len(vals) < 0.22
    a, b = pairs[0]
    assert m.latency(a, b) == m.latency(b, a) == m.latency(a, b)
    assert m.latency(5, 5) == 0.0
    assert PairwiseUniform(10, 50, seed=8).latency(a, b) != m.latency(a, b)


def test_pairwise_uniform_delays_of_related_pairs_are_unrelated():
    """Node indices come in order, so pairs such as (i, i + 1) and (i, i + 2) are common:
    their delays must not follow each other, nor those of two seeds."""
    import statistics

    m, other = PairwiseUniform(0, 100, seed=1), PairwiseUniform(0, 100, seed=2)
    near = [m.latency(i, i + 1) for i in range(20000)]
    nearer = [m.latency(i, i + 2) for i in range(20000)]
    assert abs(statistics.correlation(near, nearer)) < 0.03
    assert abs(statistics.correlation(near[:-1], near[1:])) < 0.03
    assert abs(statistics.correlation(near, [other.latency(i, i + 1) for i in range(20000)])) < 0.03
    row = [m.latency(3, j) for j in range(4, 20004)]  # one node's delays to all others
    for k in range(5):
        assert 0.18 < sum(k * 0.02 <= v < (k + 1) * 0.02 for v in row) / len(row) < 0.22
    assert 0 <= m.latency(2**40, 7) <= 0.1  # any index is accepted


def test_constant_and_euclidean():
    assert ConstantLatency(25).latency(1, 2) == 0.025
    e = Euclidean(span_ms=100, base_ms=1, seed=3)
    d = e.latency(0, 1)
    assert 0.001 <= d <= 0.001 + 0.1 * math.sqrt(2)
    assert e.latency(1, 0) == d
    # triangle inequality up to the base delay
    assert e.latency(0, 2) <= e.latency(0, 1) + e.latency(1, 2)


def test_underlay_latency_is_shortest_path_plus_access():
    g = generate("transit-stub", seed=2, transit_domains=2, transit_size=3,
                 stubs_per_transit=2, stub_size=4)
    m = UnderlayLatency(g, seed=5, attach="stub", access_ms=(1.0, 3.0))
    sp = dict(nx.all_pairs_dijkstra_path_length(g, weight="latency_ms"))
    for a, b in [(0, 1), (3, 17), (40, 2), (7, 7)]:
        got = m.latency(a, b)
        if a == b:
            assert got == 0.0
            continue
        ha, hb = m.place(a), m.place(b)
        assert g.nodes[ha]["role"] == "stub" and g.nodes[hb]["role"] == "stub"
        want = sp[ha][hb] / 1000 + m.access[a] + m.access[b]
        assert got == pytest.approx(want)
        assert 0.001 <= m.access[a] <= 0.003
    # the first nodes each get their own stub router
    hosts = [m.place(i) for i in range(24)]
    assert len(set(hosts)) == 24


def test_underlay_rejects_disconnected_and_unweighted():
    g = nx.Graph()
    g.add_edge(0, 1, latency_ms=1.0)
    g.add_edge(2, 3, latency_ms=1.0)
    with pytest.raises(ValueError, match="not connected"):
        UnderlayLatency(g)
    h = nx.path_graph(3)
    with pytest.raises(ValueError, match="latency_ms"):
        UnderlayLatency(h)


def test_rtt_matrix_file_with_gaps(tmp_path):
    p = tmp_path / "king.txt"
    p.write_text("# rtt in microseconds\n0 20000 -1\n20000 0 40000\n60000 40000 0\n")
    rows = read_rtt_matrix(p, unit="us")
    assert rows[0][2] == 60.0  # filled from the symmetric entry
    assert rows[1][2] == 40.0
    m = MatrixLatency(rows, seed=1)
    hosts = [m.place(i) for i in range(3)]
    assert sorted(hosts) == [0, 1, 2]
    a, b = hosts.index(0), hosts.index(1)
    assert m.latency(a, b) == pytest.approx(0.010)  # one-way = RTT / 2
    assert m.latency(3, 4) >= 0.0  # more nodes than hosts: hosts are shared


@pytest.mark.parametrize("text,msg", [
    ("0 1\n1\n", "expected 2"),
    ("0 x1\n1 0\n", "not a number"),
    ("# nothing\n", "empty"),
])
def test_bad_matrix_files(tmp_path, text, msg):
    p = tmp_path / "m.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match=msg):
        read_rtt_matrix(p)
