"""A node's key pair and the id bound to it.

Ed25519 by default: small keys, fast, and the same key later signs the node's TLS
certificate, so the id a peer claims can be checked against the key it proves it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .ids import node_id_from_public_key
from .keyspace import KeySpace

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def public_key_bytes(key: PublicKey) -> bytes:
    """Canonical bytes of a public key: raw for Ed25519, compressed point for ECDSA."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
    raise TypeError(f"unsupported public key type {type(key).__name__}")


def node_id_for_key(space: KeySpace, key: PublicKey) -> int:
    return node_id_from_public_key(space, public_key_bytes(key))


@dataclass(frozen=True)
class NodeIdentity:
    """A private key and the node id it yields in a given key space."""

    private_key: PrivateKey
    node_id: int

    @classmethod
    def generate(cls, space: KeySpace, kind: str = "ed25519") -> NodeIdentity:
        if kind == "ed25519":
            priv: PrivateKey = ed25519.Ed25519PrivateKey.generate()
        elif kind == "ecdsa":
            priv = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(f"unknown key kind {kind!r} (ed25519 or ecdsa)")
        return cls(priv, node_id_for_key(space, priv.public_key()))

    @classmethod
    def from_pem(cls, space: KeySpace, pem: bytes) -> NodeIdentity:
        priv = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(priv, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
            raise ValueError("node keys must be Ed25519 or ECDSA")
        return cls(priv, node_id_for_key(space, priv.public_key()))

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
