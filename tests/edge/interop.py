"""One story told against every real server: a user on the peer talks to ring entities.

Alice (a slixmpp client on the peer server) sends to echo@ring.test. The peer opens an s2s
stream to the edge and offers a dialback key; the edge verifies it with the peer (receiving
role), the peer delivers the message, and the echo reply leaves through an outbound stream
that the peer verifies by calling the edge back (authoritative role). Pings, disco and
version queries go the same way; an iq to a nonexistent entity gets service-unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from edge.s2s_events import S2SConfig, StanzaReceived
from edge.s2s_shell import S2SNode
from edge.s2s_tls import S2STLS
from edge.services import RingServices
from edge.srv import PeerResolver, Target, parse_route

from .peers import ClientResult, make_certificate, run_client

RING = "ring.test"


def edge_tls(tmp_path, ca=None, purposes=("server", "client")) -> S2STLS:
    """Without ``ca``: a self-signed edge certificate and no trust roots (dialback
    authenticates). With ``ca`` = (cert, key, path): a CA-signed edge certificate, and peer
    certificates judged against the CA, so SASL EXTERNAL can be offered. ``purposes`` are
    the extended key usages of the edge's certificate."""
    cert, key = make_certificate(RING, tmp_path / "edge-certs", ca=ca[:2] if ca else None, purposes=purposes)
    return S2STLS.from_files(cert, key, cafile=ca[2] if ca else None)


@dataclass
class Outcome:
    result: ClientResult
    received: list[StanzaReceived] = field(default_factory=list)
    node: S2SNode | None = None
    log: str = ""


async def run_story(tmp_path, make_peer, script, *, tls: bool, user: str, password: str, ca=None,
                    purposes=("server", "client"), direct_tls: bool = False, route=None,
                    config_options: dict | None = None) -> Outcome:
    """Start an edge for ring.test and the peer (``make_peer(edge_port)``), run ``script`` as
    ``user`` on the peer, stop everything.

    ``direct_tls``: the edge listens for direct TLS too and the peer is made with
    ``make_peer(edge_port, edge_direct_tls_port)``; ``route(peer)`` gives the edge's static
    route to the peer (default: its STARTTLS port); ``config_options`` go to S2SConfig."""
    config = S2SConfig(frozenset({RING}), b"ring-shared-dialback-secret-0001", tls=tls, **(config_options or {}))
    edge_tls_ = edge_tls(tmp_path, ca, purposes) if tls else None
    services = RingServices(frozenset({RING}))
    resolver = PeerResolver({}, use_dns=False)
    outcome = Outcome(ClientResult())
    async with trio.open_nursery() as nursery:

        def on_stanza(event) -> None:
            if isinstance(event, StanzaReceived):
                outcome.received.append(event)
                for reply in services.handle(event.element):
                    nursery.start_soon(node.send, reply)

        node = S2SNode(config, resolver, on_stanza=on_stanza, tls=edge_tls_,
                       direct_tls_listen=(None, 0) if direct_tls else None)
        outcome.node = node
        port = await nursery.start(node.run)
        peer = make_peer(port, node.direct_tls_port) if direct_tls else make_peer(port)
        resolver.overrides[peer.domain] = parse_route(route(peer)) if route else Target("127.0.0.1", peer.s2s_port)
        await trio.to_thread.run_sync(peer.start)
        try:
            with trio.fail_after(90):
                outcome.result = await trio.to_thread.run_sync(
                    run_client, f"{user}@{peer.domain}", password, peer.c2s_port, script)
        finally:
            outcome.log = peer.log_text()[-4000:]
            await trio.to_thread.run_sync(peer.stop)
            nursery.cancel_scope.cancel()
    return outcome


async def federation_script(client, result, timeout: float = 10) -> None:
    """What a user of the peer does with the ring's entities (one script for every test)."""
    msg = client.make_message(mto=f"echo@{RING}", mbody="hello ring ✓", mtype="chat")
    msg["id"] = "m-1"
    msg.send()
    ok = await client.wait_for(lambda r: any(m[1].startswith(f"echo@{RING}") for m in r.received), 30)
    assert ok, "no echo came back"
    await client.plugin["xep_0199"].send_ping(RING, timeout=timeout)
    result.iq_results["ping"] = "ok"
    info = await client.plugin["xep_0030"].get_info(jid=RING, timeout=timeout)
    result.iq_results["features"] = sorted(info["disco_info"]["features"])
    items = await client.plugin["xep_0030"].get_items(jid=RING, timeout=timeout)
    result.iq_results["items"] = [i[0] for i in items["disco_items"]["items"]]
    ver = await client.plugin["xep_0092"].get_version(RING, timeout=timeout)
    result.iq_results["version"] = ver["software_version"]["name"]
    iq = client.make_iq_get(ito=f"nobody@{RING}")
    iq.enable("ping")
    try:
        await iq.send(timeout=timeout)
        result.iq_results["nobody"] = "answered"
    except Exception as exc:  # slixmpp raises IqError carrying the error stanza
        result.iq_results["nobody"] = exc.iq["error"]["condition"] if hasattr(exc, "iq") else repr(exc)


def check_story(outcome: Outcome, user_jid: str, tls: bool, method: str = "dialback",
                out_method: str | None = None) -> None:
    """``method``: how the peer authenticated to us; ``out_method`` (default the same): how we
    authenticated to the peer."""
    result = outcome.result
    assert result.error is None, f"{result.error}\n{outcome.log}"
    echo = [m for m in result.received if m[1].startswith(f"echo@{RING}")]
    assert echo[0][2] == "hello ring ✓" and echo[0][3] == "m-1"
    first = outcome.received[0]  # the stanza crossed the peer and our inbound stream intact
    assert str(first.sender).startswith(f"{user_jid}/") and str(first.recipient) == f"echo@{RING}"
    assert first.element.get("id") == "m-1"
    assert result.iq_results["ping"] == "ok"
    assert {"urn:xmpp:ping", "http://jabber.org/protocol/disco#info"} <= set(result.iq_results["features"])
    assert result.iq_results["items"] == [f"echo@{RING}"]
    assert result.iq_results["version"] == "ringmesh"
    assert result.iq_results["nobody"] == "service-unavailable"
    stats = outcome.node.stats
    assert stats.dialback_verified >= 1 and stats.stream_errors_sent == 0
    # Both directions authenticated with the expected method: the peer to us, we to the peer.
    assert stats.authenticated.get(f"in/{method}", 0) >= 1, stats.authenticated
    assert stats.authenticated.get(f"out/{out_method or method}", 0) >= 1, stats.authenticated
    if tls:  # inbound from the peer, outbound to it (and the peer's verification call-back)
        assert stats.tls_sessions >= 2
