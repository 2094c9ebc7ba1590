"""Transcripts of the inbound (receiving) s2s machine: peer bytes in, exact elements and
events out. Outputs are parsed back and compared canonically, never as raw bytes."""

import base64
import itertools

import pytest

from edge.cert_names import CertificateNames, PeerCertificate
from edge.dialback import dialback_key
from edge.s2s_events import (
    Authenticated,
    AuthMethod,
    KeyToVerify,
    S2SConfig,
    StanzaReceived,
    StanzaRejected,
    StartTLS,
    StreamClosed,
    StreamOpened,
    VerifyAnswered,
)
from edge.s2s_inbound import InboundState, InboundStream
from edge.s2s_stream import Input

from .transcript import Reader, canon, peer_header, xml

SECRET = b"ring-shared-secret-for-tests-01"
RING, PEER = "ring.test", "peer.test"
DB_FEATURES = ("<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
               "</stream:features>")


def config(**kw):
    return S2SConfig(frozenset({RING}), SECRET, **kw)


def certified(domain):
    """The driver's verdict on a trusted certificate naming ``domain``."""
    return PeerCertificate(True, True, CertificateNames(dns=frozenset({domain})))


def machine(**kw):
    ids = itertools.count(1)
    return InboundStream(config(**kw), 0.0, lambda: f"sid{next(ids)}")


def opened(m, reader=None, **header):
    reader = reader or Reader()
    m.receive_data(peer_header(**(header or {"from": PEER, "to": RING})), 0.0)
    out = reader.read_canon(m.data_to_send())
    return reader, out


def authenticated_stream():
    m = machine()
    reader, _ = opened(m)
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>k</db:result>", 0.0)
    m.dialback_verified(PEER, RING, True, 0.5)
    reader.read(m.data_to_send())
    m.next_events()
    return m, reader


def test_header_is_answered_with_our_header_and_dialback_features():
    m = machine()
    reader, out = opened(m)
    h = reader.header
    assert (h.get("from"), h.get("to"), h.get("id"), h.get("version")) == (RING, PEER, "sid1", "1.0")
    assert h.default_ns == "jabber:server"
    assert out == [canon(xml(DB_FEATURES))]
    assert m.next_events() == [StreamOpened("sid1", PEER, RING, False)]
    assert m.state is InboundState.OPEN


def test_dialback_receiving_role_valid_key_then_stanza():
    m = machine()
    reader, _ = opened(m)
    m.next_events()
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>KEY1</db:result>", 1.0)
    assert m.data_to_send() == b""
    assert m.next_events() == [KeyToVerify(PEER, RING, "sid1", "KEY1")]
    assert m.get_timer() == pytest.approx(1.0 + m.config.dialback_timeout)
    m.dialback_verified(PEER, RING, True, 2.0)
    assert reader.read_canon(m.data_to_send()) == [
        canon(xml("<db:result from='ring.test' to='peer.test' type='valid'/>"))]
    assert m.next_events() == [Authenticated(PEER, RING, AuthMethod.DIALBACK)]
    assert m.get_timer() is None  # handshake over, nothing pending
    m.receive_data(b"<message from='Alice@Peer.Test/x' to='echo@ring.test' id='1'><body>hi</body></message>", 3.0)
    (ev,) = m.next_events()
    assert isinstance(ev, StanzaReceived)
    assert (str(ev.sender), str(ev.recipient), ev.element.get("id")) == ("alice@peer.test/x", "echo@ring.test", "1")


def test_forged_dialback_key_gets_invalid_and_not_authorized():
    m = machine()
    reader, _ = opened(m)
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>forged</db:result>", 1.0)
    m.dialback_verified(PEER, RING, False, 1.1)
    out = reader.read_canon(m.data_to_send())
    assert out == [
        canon(xml("<db:result from='ring.test' to='peer.test' type='invalid'/>")),
        canon(xml("<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                  "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>dialback key was not valid</text></stream:error>")),
    ]
    assert reader.ended
    assert m.next_events()[-1] == StreamClosed("not-authorized", by_peer=False)
    assert m.closed


def test_spoofed_from_domain_is_invalid_from():
    m, reader = authenticated_stream()
    m.receive_data(b"<message from='mallory@evil.test' to='echo@ring.test'><body>x</body></message>", 1.0)
    (err,) = reader.read(m.data_to_send())
    assert err[0].tag == "{urn:ietf:params:xml:ns:xmpp-streams}invalid-from"
    assert [type(e) for e in m.next_events()] == [StreamClosed]


@pytest.mark.parametrize(
    ("stanza", "condition"),
    [
        (b"<message to='echo@ring.test'/>", "improper-addressing"),
        (b"<message from='a@peer.test'/>", "improper-addressing"),
        (b"<message from='a@peer.test' to='x@elsewhere.test'/>", "host-unknown"),
        (b"<message from='a b@peer.test' to='echo@ring.test'/>", "invalid-from"),
        (b"<message from='a@peer.test' to='echo@sub.ring.test'/>", "invalid-from"),  # pair not authenticated
        (b"<foo xmlns='urn:x'/>", "unsupported-stanza-type"),
        (b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", "policy-violation"),
    ],
)
def test_bad_stanzas_after_authentication_close_the_stream(stanza, condition):
    m, reader = authenticated_stream()
    m.receive_data(stanza, 1.0)
    err = reader.read(m.data_to_send())[-1]
    assert err[0].tag == "{urn:ietf:params:xml:ns:xmpp-streams}" + condition
    assert m.closed


def test_malformed_to_is_bounced_with_jid_malformed_not_a_stream_error():
    m, reader = authenticated_stream()
    m.receive_data(b"<iq type='get' id='q' from='a@peer.test/r' to='bad user@ring.test'><ping xmlns='urn:xmpp:ping'/></iq>", 1.0)
    (ev,) = m.next_events()
    assert isinstance(ev, StanzaRejected) and ev.condition == "jid-malformed"
    assert canon(ev.reply) == canon(xml(
        "<iq type='error' id='q' to='a@peer.test/r' from='bad user@ring.test'><error type='modify'>"
        "<jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"))
    assert not m.closed


def test_stanza_before_authentication_is_not_authorized():
    m = machine()
    reader, _ = opened(m)
    m.receive_data(b"<message from='a@peer.test' to='echo@ring.test'/>", 1.0)
    assert reader.read(m.data_to_send())[-1][0].tag.endswith("}not-authorized")


@pytest.mark.parametrize(
    ("header", "condition"),
    [
        ({"from": PEER, "to": "other.test"}, "host-unknown"),
        ({"from": "bad domain", "to": RING}, "invalid-from"),
    ],
)
def test_bad_headers_get_our_header_then_an_error(header, condition):
    m = machine()
    reader, out = opened(m, **header)
    assert reader.header is not None  # RFC 6120 §4.9.1.2: header first, then the error
    assert out[-1].startswith("<{http://etherx.jabber.org/streams}error") and condition in out[-1]
    assert m.closed


def test_wrong_content_namespace_is_invalid_namespace():
    m = machine()
    m.receive_data(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                   b"to='ring.test' version='1.0'>", 0.0)
    reader = Reader()
    assert "invalid-namespace" in reader.read_canon(m.data_to_send())[-1]


def test_authoritative_role_answers_db_verify_from_the_shared_secret():
    m = machine()
    reader, _ = opened(m)
    m.next_events()
    good = dialback_key(SECRET, PEER, RING, "their-stream-7")
    m.receive_data(f"<db:verify from='peer.test' to='ring.test' id='their-stream-7'>{good}</db:verify>".encode(), 1.0)
    m.receive_data(b"<db:verify from='peer.test' to='ring.test' id='their-stream-7'>0000</db:verify>", 1.0)
    m.receive_data(b"<db:verify from='peer.test' to='nothere.test' id='s'>0000</db:verify>", 1.0)
    assert reader.read_canon(m.data_to_send()) == [
        canon(xml("<db:verify from='ring.test' to='peer.test' id='their-stream-7' type='valid'/>")),
        canon(xml("<db:verify from='ring.test' to='peer.test' id='their-stream-7' type='invalid'/>")),
        canon(xml("<db:verify from='nothere.test' to='peer.test' id='s' type='error'><db:error type='cancel'>"
                  "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></db:error></db:verify>")),
    ]
    assert m.next_events() == [VerifyAnswered(PEER, RING, "their-stream-7", True),
                               VerifyAnswered(PEER, RING, "their-stream-7", False)]


def test_pending_verification_times_out_with_remote_server_timeout():
    m = machine()
    reader, _ = opened(m)
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>K</db:result>", 1.0)
    m.handle_timer(1.0 + m.config.dialback_timeout)
    assert reader.read_canon(m.data_to_send()) == [canon(xml(
        "<db:result from='ring.test' to='peer.test' type='error'><db:error type='cancel'>"
        "<remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></db:error></db:result>"))]
    m.dialback_verified(PEER, RING, True, 99.0)  # too late: ignored
    assert m.data_to_send() == b""


def test_handshake_timeout_is_connection_timeout():
    m = machine()
    reader, _ = opened(m)
    assert m.get_timer() == m.config.handshake_timeout
    m.handle_timer(m.config.handshake_timeout)
    assert "connection-timeout" in reader.read_canon(m.data_to_send())[-1]
    assert m.closed and m.get_timer() is None


def test_starttls_then_sasl_external_for_a_certified_peer():
    m = machine(tls=True)
    reader, out = opened(m)
    assert "{urn:ietf:params:xml:ns:xmpp-tls}starttls" in out[0]
    m.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 1.0)
    assert reader.read_canon(m.data_to_send()) == [canon(xml("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))]
    assert m.next_events()[-1] == StartTLS(server_side=True)
    assert m.state is InboundState.TLS_HANDSHAKE
    m.tls_established(2.0, certified(PEER))
    reader.restart()
    _, out = opened(m, reader)
    assert out == [canon(xml(
        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism>"
        "</mechanisms><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>"))]
    authzid = base64.b64encode(PEER.encode()).decode()
    m.receive_data(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{authzid}</auth>".encode(), 3.0)
    assert reader.read_canon(m.data_to_send()) == [canon(xml("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"))]
    assert Authenticated(PEER, RING, AuthMethod.SASL_EXTERNAL) in m.next_events()
    reader.restart()
    _, out = opened(m, reader)
    assert out == [canon(xml("<stream:features/>"))]
    m.receive_data(b"<message from='a@peer.test' to='echo@ring.test'/>", 4.0)
    assert isinstance(m.next_events()[-1], StanzaReceived)


def test_sasl_external_refused_when_the_certificate_names_another_domain():
    m = machine(tls=True)
    reader, _ = opened(m)
    m.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 1.0)
    m.tls_established(2.0, certified("other.test"))
    reader = Reader()
    m.data_to_send()
    _, out = opened(m, reader)
    assert "mechanisms" not in out[0]  # not offered...
    m.receive_data(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>", 3.0)
    assert reader.read_canon(m.data_to_send()) == [canon(xml(
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"))]  # ...nor accepted
    assert not m.closed  # the peer may still fall back to dialback


def test_required_tls_refuses_dialback_in_the_clear():
    m = machine(tls=True, require_tls=True)
    reader, out = opened(m)
    assert "required" in out[0] and "dialback" not in out[0]
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>K</db:result>", 1.0)
    assert "policy-violation" in reader.read_canon(m.data_to_send())[-1]


def test_peer_closing_the_stream_is_answered_and_reported():
    m, reader = authenticated_stream()
    m.receive_data(b"</stream:stream>", 1.0)
    reader.read(m.data_to_send())
    assert reader.ended
    assert m.next_events() == [StreamClosed(None, by_peer=True)]


def test_every_state_input_pair_outside_the_table_closes_with_a_stream_error():
    """h2-style: walk every (state, input); nothing outside the table is ever accepted."""
    samples = {
        Input.FEATURES: b"<stream:features/>",
        Input.STARTTLS: b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        Input.PROCEED: b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        Input.TLS_FAILURE: b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
        Input.SASL_AUTH: b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'/>",
        Input.SASL_SUCCESS: b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        Input.SASL_FAILURE: b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
        Input.DB_RESULT: b"<db:result from='peer.test' to='ring.test'>k</db:result>",
        Input.DB_VERIFY: b"<db:verify from='peer.test' to='ring.test' id='x'>k</db:verify>",
        Input.BIDI: b"<bidi xmlns='urn:xmpp:bidi'/>",
        Input.STANZA: b"<message from='a@peer.test' to='b@ring.test'/>",
        Input.OTHER: b"<what xmlns='urn:x'/>",
    }
    checked = 0
    for inp, data in samples.items():
        if (InboundState.OPEN, inp) in InboundStream._TRANSITIONS:
            continue
        m = machine()
        reader, _ = opened(m)
        m.receive_data(data, 1.0)
        out = reader.read_canon(m.data_to_send())
        assert out and out[-1].startswith("<{http://etherx.jabber.org/streams}error"), inp
        assert m.closed
        checked += 1
    assert checked >= 5


def test_bidi_inbound_advertises_accepts_and_lets_us_answer_on_the_same_stream():
    from edge.errors import LocalProtocolError
    from edge.stanza import make_stanza

    m = machine(bidi=True)
    reader, out = opened(m)
    assert "{urn:xmpp:features:bidi}bidi" in out[0]
    reply = make_stanza("message", "echo@ring.test", "a@peer.test", id="r")
    with pytest.raises(LocalProtocolError):
        m.send_stanza(reply)  # not before <bidi/> and authentication
    m.receive_data(b"<bidi xmlns='urn:xmpp:bidi'/><db:result from='peer.test' to='ring.test'>k</db:result>", 1.0)
    m.dialback_verified(PEER, RING, True, 1.5)
    reader.read(m.data_to_send())
    m.send_stanza(reply)
    assert reader.read_canon(m.data_to_send()) == [canon(reply)]
