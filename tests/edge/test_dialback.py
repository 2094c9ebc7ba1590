"""XEP-0185 keys: the published vector, and checks that a forger cannot pass."""

import pytest

from edge.dialback import DialbackKeys, dialback_key

XEP_0185_SECRET = b"s3cr3tf0rd14lb4ck"
XEP_0185_KEY = "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"


def test_key_matches_the_xep_0185_example():
    assert dialback_key(XEP_0185_SECRET, "xmpp.example.com", "example.org", "D60000229F") == XEP_0185_KEY


def test_key_depends_on_every_input():
    base = dialback_key(b"k" * 32, "r.test", "o.test", "id1")
    assert base != dialback_key(b"k" * 31 + b"x", "r.test", "o.test", "id1")
    assert base != dialback_key(b"k" * 32, "o.test", "r.test", "id1")
    assert base != dialback_key(b"k" * 32, "r.test", "o.test", "id2")


def test_edges_sharing_a_secret_validate_each_others_keys():
    edge_a, edge_b = DialbackKeys(b"ring-secret-0123456789"), DialbackKeys(b"ring-secret-0123456789")
    key = edge_a.generate("peer.test", "ring.test", "S1")
    assert edge_b.check(key, "peer.test", "ring.test", "S1")
    assert edge_b.check(f"\n  {key}\n", "peer.test", "ring.test", "S1")  # whitespace as in the XEP examples
    assert not DialbackKeys(b"another-secret-0123456").check(key, "peer.test", "ring.test", "S1")
    assert not edge_b.check(key, "peer.test", "ring.test", "S2")
    assert not edge_b.check("", "peer.test", "ring.test", "S1")
    assert not edge_b.check("f" * 5000, "peer.test", "ring.test", "S1")


def test_short_secrets_are_refused():
    with pytest.raises(ValueError):
        DialbackKeys(b"short")
