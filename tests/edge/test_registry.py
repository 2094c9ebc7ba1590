"""Edge registry soft state and the per-node directory: expiry, caps, rendezvous choice, forgetting."""

from edge.payload import EdgeEntry
from edge.registry import EdgeDirectory, EdgeRegistry, serves


def test_subdomains_are_served_by_the_parent_domains_edge():
    assert serves(("ring.test",), "ring.test") and serves(("ring.test",), "chat.ring.test")
    assert not serves(("ring.test",), "notring.test") and not serves(("ring.test",), "test")


def test_announcements_live_their_ttl_and_refresh():
    reg = EdgeRegistry()
    assert reg.announce(EdgeEntry(1, ("ring.test",), 10.0), now=0.0)
    assert not reg.announce(EdgeEntry(1, ("ring.test",), 10.0), now=5.0)  # a refresh
    assert [(e.edge, e.ttl) for e in reg.entries(now=12.0)] == [(1, 3.0)]
    assert reg.entries(now=15.0) == ()
    assert reg.next_expiry() is None


def test_a_full_registry_drops_the_entry_closest_to_expiry():
    reg = EdgeRegistry(max_edges=2)
    reg.announce(EdgeEntry(1, ("a.test",), 5.0), 0.0)
    reg.announce(EdgeEntry(2, ("a.test",), 50.0), 0.0)
    reg.announce(EdgeEntry(3, ("a.test",), 50.0), 1.0)
    assert {e.edge for e in reg.entries(2.0)} == {2, 3}


def directory(*edges, now=0.0):
    d = EdgeDirectory(cache_ttl=10.0, dead_ttl=20.0)
    d.replace([EdgeEntry(e, ("ring.test",), 30.0) for e in edges], now)
    return d


def test_every_node_picks_the_same_edge_for_a_remote_domain():
    picks = {directory(11, 22, 33, 44).pick("ring.test", "peer.test", 1.0) for _ in range(3)}
    assert len(picks) == 1
    spread = {directory(11, 22, 33, 44).pick("ring.test", f"peer{i}.test", 1.0) for i in range(40)}
    assert len(spread) > 1  # different remote domains are spread over the edges


def test_prefer_avoid_and_domains():
    d = directory(11, 22)
    assert d.pick("ring.test", "peer.test", 1.0, prefer=22) == 22
    assert d.pick("ring.test", "peer.test", 1.0, avoid=(11,)) == 22
    assert d.pick("ring.test", "peer.test", 1.0, avoid=(11, 22)) is None
    assert d.pick("other.test", "peer.test", 1.0) is None
    assert d.pick("chat.ring.test", "peer.test", 1.0) in (11, 22)


def test_entries_expire_with_the_cache_and_staleness_is_reported():
    d = directory(11)
    assert not d.stale(5.0) and d.stale(10.0)
    assert d.pick("ring.test", "peer.test", 9.0) == 11
    assert d.pick("ring.test", "peer.test", 11.0) is None


def test_a_forgotten_edge_stays_out_until_it_shows_itself_alive():
    d = directory(11, 22)
    first = d.pick("ring.test", "peer.test", 1.0)
    d.forget(first, 1.0)
    other = d.pick("ring.test", "peer.test", 1.0)
    assert other not in (first, None)
    d.replace([EdgeEntry(11, ("ring.test",), 30.0), EdgeEntry(22, ("ring.test",), 30.0)], 2.0)
    assert first not in d  # a registry answer does not bring it back ...
    d.learn(first, ("ring.test",), 3.0)
    assert first in d  # ... first-hand evidence does


def test_edges_seen_alive_survive_a_registry_answer_that_lacks_them():
    d = directory(11)
    d.learn(99, ("ring.test",), 1.0)
    d.replace([EdgeEntry(11, ("ring.test",), 30.0)], 2.0)
    assert 99 in d and 11 in d
