"""How fast one peer may send on one stream: a token bucket driven by the caller's clock.

Why: the parser caps what one stanza can make the edge hold, but a peer can still send
small, valid stanzas as fast as its link allows and starve every other stream of the node.
RFC 6120 §13.12 lets a server limit the rate at which it reads from a peer. Like Prosody's
``mod_limits`` and ejabberd's shapers, the edge first *throttles*: a stream over its rate
stops being read until the bucket has refilled (TCP then pushes back on the peer), and a
burst up to the bucket's size costs nothing. A peer that stays over the rate for longer
than a grace period, or runs up a debt no throttling driver would allow, is not merely
busy but hostile or broken: its stream is closed with ``<policy-violation/>``.

Sans-IO: ``now`` comes in with every call, the limits come in the constructor; the driver
asks :meth:`ByteRateLimiter.resume_at` when it may read again.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import StreamCondition, StreamError


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Per-stream limits on received bytes. ``bytes_per_second=None`` turns them off.

    The default (1 MiB/s, about 5,000 typical stanzas a second) is far above what a
    federating server sends on one stream, and low enough that one peer cannot monopolise
    an edge. Benchmarks that push one stream harder must raise it.
    """

    bytes_per_second: float | None = 1024 * 1024
    burst_bytes: int = 1024 * 1024  # what may arrive at once before throttling starts
    grace_seconds: float = 10.0  # over the rate this long without a break: policy-violation

    def __post_init__(self) -> None:
        if self.bytes_per_second is not None and self.bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive (or None for no limit)")
        if self.burst_bytes <= 0 or self.grace_seconds <= 0:
            raise ValueError("burst_bytes and grace_seconds must be positive")


class ByteRateLimiter:
    """Token bucket over received bytes, with persistence detection.

    The bucket holds at most ``burst_bytes`` and refills at ``bytes_per_second``. Bytes are
    always accepted (they have already arrived) and may take the level below zero: that is
    a debt, and :meth:`resume_at` tells the driver to stop reading until it is repaid.
    The peer is *persistently* over the limit when every arrival for ``grace_seconds`` found
    the bucket in debt, or when the debt exceeds ``burst + rate × grace`` (a driver that
    pauses as asked never lets it grow beyond one read).
    """

    __slots__ = ("limits", "level", "_last", "_over_since", "_max_debt")

    def __init__(self, limits: RateLimits, now: float) -> None:
        self.limits = limits
        self.level = float(limits.burst_bytes)
        self._last = now
        self._over_since: float | None = None
        rate = limits.bytes_per_second or 0.0
        self._max_debt = limits.burst_bytes + rate * limits.grace_seconds

    @property
    def enabled(self) -> bool:
        return self.limits.bytes_per_second is not None

    def _refill(self, now: float) -> None:
        if now > self._last:
            assert self.limits.bytes_per_second is not None
            self.level = min(float(self.limits.burst_bytes),
                             self.level + (now - self._last) * self.limits.bytes_per_second)
            self._last = now

    def consume(self, size: int, now: float) -> None:
        """Account for ``size`` received bytes; raises :class:`StreamError` (policy-violation)
        when the peer is persistently over its rate."""
        if not self.enabled:
            return
        self._refill(now)
        self.level -= size
        if self.level >= 0:
            self._over_since = None
            return
        if self._over_since is None:
            self._over_since = now
        if -self.level > self._max_debt or now - self._over_since > self.limits.grace_seconds:
            raise StreamError(StreamCondition.POLICY_VIOLATION,
                              f"sending faster than {self.limits.bytes_per_second:.0f} bytes per second")

    def resume_at(self) -> float | None:
        """When the driver may read again (the debt repaid), or None if it may read now."""
        if not self.enabled or self.level >= 0:
            return None
        assert self.limits.bytes_per_second is not None
        return self._last + (-self.level) / self.limits.bytes_per_second
