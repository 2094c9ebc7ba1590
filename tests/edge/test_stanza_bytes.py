"""Stanzas out of ring payloads: a burst parsed as one document gives exactly what parsing
each payload alone gives, whatever the payloads hold (forged separators included)."""

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from edge import stanza_bytes
from edge.stanza_bytes import parse_stanza, parse_stanzas

GOOD = [
    b"<message to='a@ring.test' from='b@peer.test/r' id='1'><body>x</body></message>",
    b"<presence from='b@peer.test/r' to='a@ring.test'/>",
    b"<iq xmlns='jabber:client' to='a@ring.test' from='b@p.test/r' id='2' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
    b"<message to='a@ring.test' from='b@peer.test'><body>&lt;&amp;&gt; caf\xc3\xa9</body></message>",
]
SEP = b"<s xmlns='urn:x-ringmesh:payload-separator'/>"
# Pieces a broken or hostile ring peer might put in a payload, alone or glued together.
PIECES = GOOD + [
    SEP, b"<message>", b"</message>", b"</w>", b"<w>", b"text", b" ", b"<nonsense/>", b"<!-- c -->",
    b"<?pi x?>", b"<![CDATA[x]]>", b"&ent;", b"<p:message xmlns:p='jabber:server'/>", b"<q:x/>", b"<",
    b"<message xmlns='jabber:server' to='a@ring.test'>" + SEP + b"</message>",
]


def outcome(result):
    """Comparable form of one result: the stanza's canonical XML, or the error's text."""
    if isinstance(result, ValueError):
        return ("error", str(result))
    return ("stanza", etree.tostring(result, method="c14n"))


def documents(elements):
    """The distinct trees the elements belong to (their parents kept alive while counted:
    lxml hands out one proxy per node only while it lives)."""
    parents = [el.getparent() for el in elements]
    return {id(p) for p in parents}


def one_by_one(datas):
    out = []
    for d in datas:
        try:
            out.append(parse_stanza(d))
        except ValueError as exc:
            out.append(exc)
    return out


def test_a_clean_burst_is_parsed_as_one_document():
    els = parse_stanzas(GOOD * 3)
    assert [outcome(r) for r in els] == [outcome(r) for r in one_by_one(GOOD * 3)]
    assert len(documents(els)) == 1  # one tree: the fast path was taken


def test_one_bad_payload_does_not_spoil_the_others():
    datas = [GOOD[0], b"<message>", GOOD[1], GOOD[0] + GOOD[1], b"<!-- x --><message/>", GOOD[2]]
    res = parse_stanzas(datas)
    kinds = [o[0] for o in map(outcome, res)]
    assert kinds == ["stanza", "error", "stanza", "error", "error", "stanza"]
    assert [outcome(r) for r in res] == [outcome(r) for r in one_by_one(datas)]


def test_forged_separators_cannot_shift_stanzas_between_payloads():
    # Two elements (a forged separator between them) in one payload, none in the next.
    datas = [GOOD[0] + SEP + GOOD[1], b"text", GOOD[2]]
    assert [outcome(r) for r in parse_stanzas(datas)] == [outcome(r) for r in one_by_one(datas)]
    assert isinstance(parse_stanzas(datas)[0], ValueError)


def test_large_bursts_are_cut_into_several_documents(monkeypatch):
    monkeypatch.setattr(stanza_bytes, "MAX_BATCH_BYTES", 300)
    datas = GOOD * 5
    els = parse_stanzas(datas)
    assert [outcome(r) for r in els] == [outcome(r) for r in one_by_one(datas)]
    assert 1 < len(documents(els)) < len(datas)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map(b"".join), max_size=8))
def test_a_burst_parses_as_its_payloads_alone_would(datas):
    assert [outcome(r) for r in parse_stanzas(datas)] == [outcome(r) for r in one_by_one(datas)]
