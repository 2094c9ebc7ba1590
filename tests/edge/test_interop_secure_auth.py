"""secure_auth against a real Prosody 0.12 whose certificate is self-signed.

The edge has a certificate from a test CA and trusts only that CA. With secure_auth on,
Prosody's stream to the edge ends with ``not-authorized`` right after STARTTLS (Alice's
message bounces back to her) and the edge refuses to authenticate its own stream to Prosody
(the stanza comes back to the ring). With it off, the same setup converses with dialback.
"""

import pytest
import trio

from edge.s2s_events import S2SConfig, StanzaReceived
from edge.s2s_shell import S2SNode
from edge.services import RingServices
from edge.srv import PeerResolver, Target

from .edgepair import message
from .interop import RING, edge_tls
from .peers import ProsodyPeer, make_ca, make_certificate, run_client

PEER = "peer.test"


async def alice_writes_to_echo(client, result) -> None:
    msg = client.make_message(mto=f"echo@{RING}", mbody="are you there?", mtype="chat")
    msg["id"] = "s-1"
    msg.send()
    await client.wait_for(lambda r: any(m[1].startswith(f"echo@{RING}") for m in r.received), 15)


@pytest.mark.parametrize("secure", [True, False], ids=["secure_auth-on", "secure_auth-off"])
async def test_prosody_with_a_self_signed_certificate_and_secure_auth(tmp_path, secure):
    config = S2SConfig(frozenset({RING}), b"ring-shared-dialback-secret-0001", tls=True, secure_auth=secure)
    services = RingServices(frozenset({RING}))
    received: list[StanzaReceived] = []
    unsent: list[tuple[str, str]] = []
    resolver = PeerResolver({}, use_dns=False)
    peer = None
    async with trio.open_nursery() as nursery:

        def on_stanza(event) -> None:
            if isinstance(event, StanzaReceived):
                received.append(event)
                for reply in services.handle(event.element):
                    nursery.start_soon(node.send, reply)

        node = S2SNode(config, resolver, on_stanza=on_stanza, tls=edge_tls(tmp_path, make_ca(tmp_path / "ca")),
                       on_unsent=lambda els, reason: unsent.extend((el.get("id"), reason) for el in els))
        port = await nursery.start(node.run)
        peer = ProsodyPeer(PEER, tmp_path / "prosody", routes={RING: port}, users={"alice": "alicepass"},
                           require_encryption=True, certificate=make_certificate(PEER, tmp_path / "peer-certs"))
        resolver.overrides[PEER] = Target("127.0.0.1", peer.s2s_port)
        await trio.to_thread.run_sync(peer.start)
        try:
            with trio.fail_after(60):
                result = await trio.to_thread.run_sync(run_client, f"alice@{PEER}", "alicepass", peer.c2s_port,
                                                       alice_writes_to_echo)
                # The ring writes to Alice on its own (the outbound direction, on its own stream).
                await node.send(message(f"echo@{RING}", f"alice@{PEER}", "out-1"))
                if secure:
                    while not unsent:
                        await trio.sleep(0.02)
                else:
                    while node.stats.authenticated.get("out/dialback", 0) < 1:
                        await trio.sleep(0.02)
        finally:
            log = peer.log_text()
            await trio.to_thread.run_sync(peer.stop)
            nursery.cancel_scope.cancel()
    assert result.error is None, result.error
    from_echo = [m for m in result.received if m[1].startswith(f"echo@{RING}")]
    stats = node.stats
    if secure:
        # Alice's message never entered the ring: Prosody bounced it to her as an error.
        assert not received and from_echo and 'type="error"' in from_echo[0][4], result.received
        assert stats.secure_auth_refused.get("in", 0) >= 1 and stats.secure_auth_refused.get("out", 0) >= 1
        assert "in/dialback" not in stats.authenticated and "out/dialback" not in stats.authenticated
        assert ("out-1", "stream closed before it was authenticated") in unsent
        assert "must authenticate with a certificate we trust" in log  # Prosody logged our reason
    else:
        assert received and received[0].element.get("id") == "s-1"
        assert from_echo and from_echo[0][2] == "are you there?" and 'type="error"' not in from_echo[0][4]
        assert stats.authenticated.get("in/dialback", 0) >= 1 and not stats.secure_auth_refused
        assert stats.peer_certificates.get("in/untrusted", 0) >= 1 and not unsent
