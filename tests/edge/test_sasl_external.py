"""SASL EXTERNAL (XEP-0178) with certificates that carry only the serverAuth purpose, as most
XMPP server certificates do: offered and accepted when the certificate chains to our roots
and names the peer; anything else falls back to dialback and never breaks the stream.

First the inbound machine with real verdicts from the verifier, then two edges federating
over real TLS sockets on loopback, in both directions.
"""

import base64
import datetime as dt
import itertools

import pytest
import trio
from lxml import etree

from edge.cert_trust import PeerCertificateVerifier
from edge.s2s_events import Authenticated, AuthMethod, KeyToVerify, S2SConfig, StanzaReceived
from edge.s2s_inbound import InboundStream
from edge.s2s_shell import S2SNode
from edge.s2s_tls import S2STLS
from edge.srv import PeerResolver, Target

from .certs import issue, make_ca, write_ca
from .transcript import Reader, peer_header

RING, PEER = "ring.test", "peer.test"
AT = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
WINDOW = (AT - dt.timedelta(days=10), AT + dt.timedelta(days=80))
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = make_ca("external test root")
    return root, tmp_path_factory.mktemp("pki")


# -- the inbound machine with real verdicts -------------------------------------------------

def negotiated(verdict):
    """An inbound machine after STARTTLS with ``verdict``; returns (machine, reader, features)."""
    ids = itertools.count(1)
    m = InboundStream(S2SConfig(frozenset({RING}), b"secret-0123456789abcdef", tls=True), 0.0, lambda: f"s{next(ids)}")
    reader = Reader()
    m.receive_data(peer_header(**{"from": PEER, "to": RING}), 0.0)
    m.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 0.1)
    reader.read(m.data_to_send())
    m.tls_established(0.2, verdict)
    reader.restart()
    m.receive_data(peer_header(**{"from": PEER, "to": RING}), 0.3)
    features = reader.read(m.data_to_send())[-1]
    m.next_events()
    return m, reader, features


def offers_external(features) -> bool:
    return [e.text for e in features.iter(f"{{{NS_SASL}}}mechanism")] == ["EXTERNAL"]


def auth(m, reader, authzid: str | None = PEER):
    text = base64.b64encode(authzid.encode()).decode() if authzid else "="
    m.receive_data(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>{text}</auth>".encode(), 1.0)
    return reader.read(m.data_to_send())[-1]


def test_machine_accepts_external_from_a_serverauth_only_certificate(pki):
    root_window = issue("root", eku=None, ca=True, valid=WINDOW)  # a root valid at AT
    verifier = PeerCertificateVerifier(cafile=write_ca(root_window, pki[1] / "machine"))
    peer = issue(PEER, dns=(PEER,), eku=("server",), issuer=root_window, valid=WINDOW)
    m, reader, features = negotiated(verifier.verify(peer.der, [], AT))
    assert offers_external(features)
    answer = auth(m, reader, None)  # '=': the authorization identity is the stream's 'from'
    assert etree.QName(answer).localname == "success"
    assert Authenticated(PEER, RING, AuthMethod.SASL_EXTERNAL) in m.next_events()


@pytest.mark.parametrize("case", ["self-signed", "other-root", "expired", "misnamed", "email-only"])
def test_machine_refuses_external_and_keeps_dialback_for_bad_certificates(case, pki, tmp_path):
    root = issue("root", eku=None, ca=True, valid=WINDOW)
    verifier = PeerCertificateVerifier(cafile=write_ca(root, tmp_path))
    other_root = issue("root", eku=None, ca=True, valid=WINDOW)
    cert = {
        "self-signed": lambda: issue(PEER, dns=(PEER,), valid=WINDOW),
        "other-root": lambda: issue(PEER, dns=(PEER,), issuer=other_root, valid=WINDOW),
        "expired": lambda: issue(PEER, dns=(PEER,), issuer=root, valid=(AT - dt.timedelta(days=9), AT - dt.timedelta(days=1))),
        "misnamed": lambda: issue("other.test", dns=("other.test",), issuer=root, valid=WINDOW),
        "email-only": lambda: issue(PEER, dns=(PEER,), eku=("email",), issuer=root, valid=WINDOW),
    }[case]()
    verdict = verifier.verify(cert.der, [], AT)
    m, reader, features = negotiated(verdict)
    assert not offers_external(features)
    assert etree.QName(auth(m, reader)).localname == "failure"  # a peer that tries anyway
    assert not m.closed
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>key</db:result>", 2.0)
    assert any(isinstance(e, KeyToVerify) for e in m.next_events())  # dialback still works


# -- two edges over real TLS sockets --------------------------------------------------------

async def federate(ring_tls: S2STLS, peer_tls: S2STLS):
    """peer.test sends to ring.test, ring.test answers; returns both nodes' stats."""
    received: dict[str, list[StanzaReceived]] = {RING: [], PEER: []}
    secret = b"dialback-secret-0123456789abcdef"
    ring_res, peer_res = PeerResolver({}, use_dns=False), PeerResolver({}, use_dns=False)
    ring = S2SNode(S2SConfig(frozenset({RING}), secret + b"r", tls=True), ring_res, tls=ring_tls,
                   on_stanza=lambda ev: received[RING].append(ev))
    peer = S2SNode(S2SConfig(frozenset({PEER}), secret + b"p", tls=True), peer_res, tls=peer_tls,
                   on_stanza=lambda ev: received[PEER].append(ev))
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            ring_port = await nursery.start(ring.run)
            peer_port = await nursery.start(peer.run)
            ring_res.overrides[PEER] = Target("127.0.0.1", peer_port)
            peer_res.overrides[RING] = Target("127.0.0.1", ring_port)
            await peer.send(etree.fromstring(b"<message xmlns='jabber:server' from='alice@peer.test/a' "
                                             b"to='echo@ring.test' id='m1'><body>hi</body></message>"))
            while not received[RING]:
                await trio.sleep(0.01)
            await ring.send(etree.fromstring(b"<message xmlns='jabber:server' from='echo@ring.test' "
                                             b"to='alice@peer.test/a' id='r1'><body>hi</body></message>"))
            while not received[PEER]:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert received[RING][0].element.get("id") == "m1" and received[PEER][0].element.get("id") == "r1"
    return ring.stats, peer.stats


async def test_edges_with_serverauth_only_certificates_use_external_both_ways(pki):
    root, directory = pki
    roots = write_ca(root, directory / "live")
    ring_cert = issue(RING, dns=(RING,), eku=("server",), issuer=root).write(directory, "ring")
    peer_cert = issue(PEER, dns=(PEER,), eku=("server",), issuer=root).write(directory, "peer")
    ring_stats, peer_stats = await federate(S2STLS.from_files(*ring_cert, cafile=roots),
                                            S2STLS.from_files(*peer_cert, cafile=roots))
    for stats in (ring_stats, peer_stats):
        assert stats.authenticated == {"in/sasl-external": 1, "out/sasl-external": 1}, stats.authenticated
        assert stats.stream_errors_sent == 0 and stats.peer_certificates.get("in/untrusted", 0) == 0


@pytest.mark.parametrize("case", ["self-signed", "misnamed"])
async def test_edges_fall_back_to_dialback_when_a_certificate_does_not_convince(pki, case):
    root, directory = pki
    roots = write_ca(root, directory / case)
    ring_cert = issue(RING, dns=(RING,), eku=("server",), issuer=root).write(directory / case, "ring")
    ring_tls = S2STLS.from_files(*ring_cert, cafile=roots)
    if case == "self-signed":
        peer_tls = S2STLS.self_signed([PEER], verifier=PeerCertificateVerifier(cafile=roots))
    else:
        other = issue("other.test", dns=("other.test",), eku=("server",), issuer=root).write(directory / case, "o")
        peer_tls = S2STLS.from_files(*other, cafile=roots)
    ring_stats, peer_stats = await federate(ring_tls, peer_tls)
    # The peer could not prove itself with its certificate: dialback, and nothing broke.
    assert ring_stats.authenticated.get("in/dialback") == 1 and "in/sasl-external" not in ring_stats.authenticated
    assert peer_stats.authenticated.get("out/dialback") == 1
    # The ring edge's certificate is fine, so the other direction still uses EXTERNAL.
    assert ring_stats.authenticated.get("out/sasl-external") == 1
    assert ring_stats.stream_errors_sent == 0 and peer_stats.stream_errors_sent == 0
