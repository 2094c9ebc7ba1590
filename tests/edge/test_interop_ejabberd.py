"""Interop with a real ejabberd 23.01 (see tests/edge/interop.py for the story)."""

import pytest

from .interop import RING, check_story, federation_script, run_story
from .peers import EjabberdPeer, make_certificate

PEER = "peer2.test"


@pytest.mark.parametrize("tls", [False, True], ids=["plain+dialback", "starttls+dialback"])
async def test_ejabberd_user_exchanges_messages_pings_and_disco_with_ring(tmp_path, tls):
    def make_peer(edge_port):
        return EjabberdPeer(PEER, routes={RING: edge_port}, users={"bob": "bobpass"},
                            certificate=make_certificate(PEER, tmp_path / "peer-certs") if tls else None)

    peer_holder = []

    def make_and_keep(edge_port):
        peer_holder.append(make_peer(edge_port))
        return peer_holder[-1]

    try:
        outcome = await run_story(tmp_path, make_and_keep, federation_script, tls=tls, user="bob", password="bobpass")
    finally:
        for peer in peer_holder:
            peer.cleanup()
    check_story(outcome, f"bob@{PEER}", tls)
