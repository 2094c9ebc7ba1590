"""The ring CA: certificates chain to it, and a certificate's key fixes its holder's id."""

from __future__ import annotations

import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ring.ca import CAError, init_ca, issue_node, load_ca, node_id_of_pem_file
from ring.identity import node_id_for_key
from ring.keyspace import KeySpace


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_issued_certificate_chains_to_ca_and_yields_its_key_id(tmp_path, kind):
    init_ca(tmp_path, kind=kind)
    space = KeySpace()
    cred = issue_node(tmp_path, "ring1", kind=kind, hosts=["127.0.0.1", "ring1.example"])
    cert = x509.load_pem_x509_certificate(cred.cert_path.read_bytes())
    ca_cert, _ = load_ca(tmp_path)
    cert.verify_directly_issued_by(ca_cert)
    assert cred.node_id == node_id_for_key(space, cert.public_key())
    assert node_id_of_pem_file(space, cred.cert_path) == cred.node_id
    want = ed25519.Ed25519PublicKey if kind == "ed25519" else ec.EllipticCurvePublicKey
    assert isinstance(cert.public_key(), want)
    assert stat.S_IMODE(cred.key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    # Both TLS roles accept the pair (the shell uses one certificate for both).
    for proto in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
        ctx = ssl.SSLContext(proto)
        ctx.load_cert_chain(cred.cert_path, cred.key_path)


def test_each_node_gets_its_own_id(tmp_path):
    init_ca(tmp_path)
    ids = {issue_node(tmp_path, f"n{i}").node_id for i in range(5)}
    assert len(ids) == 5


def test_refuses_to_overwrite_and_rejects_bad_names(tmp_path):
    init_ca(tmp_path)
    with pytest.raises(CAError, match="already holds a CA"):
        init_ca(tmp_path)
    issue_node(tmp_path, "n1")
    with pytest.raises(CAError, match="already issued"):
        issue_node(tmp_path, "n1")
    for bad in ["", "../evil", "a b", "x" * 80]:
        with pytest.raises(CAError, match="node name"):
            issue_node(tmp_path, bad)
    with pytest.raises(CAError, match="unknown key kind"):
        issue_node(tmp_path, "n2", kind="rsa")


def test_issue_without_ca_says_how_to_make_one(tmp_path):
    with pytest.raises(CAError, match="ringmesh ca init"):
        issue_node(tmp_path / "nowhere", "n1")
