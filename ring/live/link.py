"""One connection to one peer: its state, its unsent frames and its single coalescing writer.

Frames for a peer are appended to ``buf`` by whatever task ran the core; the link's writer
joins everything that accumulated into one ``send_all``. While one send is in flight, the
next batch builds up, so the number of system calls (and TLS records) per frame falls as the
load rises: this is what lets a Python node move hundreds of thousands of frames a second.
"""

from __future__ import annotations

import enum

import trio

from ..messages import NodeRef
from ..wire import MessageDecoder

MAX_SEND = 256 * 1024  # bytes joined into one send_all; bounds latency behind a big batch


class LinkState(enum.Enum):
    DIALING = "dialing"  # outbound, not yet connected; frames queue up meanwhile
    HANDSHAKE = "handshake"  # connected, TLS and Hello exchange in progress
    UP = "up"
    CLOSED = "closed"


class PeerLink:
    """A link's bookkeeping. The node server drives it; see ``LiveNode``."""

    __slots__ = ("peer", "outbound", "state", "stream", "decoder", "buf", "queued",
                 "wake", "scope", "last_read", "last_write", "opened", "partial_since",
                 "malformed", "remote", "frames_in", "frames_out", "sends", "redial",
                 "congested", "close_reason")

    def __init__(self, peer: NodeRef | None, *, outbound: bool, decoder: MessageDecoder,
                 now: float, remote: str = "") -> None:
        self.peer = peer
        self.outbound = outbound
        self.state = LinkState.DIALING if outbound else LinkState.HANDSHAKE
        self.stream: trio.abc.Stream | None = None
        self.decoder = decoder
        self.buf: list[bytes] = []
        self.queued = 0  # bytes pushed and not yet written (including a send in flight)
        self.wake = trio.Event()
        self.scope: trio.CancelScope | None = None
        self.opened = self.last_read = self.last_write = now
        self.partial_since = 0.0
        self.malformed = 0
        self.remote = remote  # the socket's peer address, for logs
        self.frames_in = 0
        self.frames_out = 0  # queued to go out here (by LiveNode._route_outputs)
        self.sends = 0
        self.redial = False  # this dial replaces a link that failed with frames pending
        self.congested = False
        self.close_reason = ""

    def push(self, frame: bytes) -> None:
        self.buf.append(frame)
        self.queued += len(frame)
        self.wake.set()

    def take_pending(self) -> list[bytes]:
        """Unsent frames, removed from this link (to move them to another link to the peer)."""
        out = self.buf
        self.buf = []
        self.queued -= sum(len(f) for f in out)
        return out

    def close(self, reason: str) -> None:
        """Ask the link's tasks to stop; the node server notices and cleans up."""
        if not self.close_reason:
            self.close_reason = reason
        if self.scope is not None:
            self.scope.cancel()

    async def write_loop(self, on_written) -> None:  # noqa: ANN001 - callback(link)
        """The only task that writes to ``stream``. Returns never; errors propagate."""
        stream = self.stream
        assert stream is not None
        while True:
            if not self.buf:
                self.wake = trio.Event()
                await self.wake.wait()
                continue
            buf = self.buf
            if len(buf) > 1 and self.queued > MAX_SEND:
                # (queued is what buf holds now: the previous send is done. Within the limit,
                # the usual case, all of it goes without a look at each frame.)
                total = 0
                cut = 0
                for f in buf:
                    total += len(f)
                    cut += 1
                    if total >= MAX_SEND:
                        break
                if cut < len(buf):
                    self.buf = buf[cut:]
                    buf = buf[:cut]
                else:
                    self.buf = []
                data = b"".join(buf)
            else:
                self.buf = []
                data = b"".join(buf) if len(buf) > 1 else buf[0]
            await stream.send_all(data)
            self.queued -= len(data)
            self.sends += 1
            self.last_write = trio.current_time()
            if self.congested:
                on_written(self)

    def describe(self) -> str:
        if self.peer is None:
            return self.remote or "?"
        return self.peer.addr
