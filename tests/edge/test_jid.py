"""RFC 7622 preparation: the forms two JIDs are compared in, and the ones refused."""

import pytest

from edge.jid import JID, JIDError, parse_jid, prepare_domain


@pytest.mark.parametrize(
    ("raw", "local", "domain", "resource"),
    [
        ("JuLiet@Example.COM/Balcony", "juliet", "example.com", "Balcony"),
        ("example.com.", None, "example.com", None),
        ("romeo@example.net/orchard/tree", "romeo", "example.net", "orchard/tree"),
        ("romeo@example.net/res@ource", "romeo", "example.net", "res@ource"),
        ("ＪＵＬＩＥＴ@example.com", "juliet", "example.com", None),  # fullwidth mapped
        ("ñandú@MÜNCHEN.de", "ñandú", "münchen.de", None),
        ("[::1]", None, "[::1]", None),
        ("[0:0::1]", None, "[::1]", None),
        ("127.0.0.1", None, "127.0.0.1", None),
        ("x@ring.test/ spaced ", "x", "ring.test", " spaced "),
    ],
)
def test_valid_jids_are_prepared(raw, local, domain, resource):
    jid = parse_jid(raw)
    assert (jid.local, jid.domain, jid.resource) == (local, domain, resource)
    assert parse_jid(str(jid)) == jid  # preparation is idempotent


@pytest.mark.parametrize(
    "raw",
    [
        "", "@example.com", "user@", "user@example.com/", "a@b@c.com", "us er@example.com",
        'us"er@example.com', "user@exa mple.com", "user@-bad.com", "user@bad-.com", "user@a..b",
        "a" * 1024 + "@example.com", "user@" + "l" * 64 + ".com", "user@[not-ipv6]", "x@ex\x00ample.com",
        "user@example.com/\u0007bell", "\u212bngstr\u00f6m\u200d@example.com",
    ],
)
def test_invalid_jids_raise_jid_malformed(raw):
    with pytest.raises(JIDError) as info:
        parse_jid(raw)
    assert info.value.condition == "jid-malformed"


def test_make_prepares_each_part_and_bare_drops_the_resource():
    jid = JID.make("Alice", "Peer.Test", "Home")
    assert str(jid) == "alice@peer.test/Home"
    assert str(jid.bare) == "alice@peer.test"
    assert JID.make(None, "ring.test").is_domain


def test_domain_preparation_is_case_insensitive_and_strips_the_root_dot():
    assert prepare_domain("Ring.Test.") == "ring.test"
    with pytest.raises(JIDError):
        prepare_domain(".")


# The ASCII fast path must agree with the PRECIS library on every ASCII string.
from hypothesis import given, strategies as st  # noqa: E402

from edge import jid as jid_module  # noqa: E402


def _slow(profile, text):
    try:
        return profile.enforce(text)
    except UnicodeError:
        return None


def _fast(prepare, text):
    try:
        return prepare(text)
    except JIDError:
        return None


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F), max_size=40))
def test_ascii_fast_path_agrees_with_precis(text):
    slow_local = _slow(jid_module._USERNAME, text)
    if slow_local is not None and any(ch in jid_module._LOCAL_FORBIDDEN for ch in slow_local):
        slow_local = None
    assert _fast(jid_module._prepare_local, text) == slow_local
    assert _fast(jid_module._prepare_resource, text) == _slow(jid_module._OPAQUE, text)
