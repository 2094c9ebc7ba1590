import networkx as nx
import pytest

from topology.generators import GENERATORS, generate

SIZES = {"transit-stub": {"transit_domains": 2, "transit_size": 4, "stubs_per_transit": 2,
                          "stub_size": 5}}


def _make(kind, seed):
    params = SIZES.get(kind, {"n": 120})
    return generate(kind, seed=seed, **params)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_seeded_connected_and_weighted(kind):
    a, b, c = _make(kind, 1), _make(kind, 1), _make(kind, 2)
    assert sorted(a.edges(data="latency_ms")) == sorted(b.edges(data="latency_ms"))
    if kind != "ring-lattice":  # a lattice has no randomness in its wiring
        assert sorted(a.edges(data="latency_ms")) != sorted(c.edges(data="latency_ms"))
    assert nx.is_connected(a)
    assert sorted(a.nodes) == list(range(a.number_of_nodes()))
    assert all(w > 0 for *_, w in a.edges(data="latency_ms"))
    assert a.graph["kind"] == kind


def test_transit_stub_structure():
    g = generate("transit-stub", seed=3, **SIZES["transit-stub"])
    roles = nx.get_node_attributes(g, "role")
    assert sum(r == "transit" for r in roles.values()) == 8
    assert sum(r == "stub" for r in roles.values()) == 8 * 2 * 5
    # every stub domain reaches the rest only through its transit router
    stub_domains = {d for n, d in g.nodes(data="domain") if roles[n] == "stub"}
    assert len(stub_domains) == 16


def test_geometric_latency_follows_distance():
    g = generate("waxman", seed=4, n=80, span_ms=200.0)
    for u, v, w in list(g.edges(data="latency_ms"))[:50]:
        if g.edges[u, v].get("stitched"):
            continue
        d = ((g.nodes[u]["x"] - g.nodes[v]["x"]) ** 2 + (g.nodes[u]["y"] - g.nodes[v]["y"]) ** 2) ** 0.5
        assert w == pytest.approx(max(d * 200.0, 0.1))


@pytest.mark.parametrize("kind,params,msg", [
    ("waxman", {"n": 0}, "vertex count"),
    ("waxman", {"n": 10, "alpha": 2.0}, "alpha"),
    ("barabasi-albert", {"n": 10, "m": 10}, "m must be"),
    ("ring-lattice", {"n": 10, "k": 3}, "even"),
    ("transit-stub", {"transit_domains": 0}, "at least 1"),
    ("waxman", {"n": 10, "colour": 1}, "bad parameters"),
    ("hypercube", {}, "unknown topology"),
    ("barabasi-albert", {"n": 10, "link_ms": [5, 1]}, "lo <= hi"),
])
def test_bad_parameters_are_clear_errors(kind, params, msg):
    with pytest.raises(ValueError, match=msg):
        generate(kind, seed=0, **params)
