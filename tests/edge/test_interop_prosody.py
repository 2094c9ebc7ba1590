"""Interop with a real Prosody 0.12 (see tests/edge/interop.py for the story)."""

import pytest

from .interop import RING, check_story, federation_script, run_story
from .peers import ProsodyPeer, make_certificate

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
