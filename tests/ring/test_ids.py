import pytest

from ring.identity import NodeIdentity, node_id_for_key
from ring.ids import InvalidJID, domain_key, jid_key, name_key, normalise_bare_jid, parse_key
from ring.keyspace import KeySpace

KS = KeySpace()


@pytest.mark.parametrize("raw, bare", [
    ("Romeo@Example.NET/orchard", "romeo@example.net"),
    ("romeo@example.net", "romeo@example.net"),
    ("example.net.", "example.net"),
    ("EXAMPLE.net/res/with/slashes", "example.net"),
    ("ＲＯＭＥＯ@example.net", "romeo@example.net"),  # fullwidth folds (NFKC)
])
def test_normalise_bare_jid(raw, bare):
    assert normalise_bare_jid(raw) == bare


@pytest.mark.parametrize("bad", ["", "@example.net", "user@", "a@b@c", "x" * 4000])
def test_invalid_jids_are_refused(bad):
    with pytest.raises(InvalidJID):
        jid_key(KS, bad)


def test_every_spelling_and_resource_of_an_account_shares_a_key():
    assert jid_key(KS, "Juliet@Capulet.lit/balcony") == jid_key(KS, "juliet@capulet.lit/chamber")


def test_domain_keys_and_names_are_separate_namespaces():
    assert jid_key(KS, "capulet.lit") == domain_key(KS, "capulet.lit")
    assert domain_key(KS, "capulet.lit") != name_key(KS, "capulet.lit")
    assert jid_key(KS, "a@capulet.lit") != jid_key(KS, "b@capulet.lit")
    with pytest.raises(InvalidJID):
        domain_key(KS, "a@capulet.lit")


def test_parse_key_reads_hex_decimal_and_jids():
    assert parse_key(KS, "0x10") == 16
    assert parse_key(KS, "42") == 42
    assert parse_key(KS, "a@b.example") == jid_key(KS, "a@b.example")
    with pytest.raises(ValueError):
        parse_key(KS, "0xzz")


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_node_id_is_bound_to_the_public_key(kind):
    ident = NodeIdentity.generate(KS, kind)
    assert ident.node_id == node_id_for_key(KS, ident.private_key.public_key())
    again = NodeIdentity.from_pem(KS, ident.private_pem())
    assert again.node_id == ident.node_id
    assert NodeIdentity.generate(KS, kind).node_id != ident.node_id
    with pytest.raises(ValueError, match="unknown key kind"):
        NodeIdentity.generate(KS, "rsa")
