"""A live ring node: the sans-IO ``RingNode`` driven by trio over (mutual TLS) TCP links.

The shell only moves bytes and time. Per link, one task reads bytes into a MessageDecoder and
feeds all that a read completed to ``core.handle_messages(peer, msgs, now, starts, data)``; after each
read the core's outputs are encoded into per-peer send buffers (the envelopes it forwards come
out as frames already, relayed from the ones read), each drained by the link's single
writer (``PeerLink.write_loop``), which coalesces whatever accumulated into one send. One
timer task sleeps until ``core.get_timer()`` and calls ``handle_timer``.

Links are made on demand: the first message for a peer dials ``NodeRef.addr``. The first
frame each way is ``Hello(node)``; with TLS the claimed id must be the one the peer's
certificate key yields, and the certificate must chain to the ring CA, or the link is refused
with a ``peer_refused`` log line. When both nodes dial each other at once, both keep the link
dialed by the lower id for sending (so they agree without talking); the other one is only
read from until it goes idle.

A link that fails with frames still to send, or soon after carrying traffic, is dialed again
at once; if that dial fails the core hears ``peer_unreachable``. So a crashed peer is noticed
by the next message sent to it, not only by the core's timeouts.

Resource handling: every link, handshake and queue is bounded (``LiveLimits``). Readers pause
briefly while a link they feed is congested (backpressure into TCP), local senders wait, and a
peer that does not drain ``queue_max`` bytes is dropped.

Error handling: remote errors (bad certificate, wrong id, garbage, oversized frame, slow peer)
close that one link with a log line and never reach the node; bugs in delivery hooks are
logged and swallowed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import secrets
import ssl
from collections.abc import Callable, Iterable, Sequence

import trio

from ..config import RingConfig
from ..events import (
    Confirmed,
    Delivered,
    Event,
    Joined,
    JoinFailed,
    LookupDone,
    LookupFailed,
    PeerSuspected,
    PredecessorChanged,
    ProbeResult,
    SuccessorChanged,
    Undeliverable,
)
from ..identity import NodeIdentity
from ..messages import Envelope, Hello, Message, NodeRef
from ..node import NodeState, RingNode
from ..wire import FrameTooLarge, MalformedMessage, MessageDecoder, RelayedFrames, WireCodec
from .addr import format_hostport, is_wildcard, parse_hostport
from .limits import LiveLimits
from .link import LinkState, PeerLink
from .logfmt import log_event
from .tls import PeerCertificateError, RingTls, WideReads, peer_node_id, take_decrypted

log = logging.getLogger("ringmesh.live")
INFO, DEBUG, WARNING = logging.INFO, logging.DEBUG, logging.WARNING

DeliverHook = Callable[[Envelope], None]
EventHook = Callable[[Event], None]


class JoinError(RuntimeError):
    """The node could not join the ring through any bootstrap peer."""


class HandshakeRefused(Exception):
    """A peer failed authentication or spoke out of turn during the handshake."""


class LiveNode:
    """One ring node on the network.

    ``on_deliver(envelope)`` is called for every envelope this node is responsible for (the
    edge plugs its stanza router in here); ``on_event(event)`` for every other core event.
    Both run inside the node's task: they must not block. Hand work to your own channel.
    ``send`` / ``send_batch`` / ``probe`` / ``lookup`` may be called from any task of the same
    trio run.
    """

    def __init__(
        self,
        *,
        config: RingConfig | None = None,
        tls: RingTls | None = None,
        node_id: int | None = None,
        listen: str = "127.0.0.1:0",
        advertise: str | None = None,
        bootstrap: Sequence[str] = (),
        admin: str | None = None,
        limits: LiveLimits | None = None,
        name: str = "",
        on_deliver: DeliverHook | None = None,
        on_event: EventHook | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config or RingConfig()
        self.space = self.config.space
        self.limits = limits or LiveLimits()
        self.tls = tls
        if tls is not None:
            if node_id is not None and node_id != tls.node_id:
                raise ValueError("node_id differs from the id of the TLS certificate")
            node_id = tls.node_id
        elif node_id is None:
            node_id = NodeIdentity.generate(self.space).node_id
        self.node_id = self.space.check(node_id)
        self.listen_spec = listen
        parse_hostport(listen, what="listen address")
        self.advertise_spec = advertise
        self.bootstrap = list(bootstrap)
        for b in self.bootstrap:
            parse_hostport(b, what="bootstrap address")
        self.admin_spec = admin
        self.name = name
        self.on_deliver = on_deliver
        self.on_event = on_event
        self.codec = WireCodec(self.space)
        self._rng = random.Random(seed if seed is not None else secrets.randbits(64))
        self.core: RingNode | None = None
        self.addr = ""  # advertised host:port, known once listening
        self.listen_addr = ""
        self.admin_addr = ""
        self.delivered = 0
        self.confirmed = 0
        self.undeliverable = 0
        self.refused = 0
        self.started_at = 0.0
        self._links: dict[int, PeerLink] = {}  # preferred link per peer id (sending)
        self._all: set[PeerLink] = set()
        self._nursery: trio.Nursery | None = None
        self._armed = math.inf
        self._timer_wake = trio.Event()
        self._congested: set[PeerLink] = set()
        self._capacity = trio.Event()
        self._waiters = 0
        self._probes: dict[int, list] = {}
        self._lookups: dict[int, list] = {}
        self._join_done: trio.Event | None = None
        self._join_outcome: Event | None = None
        self._stopped = trio.Event()
        self._ready = trio.Event()
        self._leaving = False

    # == lifecycle ===========================================================================

    @property
    def ref(self) -> NodeRef:
        assert self.core is not None, "node not started"
        return self.core.me

    async def serve(self, *, task_status: trio.TaskStatus[LiveNode] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Listen, create or join the ring, then run until ``stop()`` or cancellation."""
        host, port = parse_hostport(self.listen_spec, what="listen address")
        listeners = await trio.open_tcp_listeners(port, host=host or None)
        bound = listeners[0].socket.getsockname()
        self.listen_addr = format_hostport(bound[0], bound[1])
        if self.advertise_spec:
            ahost, aport = parse_hostport(self.advertise_spec, what="advertised address")
            self.addr = format_hostport(ahost, aport or bound[1])
        else:
            if is_wildcard(host):
                raise ValueError("listening on a wildcard address: set the advertised address")
            self.addr = self.listen_addr
        self.core = RingNode(NodeRef(self.node_id, self.addr), self.config,
                             rng=random.Random(self._rng.getrandbits(64)),
                             msg_id_base=self._rng.getrandbits(64))
        self.started_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._serve_listeners, listeners)
            if self.admin_spec:
                from .admin import serve_admin

                await nursery.start(serve_admin, self, self.admin_spec)
            nursery.start_soon(self._timer_loop)
            log_event(log, INFO, "listening", node=self._short(), ring=self.listen_addr,
                      advertise=self.addr, admin=self.admin_addr or None,
                      tls="mutual" if self.tls else "off", name=self.name or None)
            if self.tls is None:
                log_event(log, WARNING, "insecure_plain", node=self._short(),
                          detail="plain TCP, peers are not authenticated")
            if self.bootstrap:
                await self._join()
            else:
                self.core.create(trio.current_time())
                log_event(log, INFO, "ring_created", node=self._short())
                self._after(trio.current_time())
            self._ready.set()
            task_status.started(self)
            await self._stopped.wait()
            nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """Stop at once (crash-only: no goodbye). ``shutdown`` is the graceful way."""
        self._stopped.set()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Leave the ring, let custody drain and queues flush, then stop. True if drained."""
        core = self.core
        drained = True
        if core is not None and core.state is NodeState.ACTIVE:
            self._leaving = True
            now = trio.current_time()
            core.leave(now)
            log_event(log, INFO, "leaving", node=self._short(), custody=core.custody_count)
            self._after(now)
            with trio.move_on_after(timeout if timeout is not None
                                    else self.limits.shutdown_timeout):
                for _ in range(1_000_000):
                    if core.drained and not any(lk.queued for lk in self._all
                                                if lk.state is LinkState.UP):
                        break
                    await trio.sleep(0.01)
            drained = core.drained
            log_event(log, INFO if drained else WARNING, "left", node=self._short(),
                      drained=drained, custody=core.custody_count)
        self.stop()
        return drained

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # == originating =========================================================================

    async def _wait_capacity(self) -> None:
        core = self.core
        limit = self.limits.origin_custody
        while self._congested or core.custody_count >= limit:
            self._waiters += 1
            try:
                if self._capacity.is_set():
                    self._capacity = trio.Event()
                await self._capacity.wait()
            finally:
                self._waiters -= 1

    async def send(self, dest: int, payload: bytes, *, flags: int = 0) -> int:
        """Originate an envelope to key ``dest``; returns its msg_id once accepted.

        Waits while the node is congested (backpressure). Raises RuntimeError when the node
        is not an active ring member, ValueError for an oversized payload or bad key.
        """
        await self._wait_capacity()
        now = trio.current_time()
        msg_id = self.core.send(dest, payload, now, flags=flags)
        self._after(now)
        return msg_id

    async def send_batch(self, items: Iterable[tuple[int, bytes]], *, flags: int = 0) -> list[int]:
        """Originate many envelopes at once (one flush): the cheap way to send in bulk.
        ``flags`` (e.g. TRACE) apply to every envelope of the batch."""
        await self._wait_capacity()
        now = trio.current_time()
        send = self.core.send
        if flags:
            ids = [send(dest, payload, now, flags=flags) for dest, payload in items]
        else:
            ids = [send(dest, payload, now) for dest, payload in items]
        self._after(now)
        return ids

    async def probe(self, dest: int, timeout: float = 5.0) -> ProbeResult:
        """Route a probe to ``dest`` and return the path it took (raises TooSlowError)."""
        now = trio.current_time()
        msg_id = self.core.probe(dest, now)
        slot: list = [trio.Event(), None]
        self._probes[msg_id] = slot
        try:
            self._after(now)
            with trio.fail_after(timeout):
                await slot[0].wait()
            return slot[1]
        finally:
            self._probes.pop(msg_id, None)

    async def lookup(self, key: int, timeout: float = 5.0) -> NodeRef:
        """The node responsible for ``key`` (its id and address), found by a ring lookup.

        Raises TooSlowError, or LookupError when the lookup failed inside the ring."""
        now = trio.current_time()
        req = self.core.lookup(key, now)
        slot: list = [trio.Event(), None]
        self._lookups[req] = slot
        try:
            self._after(now)
            with trio.fail_after(timeout):
                await slot[0].wait()
        finally:
            self._lookups.pop(req, None)
        if isinstance(slot[1], LookupFailed):
            raise LookupError(f"lookup of {self.space.short(key)} failed")
        return slot[1].successor

    # == the core's outputs and events =======================================================

    def _after(self, now: float) -> None:
        """Drain the core after any input: encode outputs into link buffers, handle events,
        re-arm the timer."""
        core = self.core
        for _ in range(16):  # messages a node sends itself are rare; bound the rounds anyway
            local = self._route_outputs(core.take_outputs())
            if not local:
                break
            for msg in local[:1000]:
                core.handle_message(core.me, msg, now)
        evs = core.take_events()
        if evs:
            self._on_events(evs, now)
        t = core.get_timer()
        if t is not None and t < self._armed:
            self._armed = t
            self._timer_wake.set()
        if self._waiters and not self._congested and \
                core.custody_count < self.limits.origin_custody:
            self._capacity.set()

    def _route_outputs(self, outs: Sequence[tuple[NodeRef, Message | RelayedFrames]]
                       ) -> list[Message] | None:
        """Encode each output onto its peer's link (dialing on demand); returns the messages
        addressed to this node itself, if any. A RelayedFrames output holds relayed
        envelope frames (see ``RingNode.handle_messages``), queued as they are."""
        if not outs:
            return None
        enc = self.codec.encode_frame
        links = self._links
        me = self.node_id
        last_ref: NodeRef | None = None
        link: PeerLink | None = None
        push = extend = None
        size = 0  # bytes appended to link since it was looked up (added to its queue at once)
        count = 0  # and frames
        touched: list[PeerLink] = []
        local: list[Message] | None = None
        for ref, msg in outs:
            if ref is not last_ref:  # the core addresses a run of outputs with one NodeRef
                if link is not None:
                    link.queued += size
                    link.frames_out += count
                    size = count = 0
                rid = ref.id
                link = links.get(rid)
                if link is None:
                    if rid == me:
                        if local is None:
                            local = []
                        if type(msg) is RelayedFrames:
                            dec = MessageDecoder(self.codec)
                            for part in msg:
                                dec.feed(part)
                            local.extend(dec.messages()[0])
                        else:
                            local.append(msg)
                        last_ref = None
                        continue
                    link = self._new_dial(ref)
                if link not in touched:
                    touched.append(link)
                push, extend = link.buf.append, link.buf.extend
                last_ref = ref
            if type(msg) is RelayedFrames:
                extend(msg)
                size += sum(map(len, msg))
                count += msg.frames
            else:
                frame = enc(msg)
                push(frame)
                size += len(frame)
                count += 1
        if link is not None:
            link.queued += size
            link.frames_out += count
        lim = self.limits
        for link in touched:
            link.wake.set()
            q = link.queued
            if q > lim.queue_high:
                if q > lim.queue_max:
                    log_event(log, WARNING, "peer_too_slow", node=self._short(),
                              peer=self._ref_str(link.peer), queued=q)
                    link.take_pending()
                    link.close("too slow")
                elif not link.congested:
                    link.congested = True
                    self._congested.add(link)
        return local

    def _on_written(self, link: PeerLink) -> None:
        if link.congested and link.queued <= self.limits.queue_high // 2:
            link.congested = False
            self._congested.discard(link)
            self._capacity.set()

    def _on_events(self, evs: list[Event], now: float) -> None:
        hook = self.on_event
        debug = log.isEnabledFor(DEBUG)
        for ev in evs:
            t = type(ev)
            if t is Delivered:
                self.delivered += 1
                if debug:
                    env = ev.envelope
                    log_event(log, DEBUG, "delivered", node=self._short(), msg_id=env.msg_id,
                              origin=self.space.short(env.origin), dest=self.space.short(env.dest),
                              hops=env.hops, size=len(env.payload))
                if self.on_deliver is not None:
                    try:
                        self.on_deliver(ev.envelope)
                    except Exception:
                        log.exception("%s", "event=deliver_hook_failed")
                continue
            if t is Confirmed:
                self.confirmed += 1
            elif t is ProbeResult:
                slot = self._probes.get(ev.msg_id)
                if slot is not None:
                    slot[1] = ev
                    slot[0].set()
            elif t is LookupDone or t is LookupFailed:
                slot = self._lookups.get(ev.req_id)
                if slot is not None:
                    slot[1] = ev
                    slot[0].set()
            elif t is SuccessorChanged:
                log_event(log, INFO, "successor_changed", node=self._short(),
                          old=self._ref_str(ev.old), new=self._ref_str(ev.new))
            elif t is PredecessorChanged:
                log_event(log, INFO, "predecessor_changed", node=self._short(),
                          old=self._ref_str(ev.old), new=self._ref_str(ev.new))
            elif t is PeerSuspected:
                log_event(log, INFO, "peer_suspected", node=self._short(),
                          peer=self._ref_str(ev.peer), reason=ev.reason)
            elif t is Undeliverable:
                self.undeliverable += 1
                r = ev.report
                log_event(log, WARNING, "undeliverable", node=self._short(), msg_id=r.msg_id,
                          dest=self.space.short(r.dest), code=r.code.name.lower(),
                          at=self.space.short(r.at_node))
            elif t is Joined or t is JoinFailed:
                self._join_outcome = ev
                if self._join_done is not None:
                    self._join_done.set()
            if hook is not None:
                try:
                    hook(ev)
                except Exception:
                    log.exception("%s", "event=event_hook_failed")

    # == timer ===============================================================================

    async def _timer_loop(self) -> None:
        core = self.core
        while True:  # until the node stops
            t = core.get_timer()
            self._armed = math.inf if t is None else t
            self._timer_wake = trio.Event()
            if t is None or t > trio.current_time():
                with trio.move_on_at(self._armed):
                    await self._timer_wake.wait()
            else:
                await trio.lowlevel.checkpoint()
            now = trio.current_time()
            t = core.get_timer()
            if t is not None and t <= now:
                core.handle_timer(now)
                self._after(now)

    # == joining =============================================================================

    async def _join(self) -> None:
        core = self.core
        lim = self.limits
        delay = 0.2
        with trio.move_on_after(lim.join_timeout):
            for attempt in range(1, 10_000):
                for addr in self.bootstrap:
                    link = PeerLink(None, outbound=True, decoder=self._decoder(),
                                    now=trio.current_time(), remote=addr)
                    self._all.add(link)
                    try:
                        await self._connect(link, addr, expect=None)
                    except (OSError, trio.TooSlowError, trio.BrokenResourceError,
                            HandshakeRefused) as exc:
                        self._all.discard(link)
                        log_event(log, WARNING, "bootstrap_failed", node=self._short(),
                                  bootstrap=addr, attempt=attempt, reason=_reason(exc))
                        continue
                    self._nursery.start_soon(self._run_link, link)
                    self._join_done = trio.Event()
                    self._join_outcome = None
                    now = trio.current_time()
                    core.join(link.peer, now)
                    log_event(log, INFO, "joining", node=self._short(), bootstrap=addr,
                              via=self._ref_str(link.peer))
                    self._after(now)
                    await self._join_done.wait()
                    out = self._join_outcome
                    if isinstance(out, Joined):
                        log_event(log, INFO, "joined", node=self._short(),
                                  successor=self._ref_str(out.successor))
                        return
                    reason = out.reason if isinstance(out, JoinFailed) else "?"
                    log_event(log, WARNING, "join_failed", node=self._short(), bootstrap=addr,
                              reason=reason)
                    if "in use" in reason:
                        raise JoinError(reason)
                await trio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, 5.0)
        raise JoinError(f"could not join through {', '.join(self.bootstrap)} "
                        f"within {lim.join_timeout:g}s")

    # == links ===============================================================================

    def _decoder(self) -> MessageDecoder:
        return MessageDecoder(self.codec, self.limits.max_frame)

    def _new_dial(self, ref: NodeRef) -> PeerLink:
        """A placeholder link for ``ref`` that frames can queue on while it is dialed."""
        link = PeerLink(ref, outbound=True, decoder=self._decoder(), now=trio.current_time())
        self._links[ref.id] = link
        self._all.add(link)
        if len(self._all) > self.limits.max_links:
            self._evict_one()
        self._nursery.start_soon(self._dial, link)
        return link

    def _evict_one(self) -> None:
        idle = [lk for lk in self._all if lk.state is LinkState.UP and not lk.queued]
        if idle:
            victim = min(idle, key=lambda lk: max(lk.last_read, lk.last_write))
            log_event(log, DEBUG, "link_evicted", node=self._short(),
                      peer=self._ref_str(victim.peer))
            victim.close("evicted")

    async def _dial(self, link: PeerLink) -> None:
        ref = link.peer
        try:
            await self._connect(link, ref.addr, expect=ref.id)
        except (OSError, ValueError, trio.TooSlowError, trio.BrokenResourceError,
                trio.ClosedResourceError, HandshakeRefused) as exc:
            self._all.discard(link)
            link.state = LinkState.CLOSED
            if self._links.get(ref.id) is not link:
                return  # superseded by a link the peer dialed meanwhile
            del self._links[ref.id]
            pending = link.take_pending()
            alt = self._alternative(ref.id)
            if alt is not None:
                self._promote(alt, pending)
                return
            log_event(log, INFO, "peer_unreachable", node=self._short(),
                      peer=self._ref_str(ref), reason=_reason(exc), redial=link.redial or None)
            if self.core.state is not NodeState.IDLE:
                now = trio.current_time()
                self.core.peer_unreachable(ref, now, "unreachable")
                self._after(now)
            return
        await self._run_link(link)

    async def _connect(self, link: PeerLink, addr: str, *, expect: int | None) -> None:
        """TCP connect, TLS, and the Hello exchange; leaves ``link`` UP and registered."""
        host, port = parse_hostport(addr, what="peer address")
        lim = self.limits
        with trio.fail_after(lim.connect_timeout):
            tcp = await trio.open_tcp_stream(host, port)
        link.remote = addr
        link.state = LinkState.HANDSHAKE
        try:
            with trio.fail_after(lim.handshake_timeout):
                await self._handshake(link, tcp, server_side=False, expect=expect)
        except BaseException:
            await trio.aclose_forcefully(tcp)
            raise

    async def _serve_listeners(self, listeners: list[trio.SocketListener]) -> None:
        await trio.serve_listeners(self._accept, listeners)

    async def _accept(self, tcp: trio.SocketStream) -> None:
        try:
            peer = tcp.socket.getpeername()
            remote = format_hostport(peer[0], peer[1])
        except OSError:
            remote = "?"
        if len(self._all) >= self.limits.max_links:
            self._refuse(remote, "too many links")
            await trio.aclose_forcefully(tcp)
            return
        now = trio.current_time()
        link = PeerLink(None, outbound=False, decoder=self._decoder(), now=now, remote=remote)
        self._all.add(link)
        try:
            with trio.fail_after(self.limits.handshake_timeout):
                await self._handshake(link, tcp, server_side=True, expect=None)
        except trio.TooSlowError:
            self._all.discard(link)
            self._refuse(remote, "handshake timeout")
            await trio.aclose_forcefully(tcp)
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                HandshakeRefused) as exc:
            self._all.discard(link)
            self._refuse(remote, _reason(exc))
            await trio.aclose_forcefully(tcp)
            return
        except Exception as exc:  # whatever a stranger sends must not take the node down
            self._all.discard(link)
            self._refuse(remote, f"handshake error: {exc.__class__.__name__}: {exc}")
            await trio.aclose_forcefully(tcp)
            return
        await self._run_link(link)

    def _refuse(self, remote: str, reason: str, claimed: int | None = None) -> None:
        self.refused += 1
        log_event(log, WARNING, "peer_refused", node=self._short(), remote=remote,
                  reason=reason, claimed=self.space.short(claimed) if claimed is not None else None)

    async def _handshake(self, link: PeerLink, tcp: trio.SocketStream, *, server_side: bool,
                         expect: int | None) -> None:
        stream: trio.abc.Stream = tcp
        cert_id: int | None = None
        if self.tls is not None:
            ctx = self.tls.server if server_side else self.tls.client
            stream = trio.SSLStream(WideReads(tcp, self.limits.recv_size), ctx,
                                    server_side=server_side)
            await stream.do_handshake()
            try:
                cert_id = peer_node_id(stream, self.space)
            except PeerCertificateError as exc:
                raise HandshakeRefused(f"bad certificate: {exc}") from None
        link.stream = stream
        await stream.send_all(self.codec.encode_frame(Hello(self.core.me)))
        dec = link.decoder
        msg = None
        for _ in range(64):
            data = await stream.receive_some(65536)
            if not data:
                raise HandshakeRefused("closed before Hello")
            try:
                dec.feed(data)
                msg = dec.next_message()
            except FrameTooLarge as exc:
                raise HandshakeRefused(str(exc)) from None
            except MalformedMessage as exc:
                raise HandshakeRefused(f"malformed first message: {exc}") from None
            if msg is not None:
                break
        if type(msg) is not Hello:
            raise HandshakeRefused(
                f"first message must be Hello, got {type(msg).__name__ if msg else 'nothing'}")
        claimed = msg.node
        if cert_id is not None and claimed.id != cert_id:
            raise HandshakeRefused(
                f"claims id {self.space.short(claimed.id)} but its certificate key is "
                f"{self.space.short(cert_id)}")
        if claimed.id == self.node_id:
            raise HandshakeRefused("peer claims this node's own id")
        if expect is not None and claimed.id != expect:
            raise HandshakeRefused(
                f"dialed {self.space.short(expect)} but reached {self.space.short(claimed.id)}")
        try:
            parse_hostport(claimed.addr, what="advertised address")
        except ValueError as exc:
            raise HandshakeRefused(str(exc)) from None
        link.peer = claimed
        link.state = LinkState.UP
        now = trio.current_time()
        link.last_read = link.last_write = now
        self._register(link)
        log_event(log, INFO, "peer_up", node=self._short(), peer=self._ref_str(claimed),
                  direction="out" if link.outbound else "in", remote=link.remote)

    def _dialer_id(self, link: PeerLink) -> int:
        return self.node_id if link.outbound else link.peer.id

    def _register(self, link: PeerLink) -> None:
        pid = link.peer.id
        cur = self._links.get(pid)
        if cur is None or cur is link:
            self._links[pid] = link
            return
        if cur.state is LinkState.DIALING or self._dialer_id(link) <= self._dialer_id(cur):
            # The new link wins: by the agreed rule (lower dialer id), or because nothing
            # else is up yet. A dial still in progress goes on; when it completes the same
            # rule decides again, on both sides alike.
            self._links[pid] = link
            pending = cur.take_pending()
            if pending:
                link.buf.extend(pending)
                link.queued += sum(len(f) for f in pending)
                link.wake.set()

    def _alternative(self, pid: int) -> PeerLink | None:
        for lk in self._all:
            if lk.state is LinkState.UP and lk.peer is not None and lk.peer.id == pid:
                return lk
        return None

    def _promote(self, link: PeerLink, pending: list[bytes]) -> None:
        self._links[link.peer.id] = link
        if pending:
            link.buf.extend(pending)
            link.queued += sum(len(f) for f in pending)
            link.wake.set()

    async def _run_link(self, link: PeerLink) -> None:
        reason = "closed"
        try:
            async with trio.open_nursery() as n:
                link.scope = n.cancel_scope
                if link.close_reason:
                    n.cancel_scope.cancel()
                n.start_soon(self._write_task, link)
                try:
                    reason = await self._read_loop(link)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    reason = _reason(exc)
                n.cancel_scope.cancel()
        finally:
            if link.close_reason:
                reason = link.close_reason
            link.state = LinkState.CLOSED
            self._all.discard(link)
            if link.congested:
                link.congested = False
                self._congested.discard(link)
                self._capacity.set()
            if link.stream is not None:
                await trio.aclose_forcefully(link.stream)
        self._link_closed(link, reason)

    async def _write_task(self, link: PeerLink) -> None:
        try:
            await link.write_loop(self._on_written)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            link.close(_reason(exc) or "write failed")

    def _link_closed(self, link: PeerLink, reason: str) -> None:
        peer = link.peer
        if peer is None or self.core is None:
            return
        quiet = reason in ("idle", "secondary idle", "evicted", "shutdown")
        log_event(log, DEBUG if quiet else INFO, "peer_down", node=self._short(),
                  peer=self._ref_str(peer), reason=reason, frames_in=link.frames_in,
                  frames_out=link.frames_out)
        if self._links.get(peer.id) is not link:
            return
        del self._links[peer.id]
        pending = link.take_pending()
        alt = self._alternative(peer.id)
        if alt is not None:
            self._promote(alt, pending)
            return
        now = trio.current_time()
        recent = (now - link.last_write < 2 * self.config.ack_timeout
                  and self.core.table.knows(peer.id))
        if quiet or not (pending or recent) or self._stopped.is_set():
            return
        # Frames were pending or just sent: find out now whether the peer is still there.
        new = PeerLink(peer, outbound=True, decoder=self._decoder(), now=now)
        new.redial = True
        self._links[peer.id] = new
        self._all.add(new)
        if pending:
            new.buf = pending
            new.queued = sum(len(f) for f in pending)
        self._nursery.start_soon(self._dial, new)

    async def _read_loop(self, link: PeerLink) -> str:
        stream = link.stream
        dec = link.decoder
        frames = dec.frames
        lim = self.limits
        recv = lim.recv_size
        # The handshake may have read frames that followed the Hello.
        if frames.buffered:
            r = self._on_input(link, dec)
            if r:
                return r
            if frames.buffered:
                link.partial_since = trio.current_time()
        while True:
            primary = self._links.get(link.peer.id) is link
            idle = lim.idle_timeout if primary else min(lim.idle_timeout, lim.secondary_idle)
            if frames.buffered:
                deadline = link.partial_since + lim.frame_timeout
            else:
                deadline = max(link.last_read, link.last_write) + idle
            data = None
            with trio.move_on_at(deadline):
                data = await stream.receive_some(recv)
            if data is None:
                now = trio.current_time()
                if frames.buffered:
                    log_event(log, WARNING, "peer_dropped", node=self._short(),
                              peer=self._ref_str(link.peer), reason="frame timeout",
                              buffered=frames.buffered)
                    return "frame timeout"
                if now >= max(link.last_read, link.last_write) + idle:
                    return "idle" if primary else "secondary idle"
                continue  # the writer was busy meanwhile: not idle
            if not data:
                return "eof"
            now = link.last_read = trio.current_time()
            before = link.frames_in
            frames.feed(data)
            for more in take_decrypted(stream, recv):
                frames.feed(more)
            r = self._on_input(link, dec)
            if r:
                return r
            if frames.buffered:
                if link.frames_in != before or not link.partial_since:
                    link.partial_since = now  # a new frame began: its own time limit
            else:
                link.partial_since = 0.0
            if self._congested:
                await self._pause(link)

    def _on_input(self, link: PeerLink, dec: MessageDecoder) -> str:
        """Feed every complete message to the core; returns a reason to drop the link, or ''."""
        core = self.core
        peer = link.peer
        now = trio.current_time()
        reason = ""
        for _ in range(2):  # a second round only meets an oversized frame, if one follows
            starts: list[int | None] = []  # forwarded envelopes are relayed, not re-encoded
            try:
                msgs, errors = dec.messages(starts)
            except FrameTooLarge as exc:
                log_event(log, WARNING, "peer_dropped", node=self._short(),
                          peer=self._ref_str(peer), reason="frame too large", detail=str(exc))
                reason = "frame too large"
                break
            link.frames_in += len(msgs) + len(errors)
            if errors:
                reason = self._on_malformed(link, errors)
                if reason:
                    break
            if not msgs:
                break
            core.handle_messages(peer, msgs, now, starts, dec.last_read)
            if not dec.frames.buffered:
                break
        self._after(now)
        return reason

    def _on_malformed(self, link: PeerLink, errors: list[MalformedMessage]) -> str:
        for exc in errors:
            link.malformed += 1
            log_event(log, WARNING, "malformed_message", node=self._short(),
                      peer=self._ref_str(link.peer), detail=str(exc), count=link.malformed)
            if link.malformed >= self.limits.max_malformed:
                reason = "too many malformed messages"
                log_event(log, WARNING, "peer_dropped", node=self._short(),
                          peer=self._ref_str(link.peer), reason=reason)
                return reason
        return ""

    async def _pause(self, link: PeerLink) -> None:
        """Backpressure: hold this reader while another link is congested (bounded)."""
        others = [lk for lk in self._congested if lk is not link and
                  (lk.peer is None or link.peer is None or lk.peer.id != link.peer.id)]
        if not others:
            return
        with trio.move_on_after(self.limits.max_pause):
            while any(lk.congested for lk in others):
                if self._capacity.is_set():
                    self._capacity = trio.Event()
                await self._capacity.wait()

    # == introspection =======================================================================

    def _short(self) -> str:
        return self.space.short(self.node_id)

    def _ref_str(self, ref: NodeRef | None) -> str | None:
        if ref is None:
            return None
        return f"{self.space.short(ref.id)}@{ref.addr}"

    def link_to(self, peer_id: int) -> PeerLink | None:
        return self._links.get(peer_id)

    def links(self) -> list[PeerLink]:
        return list(self._all)

    def health(self, ref: NodeRef | None) -> dict | None:
        if ref is None:
            return None
        now = trio.current_time()
        link = self._links.get(ref.id)
        out = {"id": f"{ref.id:0{(self.space.bits + 3) // 4}x}", "short": self.space.short(ref.id),
               "addr": ref.addr}
        if link is None:
            out["link"] = "none"
        else:
            out["link"] = link.state.value
            out["heard_s"] = round(now - link.last_read, 3)
            out["queued"] = link.queued
        return out

    def status(self) -> dict:
        core = self.core
        t = core.table
        st = core.stats
        return {
            "name": self.name,
            "node": self.health(core.me) | {"link": "self"},
            "state": core.state.value,
            "tls": self.tls is not None,
            "uptime_s": round(trio.current_time() - self.started_at, 1),
            "predecessor": self.health(t.predecessor),
            "successors": [self.health(s) for s in t.successors],
            "fingers": [{"index": i} | self.health(f) for i, f in sorted(t.fingers.items())],
            "links": len(self._all),
            "custody": core.custody_count,
            "delivered": self.delivered,
            "confirmed": self.confirmed,
            "refused": self.refused,
            "stats": dataclasses.asdict(st),
        }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    if isinstance(exc, HandshakeRefused):
        return str(exc)
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, trio.BrokenResourceError) and cause is not None:
        if isinstance(cause, ssl.SSLError):
            if "EOF" in (cause.reason or "").upper() or isinstance(cause, ssl.SSLEOFError):
                return "tls: peer hung up during the handshake (does it trust this ring's CA?)"
            return f"tls: {cause.reason or cause.__class__.__name__}".lower()
        return _reason(cause)
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc.reason or exc.__class__.__name__}".lower()
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc) or exc.__class__.__name__).lower()
    return str(exc) or exc.__class__.__name__
