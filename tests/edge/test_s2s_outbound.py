"""Transcripts of the outbound (initiating) s2s machine, and whole dialback exchanges
between our own machines: originating, receiving and authoritative roles, several edges
sharing one secret."""

import itertools

import pytest

from edge.dialback import dialback_key
from edge.errors import LocalProtocolError
from edge.s2s_events import (
    Authenticated,
    AuthenticationFailed,
    AuthMethod,
    KeyToVerify,
    KeyVerified,
    S2SConfig,
    StanzaReceived,
    StanzasUnsent,
    StartTLS,
    StreamClosed,
    StreamOpened,
)
from edge.s2s_inbound import InboundStream
from edge.s2s_outbound import OutboundState, OutboundStream
from edge.stanza import make_stanza

from .transcript import Reader, canon, peer_header, xml

SECRET = b"ring-shared-secret-for-tests-01"
RING, PEER = "ring.test", "peer.test"
PEER_FEATURES_DB = (b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
                    b"</stream:features>")


def outbound(**kw):
    authenticate = kw.pop("authenticate", True)
    cfg = S2SConfig(frozenset({RING}), SECRET, **kw)
    m = OutboundStream(cfg, RING, PEER, 0.0, authenticate=authenticate)
    m.start(0.0)
    reader = Reader()
    reader.read(m.data_to_send())
    return m, reader


def test_header_names_both_domains():
    m, reader = outbound()
    h = reader.header
    assert (h.get("from"), h.get("to"), h.get("version"), h.get("id")) == (RING, PEER, "1.0", None)
    assert h.namespaces["db"] == "jabber:server:dialback"
    assert m.state is OutboundState.EXPECT_HEADER


def test_dialback_originating_role_sends_key_and_flushes_queue_on_valid():
    m, reader = outbound()
    msg = make_stanza("message", f"echo@{RING}", f"alice@{PEER}", "chat", "r1")
    m.send_stanza(msg)
    assert m.queued == 1
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "PEERSID"}) + PEER_FEATURES_DB, 1.0)
    key = dialback_key(SECRET, PEER, RING, "PEERSID")
    assert reader.read_canon(m.data_to_send()) == [canon(xml(f"<db:result from='{RING}' to='{PEER}'>{key}</db:result>"))]
    assert m.next_events() == [StreamOpened("PEERSID", PEER, RING, False)]
    m.receive_data(b"<db:result from='peer.test' to='ring.test' type='valid'/>", 2.0)
    assert m.next_events() == [Authenticated(PEER, RING, AuthMethod.DIALBACK)]
    assert reader.read_canon(m.data_to_send()) == [canon(msg)]
    assert m.ready and m.get_timer() is None


def test_refused_key_returns_the_queue_and_closes():
    m, reader = outbound()
    msg = make_stanza("message", f"a@{RING}", f"b@{PEER}")
    m.send_stanza(msg)
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "S"}) + PEER_FEATURES_DB, 1.0)
    m.receive_data(b"<db:result from='peer.test' to='ring.test' type='invalid'/>", 2.0)
    events = m.next_events()
    assert events[1] == AuthenticationFailed(PEER, RING, "key refused")
    assert isinstance(events[2], StanzasUnsent) and events[2].elements == (msg,)
    reader.read(m.data_to_send())
    assert reader.ended
    with pytest.raises(LocalProtocolError):
        m.send_stanza(msg)
    m.receive_data(b"</stream:stream>", 3.0)
    assert m.next_events() == [StreamClosed(None, by_peer=True)]


def test_stanza_for_another_domain_pair_is_a_local_error():
    m, _ = outbound()
    with pytest.raises(LocalProtocolError):
        m.send_stanza(make_stanza("message", "a@other.test", f"b@{PEER}"))


def test_peer_header_from_another_domain_is_invalid_from():
    m, reader = outbound()
    m.receive_data(peer_header(**{"from": "evil.test", "to": RING, "id": "S"}), 1.0)
    assert "invalid-from" in reader.read_canon(m.data_to_send())[-1]


def test_starttls_then_sasl_external_then_ready():
    m, reader = outbound(tls=True)
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "S1"})
                   + b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                   + PEER_FEATURES_DB[len(b"<stream:features>"):], 1.0)
    assert reader.read_canon(m.data_to_send()) == [canon(xml("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))]
    m.receive_data(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 1.1)
    assert m.next_events()[-1] == StartTLS(server_side=False)
    m.tls_established(1.2)
    reader = Reader()
    reader.read(m.data_to_send())
    assert reader.header.get("to") == PEER
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "S2"})
                   + b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                     b"<mechanism>EXTERNAL</mechanism></mechanisms></stream:features>", 1.3)
    assert reader.read_canon(m.data_to_send()) == [canon(xml(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>cmluZy50ZXN0</auth>"))]
    m.receive_data(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", 1.4)
    reader = Reader()
    reader.read(m.data_to_send())
    assert reader.header is not None  # restarted
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "S3"}) + b"<stream:features/>", 1.5)
    assert Authenticated(PEER, RING, AuthMethod.SASL_EXTERNAL) in m.next_events()
    assert m.ready


def test_sasl_failure_falls_back_to_dialback():
    m, reader = outbound(tls=True)
    m.secure = True  # as after a STARTTLS restart
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "S9"})
                   + b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                     b"<mechanism>EXTERNAL</mechanism></mechanisms>"
                   + PEER_FEATURES_DB[len(b"<stream:features>"):], 1.0)
    reader.read(m.data_to_send())
    m.receive_data(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>", 1.1)
    (db,) = reader.read(m.data_to_send())
    assert db.tag == "{jabber:server:dialback}result" and db.text == dialback_key(SECRET, PEER, RING, "S9")
    assert m.state is OutboundState.EXPECT_DB_RESULT


def test_required_tls_refuses_a_peer_without_starttls():
    m, reader = outbound(tls=True, require_tls=True)
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "S"}) + PEER_FEATURES_DB, 1.0)
    assert "policy-violation" in reader.read_canon(m.data_to_send())[-1]


def test_verify_requests_wait_for_negotiation_and_time_out():
    m, reader = outbound(authenticate=False)
    m.verify_key(PEER, RING, "THEIR1", "KEYA", 0.5)
    m.verify_key(PEER, RING, "THEIR2", "KEYB", 0.6)
    assert reader.read(m.data_to_send()) == []  # nothing before the peer's features
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "S"}) + PEER_FEATURES_DB, 1.0)
    assert reader.read_canon(m.data_to_send()) == [
        canon(xml(f"<db:verify from='{RING}' to='{PEER}' id='THEIR1'>KEYA</db:verify>")),
        canon(xml(f"<db:verify from='{RING}' to='{PEER}' id='THEIR2'>KEYB</db:verify>")),
    ]
    assert m.state is OutboundState.VERIFY_ONLY
    m.next_events()
    m.receive_data(b"<db:verify from='peer.test' to='ring.test' id='THEIR1' type='valid'/>", 2.0)
    m.receive_data(b"<db:verify from='peer.test' to='ring.test' id='NEVERASKED' type='valid'/>", 2.0)
    assert m.next_events() == [KeyVerified(PEER, RING, "THEIR1", True)]
    m.handle_timer(0.6 + m.config.dialback_timeout)
    assert m.next_events() == [KeyVerified(PEER, RING, "THEIR2", False, "remote-server-timeout")]


def test_outbound_handshake_timeout():
    m, reader = outbound()
    m.handle_timer(m.config.handshake_timeout)
    assert "connection-timeout" in reader.read_canon(m.data_to_send())[-1]
    assert m.closed


# -- whole exchanges between our own machines --------------------------------------------

def pump(a, b, rounds=10):
    for _ in range(rounds):
        x, y = a.data_to_send(), b.data_to_send()
        if not x and not y:
            return
        if x:
            b.receive_data(x, 1.0)
        if y:
            a.receive_data(y, 1.0)


def run_dialback(origin_secret, verify_secret):
    """ring-a.test (origin_secret) sends to ring-b.test, which verifies the key with an
    authoritative edge of ring-a.test holding verify_secret (another edge of the same ring)."""
    ids = itertools.count()
    ida = lambda: f"id{next(ids)}"  # noqa: E731
    a_cfg = S2SConfig(frozenset({"ring-a.test"}), origin_secret)
    a2_cfg = S2SConfig(frozenset({"ring-a.test"}), verify_secret)
    b_cfg = S2SConfig(frozenset({"ring-b.test"}), b"b-secret-0123456789abcdef")
    out = OutboundStream(a_cfg, "ring-a.test", "ring-b.test", 0.0)
    inb = InboundStream(b_cfg, 0.0, ida)
    out.start(0.0)
    out.send_stanza(make_stanza("message", "x@ring-a.test", "y@ring-b.test", id="m"))
    pump(out, inb)
    (ask,) = [e for e in inb.next_events() if isinstance(e, KeyToVerify)]
    verifier = OutboundStream(b_cfg, "ring-b.test", "ring-a.test", 1.0, authenticate=False)
    authority = InboundStream(a2_cfg, 1.0, ida)
    verifier.verify_key(ask.originating, ask.receiving, ask.stream_id, ask.key, 1.0)
    verifier.start(1.0)
    pump(verifier, authority)
    (answer,) = [e for e in verifier.next_events() if isinstance(e, KeyVerified)]
    inb.dialback_verified(answer.originating, answer.receiving, answer.valid, 1.5)
    pump(out, inb)
    return out, inb, out.next_events(), inb.next_events()


def test_dialback_between_edges_sharing_the_ring_secret_delivers_the_stanza():
    out, inb, out_events, in_events = run_dialback(SECRET, SECRET)
    assert Authenticated("ring-b.test", "ring-a.test", AuthMethod.DIALBACK) in out_events
    received = [e for e in in_events if isinstance(e, StanzaReceived)]
    assert [e.element.get("id") for e in received] == ["m"]


def test_dialback_with_a_different_secret_is_refused_end_to_end():
    out, inb, out_events, in_events = run_dialback(SECRET, b"not-the-ring-secret-000000")
    assert AuthenticationFailed("ring-b.test", "ring-a.test", "key refused") in out_events
    assert not any(isinstance(e, StanzaReceived) for e in in_events)
    assert inb.closed and inb.error_sent == "not-authorized"


def test_bidi_outbound_requests_it_and_accepts_stanzas_from_the_peer():
    m, reader = outbound(bidi=True)
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "S"})
                   + b"<stream:features><bidi xmlns='urn:xmpp:features:bidi'/>"
                   + PEER_FEATURES_DB[len(b"<stream:features>"):], 1.0)
    out = reader.read_canon(m.data_to_send())
    assert out[0] == canon(xml("<bidi xmlns='urn:xmpp:bidi'/>"))
    m.receive_data(b"<db:result from='peer.test' to='ring.test' type='valid'/>", 2.0)
    m.receive_data(b"<message from='a@peer.test' to='echo@ring.test' id='back'/>", 3.0)
    assert [e.element.get("id") for e in m.next_events() if isinstance(e, StanzaReceived)] == ["back"]
    m.receive_data(b"<message from='a@evil.test' to='echo@ring.test'/>", 3.0)
    assert "invalid-from" in reader.read_canon(m.data_to_send())[-1]


def test_without_bidi_a_stanza_on_an_outbound_stream_is_refused():
    m, reader = outbound()
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "S"}) + PEER_FEATURES_DB, 1.0)
    m.receive_data(b"<db:result from='peer.test' to='ring.test' type='valid'/>", 2.0)
    reader.read(m.data_to_send())
    m.receive_data(b"<message from='a@peer.test' to='echo@ring.test'/>", 3.0)
    assert "unsupported-stanza-type" in reader.read_canon(m.data_to_send())[-1]
