"""Interop with a real ejabberd 23.01 (see tests/edge/interop.py for the story)."""

import os
import pwd
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from .interop import RING, check_story, federation_script, run_story
from .peers import EjabberdPeer, make_ca, make_certificate

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


@dataclass
class TrustingEjabberd(EjabberdPeer):
    """ejabberd that checks s2s certificates against ``cafile`` and so offers SASL EXTERNAL."""

    cafile: Path | None = None

    def write_config(self) -> None:
        super().write_config()
        ca = self.workdir / "s2s-ca.pem"
        shutil.copy(self.cafile, ca)
        user = pwd.getpwnam("ejabberd")
        os.chown(ca, user.pw_uid, user.pw_gid)
        with (self.workdir / "ejabberd.yml").open("a") as fh:
            fh.write(f'\ns2s_cafile: "{ca}"\n')


@pytest.mark.parametrize("purposes", [("server", "client"), ("server",)], ids=["server+client", "serverAuth-only"])
async def test_ejabberd_and_edge_with_sasl_external(tmp_path, purposes):
    """STARTTLS + SASL EXTERNAL with ejabberd. ejabberd's own serverAuth-only certificate is
    accepted by the edge (EXTERNAL inbound). ejabberd 23.01 itself still demands clientAuth
    of the certificates it is shown ("unsupported certificate purpose"), so towards it a
    serverAuth-only edge falls back to dialback, as XEP-0178 §3 says it should."""
    ca = make_ca(tmp_path / "ca")
    holder = []

    def make_peer(edge_port):
        holder.append(TrustingEjabberd(PEER, routes={RING: edge_port}, users={"bob": "bobpass"}, cafile=ca[2],
                                       certificate=make_certificate(PEER, tmp_path / "peer-certs", ca=ca[:2],
                                                                    purposes=purposes)))
        return holder[-1]

    try:
        outcome = await run_story(tmp_path, make_peer, federation_script, tls=True, user="bob", password="bobpass",
                                  ca=ca, purposes=purposes)
        log = holder[0].log_text() if holder else ""
    finally:
        for peer in holder:
            peer.cleanup()
    stats = outcome.node.stats
    assert "in/dialback" not in stats.authenticated, stats.authenticated
    if purposes == ("server",):
        assert "unsupported certificate purpose" in log  # ejabberd's refusal, seen in its log
        assert "out/sasl-external" not in stats.authenticated
        check_story(outcome, f"bob@{PEER}", True, method="sasl-external", out_method="dialback")
    else:
        check_story(outcome, f"bob@{PEER}", True, method="sasl-external")
