"""XEP-0368 direct TLS for s2s: routes that ask for it, the machines on a stream that is
secure from its first byte, and two edges over a real direct TLS listener (ALPN, SNI,
SASL EXTERNAL and dialback, falling back to STARTTLS when direct TLS fails)."""

import itertools
import ssl

import pytest
import trio
from lxml import etree

from edge.cert_names import PeerCertificate
from edge.cert_trust import PeerCertificateVerifier
from edge.s2s_events import KeyToVerify, S2SConfig
from edge.s2s_inbound import InboundStream
from edge.s2s_outbound import OutboundStream
from edge.s2s_tls import S2STLS
from edge.srv import Target, parse_overrides, parse_route, parse_target

from .certs import issue, make_ca, write_ca
from .edgepair import PEER, RING, edge_pair, message, route_both, wait_until
from .transcript import Reader, peer_header

NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_DB_FEATURE = "urn:xmpp:features:dialback"


# -- routes ---------------------------------------------------------------------------------

def test_a_route_lists_direct_tls_and_starttls_addresses_in_order():
    assert parse_route("tls:127.0.0.1:15270, 127.0.0.1:15269") == (
        Target("127.0.0.1", 15270, True), Target("127.0.0.1", 15269))
    assert parse_route(["tls:[::1]:5270", "starttls:peer.example"]) == (
        Target("::1", 5270, True), Target("peer.example", 5269))
    assert parse_overrides({"peer.test": ["tls:127.0.0.1:1", "127.0.0.1:2"]})["peer.test"][0].direct_tls


@pytest.mark.parametrize(("text", "message"), [
    ("tls:127.0.0.1", "direct TLS route needs a port"),
    ("ssl:127.0.0.1:5270", "unknown scheme 'ssl'"),
    ("::1:5269", "IPv6 address in brackets"),
    ("[::1", "expected \\[IPv6\\]:PORT"),
    ("peer..test:5269", "invalid host"),
    ("tls:127.0.0.1:99999", "invalid port"),
])
def test_bad_routes_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_target(text)


def test_bad_route_lists_name_the_domain():
    with pytest.raises(ValueError, match="peer.test: .*empty address"):
        parse_overrides({"peer.test": "tls:127.0.0.1:1,,127.0.0.1:2"})
    with pytest.raises(ValueError, match="at most 16"):
        parse_route(",".join(["127.0.0.1:1"] * 17))


# -- the machines on a direct TLS stream ----------------------------------------------------

def direct_inbound(verdict: PeerCertificate, server_name: str | None = None, **header: str):
    ids = itertools.count(1)
    m = InboundStream(S2SConfig(frozenset({RING}), b"secret-0123456789abcdef", tls=True), 0.0,
                      lambda: f"s{next(ids)}", tls=verdict, server_name=server_name)
    reader = Reader()
    m.receive_data(peer_header(**header), 0.0)
    return m, reader, reader.read(m.data_to_send())


def test_an_inbound_direct_tls_stream_offers_no_starttls_but_dialback():
    m, reader, out = direct_inbound(PeerCertificate.none(), **{"from": PEER, "to": RING})
    features = out[-1]
    assert features.find(f"{{{NS_TLS}}}starttls") is None and features.find(f"{{{NS_DB_FEATURE}}}dialback") is not None
    assert m.secure and m.direct_tls
    m.receive_data(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", 0.1)  # a confused peer
    assert m.closed and m.error_sent == "policy-violation"


def test_an_inbound_direct_tls_stream_offers_external_to_a_trusted_certificate(tmp_path):
    root = make_ca("direct root")
    verifier = PeerCertificateVerifier(cafile=write_ca(root, tmp_path))
    import datetime as dt
    peer = issue(PEER, dns=(PEER,), issuer=root)
    verdict = verifier.verify(peer.der, [], dt.datetime.now(dt.timezone.utc))
    m, reader, out = direct_inbound(verdict, **{"from": PEER, "to": RING})
    assert [e.text for e in out[-1].iter(f"{{{NS_SASL}}}mechanism")] == ["EXTERNAL"]
    m.receive_data(f"<auth xmlns='{NS_SASL}' mechanism='EXTERNAL'>=</auth>".encode(), 0.2)
    assert etree.QName(reader.read(m.data_to_send())[-1]).localname == "success"


def test_sni_names_the_domain_when_the_header_does_not():
    m, reader, out = direct_inbound(PeerCertificate.none(), server_name="Ring.Test", **{"from": PEER})
    assert reader.header.get("from") == RING and m.local_domain == RING and not m.closed
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>key</db:result>", 0.1)
    assert any(isinstance(e, KeyToVerify) for e in m.next_events())


def test_sni_for_a_domain_not_served_here_is_host_unknown():
    m, reader, out = direct_inbound(PeerCertificate.none(), server_name="elsewhere.test", **{"from": PEER})
    assert m.closed and m.error_sent == "host-unknown"


def test_an_outbound_direct_tls_stream_never_asks_for_starttls():
    m = OutboundStream(S2SConfig(frozenset({RING}), b"secret-0123456789abcdef", tls=True), RING, PEER, 0.0)
    m.start(0.0, tls=PeerCertificate.none())
    reader = Reader()
    reader.read(m.data_to_send())
    m.receive_data(peer_header(**{"from": PEER, "to": RING, "id": "abc"}), 0.1)
    m.receive_data(b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
                   b"<dialback xmlns='urn:xmpp:features:dialback'/></stream:features>", 0.2)
    sent = reader.read(m.data_to_send())
    assert [etree.QName(e).localname for e in sent] == ["result"]  # dialback at once, no <starttls/>


# -- two edges over a real direct TLS listener ----------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = make_ca("direct tls root")
    directory = tmp_path_factory.mktemp("direct-pki")
    roots = write_ca(root, directory)
    ring = issue(RING, dns=(RING,), issuer=root).write(directory, "ring")
    peer = issue(PEER, dns=(PEER,), issuer=root).write(directory, "peer")
    return roots, ring, peer


async def converse(ring, peer):
    """peer.test writes to ring.test, ring.test answers: both over the routes set up."""
    await peer.node.send(message(f"alice@{PEER}/a", f"echo@{RING}", "m1"))
    await wait_until(lambda: ring.received)
    await ring.node.send(message(f"echo@{RING}", f"alice@{PEER}/a", "r1"))
    await wait_until(lambda: peer.received)
    assert ring.received[0].element.get("id") == "m1" and peer.received[0].element.get("id") == "r1"


async def test_edges_federate_over_direct_tls_with_sasl_external_both_ways(pki):
    roots, ring_cert, peer_cert = pki
    async with edge_pair(S2STLS.from_files(*ring_cert, cafile=roots),
                         S2STLS.from_files(*peer_cert, cafile=roots)) as (ring, peer):
        route_both(ring, peer, direct=True)
        await converse(ring, peer)
    for side in (ring, peer):
        assert side.stats.direct_tls == {"in": 1, "out": 1}, side.stats.direct_tls
        assert side.stats.authenticated == {"in/sasl-external": 1, "out/sasl-external": 1}
        assert side.stats.stream_errors_sent == 0


async def test_edges_with_self_signed_certificates_use_dialback_over_direct_tls():
    async with edge_pair(S2STLS.self_signed([RING]), S2STLS.self_signed([PEER])) as (ring, peer):
        route_both(ring, peer, direct=True)
        await converse(ring, peer)
    # The verification call-backs went over direct TLS too: one stream each way and one back.
    assert ring.stats.authenticated == {"in/dialback": 1, "out/dialback": 1}
    assert ring.stats.direct_tls.get("in", 0) >= 1 and ring.stats.direct_tls.get("out", 0) >= 1
    assert ring.stats.peer_certificates.get("in/untrusted", 0) >= 1


async def test_when_direct_tls_fails_the_starttls_address_is_tried():
    async with edge_pair(S2STLS.self_signed([RING]), S2STLS.self_signed([PEER])) as (ring, peer):
        # The first address is the STARTTLS listener: a TLS hello there is not XMPP.
        peer.route(RING, f"tls:127.0.0.1:{ring.node.listen_port}, 127.0.0.1:{ring.node.listen_port}")
        ring.route(PEER, f"127.0.0.1:{peer.node.listen_port}")
        await peer.node.send(message(f"alice@{PEER}/a", f"echo@{RING}", "m1"))
        await wait_until(lambda: ring.received)
    assert peer.stats.direct_tls.get("out/failed") == 1 and "out" not in peer.stats.direct_tls
    assert peer.stats.authenticated == {"out/dialback": 1} and not peer.unsent


async def test_a_failed_direct_tls_route_without_fallback_bounces_the_stanza():
    async with edge_pair(S2STLS.self_signed([RING]), S2STLS.self_signed([PEER])) as (ring, peer):
        peer.route(RING, f"tls:127.0.0.1:{ring.node.listen_port}")
        await peer.node.send(message(f"alice@{PEER}/a", f"echo@{RING}", "m1"))
        await wait_until(lambda: peer.unsent)
    assert peer.unsent[0][0] == "m1" and not ring.received


async def raw_tls_client(port: int, alpn: list[str] | None, server_name: str | None):
    """A stdlib TLS client on the direct TLS port: the ALPN the server chose, or the error."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_hostname=server_name)
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        return None, exc
    return stream, stream.selected_alpn_protocol()


async def test_alpn_xmpp_server_is_selected_and_other_protocols_are_refused():
    async with edge_pair(S2STLS.self_signed([RING]), None) as (ring, _):
        port = ring.node.direct_tls_port
        stream, chosen = await raw_tls_client(port, ["h2", "xmpp-server"], RING)
        assert chosen == "xmpp-server"
        await stream.aclose()
        stream, error = await raw_tls_client(port, ["h2", "http/1.1"], RING)
        assert stream is None and "no application protocol" in str(error.__cause__).lower()
        # No ALPN at all (what some servers' outbound code sends) is served; SNI names the domain.
        stream, chosen = await raw_tls_client(port, None, RING)
        assert chosen is None
        await stream.send_all(peer_header(**{"from": PEER}))
        reader = Reader()
        with trio.fail_after(5):
            while reader.header is None:
                reader.read(await stream.receive_some(4096))
        assert reader.header.get("from") == RING
        await stream.aclose()


@pytest.mark.parametrize("xmpps_alive", [True, False], ids=["xmpps-target", "xmpps-dead-starttls-fallback"])
async def test_srv_xmpps_server_targets_are_reached_with_direct_tls(xmpps_alive):
    """SRV answers for both services (as dnspython would give them): the _xmpps-server target
    is tried first; if nothing answers there, the _xmpp-server one is used with STARTTLS."""
    from edge.srv import PeerResolver, SrvRecord

    async with edge_pair(S2STLS.self_signed([RING]), S2STLS.self_signed([PEER])) as (ring, peer):
        ring.route(PEER, f"127.0.0.1:{peer.node.listen_port}")
        dead = trio.socket.socket()
        await dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        tls_port = ring.node.direct_tls_port if xmpps_alive else dead.getsockname()[1]
        records = {f"_xmpps-server._tcp.{RING}": [SrvRecord(0, 0, tls_port, "127.0.0.1.")],
                   f"_xmpp-server._tcp.{RING}": [SrvRecord(0, 0, ring.node.listen_port, "127.0.0.1.")]}
        peer.node.resolver = PeerResolver({}, use_dns=True, query=lambda name: records.get(name, []))
        await peer.node.send(message(f"alice@{PEER}/a", f"echo@{RING}", "m1"))
        await wait_until(lambda: ring.received)
        dead.close()
    if xmpps_alive:
        assert peer.stats.direct_tls == {"out": 1} and ring.stats.direct_tls == {"in": 1}
    else:
        assert peer.stats.direct_tls == {} and ring.stats.direct_tls == {}  # no TLS hello ever left
    assert peer.stats.authenticated == {"out/dialback": 1}
