"""Caps on inbound s2s connections: per remote address, and unauthenticated ones in total.

Why: every inbound connection costs a task, buffers and often a TLS handshake and a dialback
look-up before the peer has proved anything. One address holding hundreds of streams, or a
crowd of connections that never authenticate, would exhaust the edge for honest peers.

The gate is sans-IO: the shell asks :meth:`ConnectionGate.admit` for each accepted socket
(with the remote address and ``now``), reports :meth:`authenticated` and :meth:`release`;
the gate only counts. A refusal names the RFC 6120 §4.9.3 stream error to send:

- over the per-address cap: ``policy-violation`` ("the entity has violated some local service
  policy"): that peer is the cause;
- over the unauthenticated cap: ``resource-constraint`` ("the server lacks the system resources
  necessary to service the stream"): the edge is busy, not necessarily because of this peer.

A flood of refused connections must not become a flood of log lines: a refusal is marked
for logging once per (address, reason) per ``log_interval``, with the count suppressed since.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from .errors import StreamCondition

PER_ADDRESS = "per-address"
UNAUTHENTICATED = "unauthenticated"
MAX_LOG_KEYS = 4096  # (address, reason) pairs remembered for log suppression


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection was refused, the stream error to send, and whether to log it now."""

    reason: str  # PER_ADDRESS or UNAUTHENTICATED
    condition: StreamCondition
    limit: int
    text: str
    log: bool
    suppressed: int  # refusals of this kind for this address not logged since the last line


class ConnectionGate:
    """Counts inbound connections by remote address and by authentication state."""

    def __init__(self, max_per_address: int, max_unauthenticated: int, *, log_interval: float = 60.0) -> None:
        if max_per_address < 1 or max_unauthenticated < 1:
            raise ValueError("connection caps must be at least 1")
        self.max_per_address = max_per_address
        self.max_unauthenticated = max_unauthenticated
        self.log_interval = log_interval
        self._address: dict[Hashable, str] = {}  # admitted connection -> its address
        self._unauthenticated: set[Hashable] = set()
        self._per_address: dict[str, int] = {}
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}  # -> (last logged, suppressed since)

    def admit(self, conn: Hashable, address: str, now: float) -> Refusal | None:
        """Count ``conn`` (from ``address``) in, or say why not. A refused one is not counted."""
        if conn in self._address:
            raise ValueError("connection admitted twice")
        if self._per_address.get(address, 0) >= self.max_per_address:
            return self._refuse(address, PER_ADDRESS, StreamCondition.POLICY_VIOLATION, self.max_per_address,
                                f"too many streams from {address} (at most {self.max_per_address})", now)
        if len(self._unauthenticated) >= self.max_unauthenticated:
            return self._refuse(address, UNAUTHENTICATED, StreamCondition.RESOURCE_CONSTRAINT,
                                self.max_unauthenticated, "too many streams waiting to authenticate; try later", now)
        self._address[conn] = address
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self._unauthenticated.add(conn)
        return None

    def authenticated(self, conn: Hashable) -> None:
        """``conn`` authenticated a domain: it no longer counts against the unauthenticated cap."""
        self._unauthenticated.discard(conn)

    def release(self, conn: Hashable) -> None:
        """``conn`` is closed (idempotent; unknown connections are ignored)."""
        address = self._address.pop(conn, None)
        if address is None:
            return
        self._unauthenticated.discard(conn)
        left = self._per_address[address] - 1
        if left:
            self._per_address[address] = left
        else:
            del self._per_address[address]

    def streams_from(self, address: str) -> int:
        return self._per_address.get(address, 0)

    @property
    def unauthenticated(self) -> int:
        return len(self._unauthenticated)

    @property
    def open(self) -> int:
        return len(self._address)

    def _refuse(self, address: str, reason: str, condition: StreamCondition, limit: int, text: str,
                now: float) -> Refusal:
        key = (address, reason)
        last = self._logged.get(key)
        if last is None or now - last[0] >= self.log_interval:
            if last is None and len(self._logged) >= MAX_LOG_KEYS:
                self._forget(now)
            self._logged[key] = (now, 0)
            return Refusal(reason, condition, limit, text, True, last[1] if last else 0)
        self._logged[key] = (last[0], last[1] + 1)
        return Refusal(reason, condition, limit, text, False, last[1] + 1)

    def _forget(self, now: float) -> None:
        """Bound the suppression memory: drop entries past their interval, else the oldest half."""
        stale = [k for k, (t, _) in self._logged.items() if now - t >= self.log_interval]
        if not stale:
            stale = sorted(self._logged, key=lambda k: self._logged[k][0])[: len(self._logged) // 2]
        for k in stale:
            del self._logged[k]
