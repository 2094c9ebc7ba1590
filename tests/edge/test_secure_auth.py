"""Certificate-only authentication for chosen peer domains (as Prosody's s2s_secure_auth):
the machines in both directions, then two edges with a test CA over real sockets."""

import datetime as dt
import itertools
import logging

import pytest
from lxml import etree

from edge.cert_names import PeerCertificate
from edge.cert_trust import PeerCertificateVerifier
from edge.s2s_events import (
    AuthenticationFailed,
    KeyToVerify,
    S2SConfig,
    SecureAuthRefused,
    StanzasUnsent,
)
from edge.s2s_inbound import InboundStream
from edge.s2s_outbound import OutboundStream
from edge.s2s_tls import S2STLS

from .certs import issue, make_ca, write_ca
from .edgepair import PEER, RING, config, edge_pair, message, route_both, wait_until
from .transcript import Reader, peer_header

BANK = "bank.test"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_DB_FEATURE = "urn:xmpp:features:dialback"
NS_STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = make_ca("secure auth root")
    directory = tmp_path_factory.mktemp("secure-pki")
    roots = write_ca(root, directory)
    verifier = PeerCertificateVerifier(cafile=roots)
    now = dt.datetime.now(dt.timezone.utc)

    def verdict(domain: str, *, trusted: bool = True) -> PeerCertificate:
        cert = issue(domain, dns=(domain,), issuer=root if trusted else None)
        return verifier.verify(cert.der, [], now)

    return root, roots, directory, verdict


def secure_config(**kw) -> S2SConfig:
    kw.setdefault("secure_auth", True)
    return S2SConfig(frozenset({RING}), b"secret-0123456789abcdef", tls=True, **kw)


def error_of(elements) -> str | None:
    for el in elements:
        if etree.QName(el).localname == "error":
            return next(etree.QName(c).localname for c in el if etree.QName(c).localname != "text")
    return None


def inbound(cfg: S2SConfig, verdict: PeerCertificate | None = None, **header: str):
    """An inbound machine after the peer's header: in clear, or after STARTTLS with ``verdict``."""
    ids = itertools.count(1)
    m = InboundStream(cfg, 0.0, lambda: f"s{next(ids)}")
    reader = Reader()
    m.receive_data(peer_header(**header), 0.0)
    out = reader.read(m.data_to_send())
    if verdict is not None:
        m.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 0.1)
        reader.read(m.data_to_send())
        m.tls_established(0.2, verdict)
        reader.restart()
        m.receive_data(peer_header(**header), 0.3)
        out = reader.read(m.data_to_send())
    return m, reader, out


# -- inbound --------------------------------------------------------------------------------

def test_in_clear_a_secure_peer_is_told_starttls_is_required_and_dialback_is_not_offered():
    m, reader, out = inbound(secure_config(), **{"from": PEER, "to": RING})
    features = out[-1]
    assert features.find(f"{{{NS_TLS}}}starttls/{{{NS_TLS}}}required") is not None
    assert features.find(f"{{{NS_DB_FEATURE}}}dialback") is None
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>key</db:result>", 1.0)  # tries anyway
    assert m.closed and m.error_sent == "policy-violation"
    assert [e for e in m.next_events() if isinstance(e, SecureAuthRefused)] == [
        SecureAuthRefused(PEER, RING, True, "the stream is not encrypted")]


@pytest.mark.parametrize("case", ["self-signed", "misnamed"])
def test_after_starttls_an_unconvincing_certificate_is_not_authorized_at_once(pki, case):
    verdict = pki[3](PEER, trusted=False) if case == "self-signed" else pki[3]("other.test")
    m, reader, out = inbound(secure_config(), verdict, **{"from": PEER, "to": RING})
    assert m.closed and error_of(out) == "not-authorized"
    text = next(el for el in out if etree.QName(el).localname == "error").findtext(f"{{{NS_STREAMS_ERR}}}text")
    assert "peer.test must authenticate with a certificate we trust" in text
    refused = [e for e in m.next_events() if isinstance(e, SecureAuthRefused)]
    assert len(refused) == 1 and ("untrusted" in refused[0].reason if case == "self-signed" else "other.test" in refused[0].reason)


def test_a_trusted_certificate_naming_the_peer_may_still_use_dialback(pki):
    m, reader, out = inbound(secure_config(), pki[3](PEER), **{"from": PEER, "to": RING})
    assert not m.closed and out[-1].find(f"{{{NS_DB_FEATURE}}}dialback") is not None
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>key</db:result>", 1.0)
    assert any(isinstance(e, KeyToVerify) for e in m.next_events())


def test_a_header_without_from_is_judged_at_the_dialback_request(pki):
    m, reader, out = inbound(secure_config(), pki[3](PEER, trusted=False), to=RING)
    assert not m.closed
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>key</db:result>", 1.0)
    assert m.closed and error_of(reader.read(m.data_to_send())) == "not-authorized"


def test_secure_and_insecure_domain_lists(pki):
    untrusted = pki[3](PEER, trusted=False)
    # secure_auth for everyone but peer.test: dialback as usual.
    m, _, _ = inbound(secure_config(insecure_domains=frozenset({PEER})), untrusted, **{"from": PEER, "to": RING})
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>key</db:result>", 1.0)
    assert not m.closed and any(isinstance(e, KeyToVerify) for e in m.next_events())
    # No global secure_auth, but bank.test must prove itself.
    cfg = secure_config(secure_auth=False, secure_domains=frozenset({BANK}))
    assert cfg.requires_secure_auth(BANK) and not cfg.requires_secure_auth(PEER)
    m, _, out = inbound(cfg, pki[3](BANK, trusted=False), **{"from": BANK, "to": RING})
    assert m.closed and error_of(out) == "not-authorized"


def test_beside_an_authenticated_domain_only_the_secure_one_is_refused(pki):
    cfg = secure_config(secure_auth=False, secure_domains=frozenset({BANK}))
    m, reader, _ = inbound(cfg, pki[3](PEER, trusted=False), **{"from": PEER, "to": RING})
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>key</db:result>", 1.0)
    m.dialback_verified(PEER, RING, True, 1.1)
    reader.read(m.data_to_send())
    m.receive_data(b"<db:result from='bank.test' to='ring.test'>key</db:result>", 1.2)
    answer = reader.read(m.data_to_send())[-1]
    assert answer.get("type") == "error" and answer.find(".//{*}not-authorized") is not None
    assert not m.closed and (PEER, RING) in m.authenticated and (BANK, RING) not in m.authenticated


def test_secure_auth_needs_tls():
    with pytest.raises(ValueError, match="need TLS"):
        S2SConfig(frozenset({RING}), b"secret-0123456789abcdef", tls=False, secure_auth=True)


# -- outbound -------------------------------------------------------------------------------

def outbound(cfg: S2SConfig, *, authenticate: bool = True, starttls: bool = True):
    m = OutboundStream(cfg, RING, PEER, 0.0, authenticate=authenticate)
    if authenticate:
        m.send_stanza(message(f"echo@{RING}", f"alice@{PEER}", "q1"))
    m.start(0.0)
    reader = Reader()
    reader.read(m.data_to_send())
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "abc"}), 0.1)
    offer = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" if starttls else b""
    m.receive_data(b"<stream:features>" + offer + b"<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>", 0.2)
    if starttls:
        reader.read(m.data_to_send())
        m.receive_data(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 0.3)
    return m, reader


def test_outbound_refuses_a_peer_whose_certificate_does_not_convince(pki):
    m, reader = outbound(secure_config())
    m.tls_established(0.4, pki[3](PEER, trusted=False))
    reader.restart()
    assert m.closed and error_of(reader.read(m.data_to_send())) == "not-authorized"
    events = m.next_events()
    assert any(isinstance(e, SecureAuthRefused) and not e.inbound and e.remote == PEER for e in events)
    assert any(isinstance(e, AuthenticationFailed) and "secure auth" in e.reason for e in events)
    unsent = [e for e in events if isinstance(e, StanzasUnsent)]
    assert [el.get("id") for el in unsent[0].elements] == ["q1"]


def test_outbound_refuses_a_secure_peer_that_offers_no_encryption():
    m, reader = outbound(secure_config(), starttls=False)
    assert m.closed and error_of(reader.read(m.data_to_send())) == "policy-violation"


def test_outbound_goes_on_to_authenticate_with_a_good_certificate(pki):
    m, reader = outbound(secure_config())
    m.tls_established(0.4, pki[3](PEER))
    reader.restart()
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "def"}), 0.5)
    m.receive_data(b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>", 0.6)
    assert not m.closed and [etree.QName(e).localname for e in reader.read(m.data_to_send())] == ["result"]


def test_a_stream_opened_only_to_verify_a_key_is_not_held_to_it(pki):
    m, reader = outbound(secure_config(), authenticate=False)
    m.tls_established(0.4, pki[3](PEER, trusted=False))
    assert not m.closed


# -- two edges with a test CA, real sockets -------------------------------------------------

def ca_tls(pki, domain: str) -> S2STLS:
    root, roots, directory, _ = pki
    cert = issue(domain, dns=(domain,), issuer=root).write(directory, domain)
    return S2STLS.from_files(*cert, cafile=roots)


async def test_edges_with_ca_certificates_pass_secure_auth_even_by_dialback(pki):
    """ring.test demands certificates; peer.test has one from the CA and, to exercise the
    dialback path, does not use SASL EXTERNAL: dialback is accepted with a good certificate."""
    ring_cfg = config(RING, secure_auth=True)
    peer_cfg = config(PEER, sasl_external=False)
    async with edge_pair(ca_tls(pki, RING), ca_tls(pki, PEER), ring_config=ring_cfg, peer_config=peer_cfg,
                         direct=False) as (ring, peer):
        route_both(ring, peer)
        await peer.node.send(message(f"alice@{PEER}/a", f"echo@{RING}", "m1"))
        await wait_until(lambda: ring.received)
        await ring.node.send(message(f"echo@{RING}", f"alice@{PEER}/a", "r1"))
        await wait_until(lambda: peer.received)
    assert ring.stats.authenticated.get("in/dialback") == 1 and not ring.stats.secure_auth_refused
    assert ring.stats.stream_errors_sent == 0


async def test_a_self_signed_peer_is_refused_both_ways_and_its_stanzas_bounce(pki, caplog):
    caplog.set_level(logging.WARNING, logger="ringmesh.edge.s2s")
    async with edge_pair(ca_tls(pki, RING), S2STLS.self_signed([PEER]), ring_config=config(RING, secure_auth=True),
                         direct=False) as (ring, peer):
        route_both(ring, peer)
        await peer.node.send(message(f"alice@{PEER}/a", f"echo@{RING}", "m1"))
        await wait_until(lambda: peer.unsent)
        await ring.node.send(message(f"echo@{RING}", f"alice@{PEER}/a", "r1"))
        await wait_until(lambda: ring.unsent)
    assert not ring.received and not peer.received
    assert peer.unsent[0][0] == "m1" and ring.unsent[0][0] == "r1"
    assert ring.stats.secure_auth_refused == {"in": 1, "out": 1}
    assert "not-authorized" in ring.stats.errors
    lines = [r.getMessage() for r in caplog.records if "s2s_secure_auth_refused" in r.getMessage()]
    assert any(line.startswith("event=s2s_secure_auth_refused direction=in remote=peer.test local=ring.test reason=")
               and "untrusted" in line for line in lines), lines
    assert any("direction=out remote=peer.test" in line for line in lines), lines
