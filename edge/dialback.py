"""XEP-0220 dialback keys, generated per XEP-0185 from a secret shared by every edge of a ring.

Why a shared secret: the peer that verifies a key may reach *any* edge serving the ring
domain (DNS hands out several), so that edge must recompute the same key without having
seen the stream it was issued on. XEP-0185's construction needs only the secret and the
three strings it hashes:

    key = hex( HMAC-SHA256( key = hex(SHA256(secret)), msg = "Receiving Originating StreamID" ) )
"""

from __future__ import annotations

import hashlib
import hmac

MAX_KEY_CHARS = 1024  # a key is 64 hex digits; anything far longer is hostile


def dialback_key(secret: bytes, receiving: str, originating: str, stream_id: str) -> str:
    """The key ``originating`` presents to ``receiving`` on the stream ``stream_id``."""
    hashed_secret = hashlib.sha256(secret).hexdigest().encode("ascii")
    message = f"{receiving} {originating} {stream_id}".encode("utf-8")
    return hmac.new(hashed_secret, message, hashlib.sha256).hexdigest()


class DialbackKeys:
    """Key issuing and checking with one secret (the authoritative-server role)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the dialback secret must be at least 16 bytes")
        self._secret = secret

    def generate(self, receiving: str, originating: str, stream_id: str) -> str:
        return dialback_key(self._secret, receiving, originating, stream_id)

    def check(self, key: str, receiving: str, originating: str, stream_id: str) -> bool:
        """Constant-time comparison, so a forger learns nothing from timing."""
        if not key or len(key) > MAX_KEY_CHARS:
            return False
        expected = self.generate(receiving, originating, stream_id)
        return hmac.compare_digest(expected.encode("ascii"), key.strip().encode("utf-8", "replace"))
