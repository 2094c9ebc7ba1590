"""Peer lookup: override parsing, RFC 2782 ordering, XEP-0368 preference, DNS fallback."""

import random

import pytest

from edge.srv import PeerResolver, SrvRecord, Target, lookup_srv, order_srv, parse_overrides, parse_target


def test_override_forms():
    assert parse_overrides({"Peer.Test": "127.0.0.1:15269"}) == {"peer.test": (Target("127.0.0.1", 15269),)}
    assert parse_overrides(["a.test=host", "b.test=tls:[::1]:5270"]) == {
        "a.test": (Target("host", 5269),), "b.test": (Target("::1", 5270, True),)}
    for bad in ("127.0.0.1:0", "127.0.0.1:70000", ":5269"):
        with pytest.raises(ValueError):
            parse_target(bad)
    with pytest.raises(ValueError):
        parse_overrides(["no-equals-sign"])


def test_priority_then_weight_then_direct_tls_first():
    records = [SrvRecord(20, 0, 1, "c."), SrvRecord(10, 0, 2, "a."), SrvRecord(10, 0, 3, "b.", direct_tls=True)]
    assert order_srv(records, random.Random(1)) == [Target("b", 3, True), Target("a", 2), Target("c", 1)]


def test_weights_bias_the_choice():
    records = [SrvRecord(0, 90, 1, "heavy."), SrvRecord(0, 10, 2, "light.")]
    firsts = [order_srv(records, random.Random(seed))[0].host for seed in range(400)]
    assert 0.8 < firsts.count("heavy") / 400 < 0.97


def test_dot_target_means_no_service():
    assert order_srv([SrvRecord(0, 0, 0, ".")], random.Random()) == []


def test_lookup_falls_back_to_the_domain_and_overrides_skip_dns():
    assert lookup_srv("peer.test", lambda name: []) == [Target("peer.test", 5269)]
    asked = []
    resolver = PeerResolver({"peer.test": Target("127.0.0.1", 1)},
                            query=lambda name: asked.append(name) or [SrvRecord(0, 0, 7, "x.")])
    assert resolver.resolve_blocking("Peer.Test") == [Target("127.0.0.1", 1)]
    assert resolver.resolve_blocking("other.test") == [Target("x", 7, True), Target("x", 7)]
    assert asked == ["_xmpps-server._tcp.other.test", "_xmpp-server._tcp.other.test"]
    assert PeerResolver({}, use_dns=False).static("other.test") == []
