"""Interop with a real Prosody 0.12 (see tests/edge/interop.py for the story)."""

import pytest

from .interop import RING, check_story, federation_script, run_story
from .peers import ProsodyPeer, make_ca, make_certificate

PEER = "peer.test"


@pytest.mark.parametrize("tls", [False, True], ids=["plain+dialback", "starttls+dialback"])
async def test_prosody_user_exchanges_messages_pings_and_disco_with_ring(tmp_path, tls):
    def make_peer(edge_port):
        # With TLS, Prosody insists on encryption (its 0.12 default) in both directions.
        return ProsodyPeer(PEER, tmp_path / "prosody", routes={RING: edge_port}, users={"alice": "alicepass"},
                           require_encryption=tls,
                           certificate=make_certificate(PEER, tmp_path / "peer-certs") if tls else None)

    outcome = await run_story(tmp_path, make_peer, federation_script, tls=tls, user="alice", password="alicepass")
    check_story(outcome, f"alice@{PEER}", tls)


@pytest.mark.parametrize("purposes", [("server", "client"), ("server",)], ids=["server+client", "serverAuth-only"])
async def test_prosody_and_edge_authenticate_each_other_with_sasl_external(tmp_path, purposes):
    """STARTTLS + SASL EXTERNAL (XEP-0178) both ways: certificates from a CA both sides trust.
    With serverAuth-only certificates on both sides (how public CAs issue them), Prosody
    accepts ours and the edge accepts Prosody's: EXTERNAL in both directions, no dialback."""
    ca = make_ca(tmp_path / "ca")

    def make_peer(edge_port):
        return ProsodyPeer(PEER, tmp_path / "prosody", routes={RING: edge_port}, users={"alice": "alicepass"},
                           require_encryption=True, cafile=ca[2],
                           certificate=make_certificate(PEER, tmp_path / "peer-certs", ca=ca[:2], purposes=purposes))

    outcome = await run_story(tmp_path, make_peer, federation_script, tls=True, user="alice", password="alicepass",
                              ca=ca, purposes=purposes)
    check_story(outcome, f"alice@{PEER}", True, method="sasl-external")
    stats = outcome.node.stats
    assert "in/dialback" not in stats.authenticated and "out/dialback" not in stats.authenticated, stats.authenticated
    assert stats.peer_certificates.get("in/trusted", 0) >= 1 and "in/untrusted" not in stats.peer_certificates
