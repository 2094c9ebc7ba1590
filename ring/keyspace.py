"""Identifiers on a circle of 2**m points, and the interval arithmetic Chord is made of.

Every routing decision in the ring reduces to "does x lie between a and b going clockwise?".
Getting the wrap-around and the degenerate cases (a == b) right in one place is the whole
point of this module; everything else calls it.

Conventions (those of the Chord paper):
- ``distance(a, b)`` is the clockwise distance from a to b, in ``[0, 2**m)``.
- ``in_open(x, a, b)``: x in (a, b). With a == b the interval is the whole circle but a.
- ``in_half_open(x, a, b)``: x in (a, b]. With a == b it is the whole circle: a node that
  is its own successor is responsible for every key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

DEFAULT_BITS = 160
MAX_BITS = 256  # ids are derived from SHA-256, so no more bits exist


@dataclass(frozen=True, slots=True)
class KeySpace:
    """The m-bit identifier circle."""

    bits: int = DEFAULT_BITS
    modulus: int = field(init=False, repr=False, compare=False)
    # How far an id shifts right to leave its top 64 bits (routing tables keep those).
    top_shift: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"key space bits must be in 1..{MAX_BITS}, got {self.bits}")
        object.__setattr__(self, "modulus", 1 << self.bits)
        object.__setattr__(self, "top_shift", max(self.bits - 64, 0))

    @property
    def id_bytes(self) -> int:
        """Bytes needed to carry one identifier on the wire."""
        return (self.bits + 7) // 8

    def check(self, x: int) -> int:
        """Return x if it is an identifier of this space, else raise ValueError."""
        if not 0 <= x < self.modulus:
            raise ValueError(f"identifier {x} outside the {self.bits}-bit key space")
        return x

    def distance(self, a: int, b: int) -> int:
        """Clockwise distance from a to b."""
        return (b - a) % self.modulus

    # The two interval tests compare ids only, for identifiers of the space: the same as
    # comparing clockwise distances from a, without making two new big numbers per call.

    def in_open(self, x: int, a: int, b: int) -> bool:
        """x in (a, b), clockwise."""
        if a < b:
            return a < x < b
        if b < a:
            return x > a or x < b  # the interval wraps past 0
        return x != a

    def in_half_open(self, x: int, a: int, b: int) -> bool:
        """x in (a, b], clockwise."""
        if a < b:
            return a < x <= b
        if b < a:
            return x > a or x <= b
        return True

    def finger_start(self, n: int, i: int) -> int:
        """Start of the i-th finger interval of node n: n + 2**i."""
        return (n + (1 << i)) % self.modulus

    def hash_bytes(self, data: bytes) -> int:
        """Map bytes onto the circle: the top ``bits`` bits of SHA-256."""
        digest = int.from_bytes(hashlib.sha256(data).digest(), "big")
        return digest >> (MAX_BITS - self.bits)

    def to_bytes(self, x: int) -> bytes:
        return x.to_bytes(self.id_bytes, "big")

    def from_bytes(self, data: bytes) -> int:
        if len(data) != self.id_bytes:
            raise ValueError(f"identifier must be {self.id_bytes} bytes, got {len(data)}")
        return self.check(int.from_bytes(data, "big"))

    def short(self, x: int) -> str:
        """A short human form of an id: its top 32 bits in hex."""
        shift = max(self.bits - 32, 0)
        width = (min(self.bits, 32) + 3) // 4
        return format(x >> shift, f"0{width}x")
