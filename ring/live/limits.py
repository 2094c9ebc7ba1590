"""Every bound a live node puts on its peers, in one frozen object (see ``LiveNode``)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..wire import DEFAULT_MAX_FRAME


@dataclass(frozen=True)
class LiveLimits:
    max_frame: int = DEFAULT_MAX_FRAME  # bytes; a larger length prefix drops the link
    connect_timeout: float = 5.0  # TCP connect to a peer
    handshake_timeout: float = 5.0  # accepted -> TLS done and the peer's Hello read
    frame_timeout: float = 10.0  # a frame once begun must be complete within this (slow loris)
    idle_timeout: float = 300.0  # no traffic either way: close the link quietly
    secondary_idle: float = 15.0  # a duplicate link nobody writes to is closed sooner
    max_links: int = 512  # peer links, including ones still in handshake
    max_malformed: int = 16  # undecodable messages tolerated on one link before dropping it
    recv_size: int = 256 * 1024  # bytes asked of the socket per read
    queue_high: int = 512 * 1024  # unsent bytes on a link above which its feeders pause
    queue_max: int = 64 << 20  # unsent bytes above which the peer is too slow: link dropped
    max_pause: float = 0.25  # longest a reader waits for a congested link per batch
    origin_custody: int = 8192  # local senders wait while this many envelopes are in custody
    shutdown_timeout: float = 10.0  # graceful leave: longest wait for custody to drain
    join_timeout: float = 60.0  # give up joining (exit) after this long without success

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) <= 0:
                raise ValueError(f"limit {f.name} must be positive")
        if self.queue_high > self.queue_max:
            raise ValueError("queue_high must not exceed queue_max")
