"""The ring's own certificate authority: one CA per ring, one certificate per node.

A node's id is the hash of its public key (``ring.identity``), so the certificate that proves
a node holds its key also proves its place on the ring. Peers check two things on every link:
the certificate chains to *this ring's* CA (not any public CA), and the id the peer claims in
its Hello is the one its certificate key yields. Nothing else in the certificate matters for
routing; the subject name and the id written in it are for people reading ``openssl x509``.

Layout of a CA directory::

    DIR/ca.pem  DIR/ca.key          the ring CA (keep ca.key offline once nodes are issued)
    DIR/nodes/NAME.pem  NAME.key    one node: its certificate and private key
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .identity import PrivateKey, PublicKey, node_id_for_key
from .keyspace import KeySpace

KEY_KINDS = ("ed25519", "ecdsa")
CA_DAYS = 3650
NODE_DAYS = 825
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class CAError(ValueError):
    """A CA directory is missing, incomplete, or asked to do something it cannot."""


@dataclass(frozen=True)
class NodeCredentials:
    """Where a node's certificate and key were written, and the id they give it."""

    name: str
    cert_path: Path
    key_path: Path
    node_id: int


def new_private_key(kind: str = "ed25519") -> PrivateKey:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise CAError(f"unknown key kind {kind!r} (choose {' or '.join(KEY_KINDS)})")


def _sign_hash(key: PrivateKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _write_private(path: Path, key: PrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise CAError(f"node name {name!r}: use 1-63 letters, digits, '.', '_' or '-'")
    return name


def init_ca(directory: str | Path, *, name: str = "ringmesh ring CA", kind: str = "ed25519",
            days: int = CA_DAYS, force: bool = False) -> Path:
    """Create a ring CA in ``directory``; returns the CA certificate's path."""
    d = Path(directory)
    cert_path, key_path = d / "ca.pem", d / "ca.key"
    if (cert_path.exists() or key_path.exists()) and not force:
        raise CAError(f"{d} already holds a CA (ca.pem/ca.key); refusing to overwrite it")
    d.mkdir(parents=True, exist_ok=True)
    (d / "nodes").mkdir(exist_ok=True)
    key = new_private_key(kind)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ringmesh")])
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, _sign_hash(key))
    )
    _write_private(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path


def load_ca(directory: str | Path) -> tuple[x509.Certificate, PrivateKey]:
    d = Path(directory)
    try:
        cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise CAError(f"{d} holds no CA ({exc.filename} missing); run 'ringmesh ca init'") from None
    if not isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise CAError("the CA key must be Ed25519 or ECDSA")
    return cert, key


def _san(name: str, hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = [x509.DNSName(name)]
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def issue_node(directory: str | Path, name: str, *, kind: str = "ed25519",
               days: int = NODE_DAYS, hosts: list[str] | None = None,
               space: KeySpace | None = None, force: bool = False) -> NodeCredentials:
    """Issue a node certificate signed by the CA in ``directory``.

    ``hosts`` (names or IP addresses) are recorded as subject alternative names for people
    and other tools; ringmesh itself authenticates peers by key, not by host name.
    """
    check_name(name)
    space = space or KeySpace()
    d = Path(directory)
    ca_cert, ca_key = load_ca(d)
    nodes = d / "nodes"
    nodes.mkdir(exist_ok=True)
    cert_path, key_path = nodes / f"{name}.pem", nodes / f"{name}.key"
    if (cert_path.exists() or key_path.exists()) and not force:
        raise CAError(f"node {name!r} already issued in {nodes}; refusing to overwrite it")
    key = new_private_key(kind)
    node_id = node_id_for_key(space, key.public_key())
    now = _dt.datetime.now(_dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                                 x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                    f"ring node {space.short(node_id)}")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_san(name, hosts or [])), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, _sign_hash(ca_key))
    )
    _write_private(key_path, key)
    _write_cert(cert_path, cert)
    return NodeCredentials(name, cert_path, key_path, node_id)


def cert_public_key(cert: x509.Certificate) -> PublicKey:
    key = cert.public_key()
    if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        raise CAError(f"certificate key is {type(key).__name__}; ring nodes use Ed25519 or ECDSA")
    return key


def node_id_of_cert(space: KeySpace, cert: x509.Certificate) -> int:
    """The ring id a certificate's key yields: the only id its holder may claim."""
    return node_id_for_key(space, cert_public_key(cert))


def node_id_of_der(space: KeySpace, der: bytes) -> int:
    return node_id_of_cert(space, x509.load_der_x509_certificate(der))


def node_id_of_pem_file(space: KeySpace, path: str | Path) -> int:
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except ValueError as exc:
        raise CAError(f"{path}: not a PEM certificate ({exc})") from None
    return node_id_of_cert(space, cert)
