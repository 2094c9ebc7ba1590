"""XEP-0368 direct TLS with real servers, both directions, no STARTTLS route at all.

- Prosody 0.12.3 listens for direct TLS s2s on ``s2s_direct_tls_ports`` and, when it has a
  certificate, looks up ``_xmpps-server._tcp`` before ``_xmpp-server._tcp`` and connects with
  TLS at once (ALPN ``xmpp-server``, SNI the remote domain).
- ejabberd 23.01 listens for direct TLS with an ``ejabberd_s2s_in`` listener marked
  ``tls: true`` and, with ``s2s_use_starttls`` enabled, looks up ``_xmpps-server._tcp`` first.

The peer's resolver knows the edge only as an ``_xmpps-server`` target and the edge knows the
peer only as a ``tls:`` route, so the conversation (see tests/edge/interop.py) can only
happen over direct TLS; the dialback verification call-backs go the same way.
"""

from .interop import RING, check_story, federation_script, run_story
from .peers import EjabberdPeer, ProsodyPeer, make_certificate


def check_direct(outcome) -> None:
    stats = outcome.node.stats
    assert stats.direct_tls.get("in", 0) >= 1 and stats.direct_tls.get("out", 0) >= 1, stats.direct_tls
    assert "out/failed" not in stats.direct_tls
    # Every TLS session of the story was a direct one: STARTTLS was never used.
    assert stats.tls_sessions == stats.direct_tls["in"] + stats.direct_tls["out"], (stats.tls_sessions, stats.direct_tls)


async def test_prosody_and_edge_federate_over_direct_tls_both_ways(tmp_path):
    peer_domain = "peer.test"

    def make_peer(edge_port, edge_tls_port):
        return ProsodyPeer(peer_domain, tmp_path / "prosody", tls_routes={RING: edge_tls_port}, direct_tls=True,
                           users={"alice": "alicepass"}, require_encryption=True,
                           certificate=make_certificate(peer_domain, tmp_path / "peer-certs"))

    outcome = await run_story(tmp_path, make_peer, federation_script, tls=True, user="alice", password="alicepass",
                              direct_tls=True, route=lambda peer: f"tls:127.0.0.1:{peer.s2s_tls_port}")
    check_story(outcome, f"alice@{peer_domain}", True)
    check_direct(outcome)


async def test_ejabberd_and_edge_federate_over_direct_tls_both_ways(tmp_path):
    peer_domain = "peer2.test"
    peers = []

    def make_peer(edge_port, edge_tls_port):
        peers.append(EjabberdPeer(peer_domain, tls_routes={RING: edge_tls_port}, direct_tls=True,
                                  users={"bob": "bobpass"},
                                  certificate=make_certificate(peer_domain, tmp_path / "peer-certs")))
        return peers[-1]

    try:
        outcome = await run_story(tmp_path, make_peer, federation_script, tls=True, user="bob", password="bobpass",
                                  direct_tls=True, route=lambda peer: f"tls:127.0.0.1:{peer.s2s_tls_port}")
    finally:
        for peer in peers:
            peer.cleanup()
    check_story(outcome, f"bob@{peer_domain}", True)
    check_direct(outcome)
