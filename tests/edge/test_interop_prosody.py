"""Interop with a real Prosody 0.12: an unmodified client on Prosody talks to ring entities.

Romeo (alice@peer.test, a slixmpp client on Prosody) sends to echo@ring.test. Prosody opens
an s2s stream to the edge and offers a dialback key; the edge verifies it with Prosody (as
receiving server), Prosody delivers the message, the echo reply leaves through an outbound
stream that Prosody verifies by calling back the edge (authoritative role). Pings, disco and
version queries go the same way, and an iq to a nonexistent entity gets service-unavailable.
"""

from __future__ import annotations

import ssl

import pytest
import trio

from edge.s2s_events import S2SConfig, StanzaReceived
from edge.s2s_shell import S2SNode
from edge.services import RingServices
from edge.srv import PeerResolver, Target

from .peers import ProsodyPeer, make_certificate, run_client

RING = "ring.test"
PEER = "peer.test"


def tls_contexts(tmp_path):
    """Self-signed edge certificate; dialback authenticates, so peers' certificates are not checked."""
    cert, key = make_certificate(RING, tmp_path / "edge-certs")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.load_cert_chain(cert, key)
    return server, client


async def _with_edge_and_prosody(tmp_path, script, tls=False, **prosody_kw):
    config = S2SConfig(frozenset({RING}), b"ring-shared-dialback-secret-0001", tls=tls)
    server_ssl, client_ssl = tls_contexts(tmp_path) if tls else (None, None)
    if tls:
        prosody_kw.setdefault("certificate", make_certificate(PEER, tmp_path / "peer-certs"))
    services = RingServices(frozenset({RING}))
    resolver = PeerResolver({}, use_dns=False)
    received: list[StanzaReceived] = []
    async with trio.open_nursery() as nursery:

        def on_stanza(event) -> None:
            if isinstance(event, StanzaReceived):
                received.append(event)
                for reply in services.handle(event.element):
                    nursery.start_soon(node.send, reply)

        node = S2SNode(config, resolver, on_stanza=on_stanza, server_ssl=server_ssl, client_ssl=client_ssl)
        port = await nursery.start(node.run)
        prosody = ProsodyPeer(PEER, tmp_path, routes={RING: port}, users={"alice": "alicepass"}, **prosody_kw)
        resolver.overrides[PEER] = Target("127.0.0.1", prosody.s2s_port)
        await trio.to_thread.run_sync(prosody.start)
        try:
            with trio.fail_after(60):
                result = await trio.to_thread.run_sync(
                    run_client, f"alice@{PEER}", "alicepass", prosody.c2s_port, script)
        finally:
            await trio.to_thread.run_sync(prosody.stop)
            nursery.cancel_scope.cancel()
    return result, received, node, prosody


@pytest.mark.parametrize("tls", [False, True], ids=["plain+dialback", "starttls+dialback"])
async def test_prosody_user_exchanges_messages_pings_and_disco_with_ring(tmp_path, tls):
    async def script(client, result):
        msg = client.make_message(mto=f"echo@{RING}", mbody="hello ring ✓", mtype="chat")
        msg["id"] = "m-1"
        msg.send()
        ok = await client.wait_for(lambda r: any(m[1].startswith(f"echo@{RING}") for m in r.received), 20)
        assert ok, "no echo came back"
        await client.plugin["xep_0199"].send_ping(RING, timeout=10)
        result.iq_results["ping"] = "ok"
        info = await client.plugin["xep_0030"].get_info(jid=RING, timeout=10)
        result.iq_results["features"] = sorted(info["disco_info"]["features"])
        items = await client.plugin["xep_0030"].get_items(jid=RING, timeout=10)
        result.iq_results["items"] = [i[0] for i in items["disco_items"]["items"]]
        ver = await client.plugin["xep_0092"].get_version(RING, timeout=10)
        result.iq_results["version"] = ver["software_version"]["name"]
        iq = client.make_iq_get(ito=f"nobody@{RING}")
        iq.enable("ping")
        try:
            await iq.send(timeout=10)
            result.iq_results["nobody"] = "answered"
        except Exception as exc:  # slixmpp raises IqError with the error stanza
            result.iq_results["nobody"] = exc.iq["error"]["condition"]

    # With TLS, Prosody insists on encryption (its 0.12 default) in both directions.
    result, received, node, prosody = await _with_edge_and_prosody(tmp_path, script, tls=tls, require_encryption=tls)
    assert result.error is None, result.error + "\n" + prosody.log_text()[-3000:]
    echo = [m for m in result.received if m[1].startswith(f"echo@{RING}")]
    assert echo[0][2] == "hello ring ✓" and echo[0][3] == "m-1"
    # The stanza crossed Prosody and our inbound stream intact.
    first = received[0]
    assert str(first.sender).startswith(f"alice@{PEER}/") and str(first.recipient) == f"echo@{RING}"
    assert first.element.get("id") == "m-1"
    assert result.iq_results["ping"] == "ok"
    assert "urn:xmpp:ping" in result.iq_results["features"]
    assert "http://jabber.org/protocol/disco#info" in result.iq_results["features"]
    assert result.iq_results["items"] == [f"echo@{RING}"]
    assert result.iq_results["version"] == "ringmesh"
    assert result.iq_results["nobody"] == "service-unavailable"
    # Both dialback directions ran: we verified Prosody's key, Prosody verified ours.
    assert node.stats.dialback_verified >= 1
    assert node.stats.stream_errors_sent == 0
    if tls:  # inbound from Prosody, outbound to it, and Prosody's verification call-back
        assert node.stats.tls_sessions >= 2
