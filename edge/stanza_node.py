"""A live ring node that handles stanzas; given an s2s side, it is an edge.

Glue between three parts that know nothing of each other: the :class:`LiveNode` (envelopes
over the ring), the sans-IO :class:`StanzaRouter` (where stanzas go), and the
:class:`S2SNode` (federation). The node's deliveries and events are fed to the router; one
pump task takes the router's outputs, sends envelopes in batches (``send_batch``) and hands
stanzas for other domains to a bounded queue that one s2s task drains; the same task runs the
router's timer (announcements, registry queries, deadlines).

Backpressure: at most ``max_in_flight`` stanza envelopes sent from this node may await
their delivery confirmation (a window, as TCP's: it keeps the ring's queues, hence its
latency, short enough that no hop is suspected dead merely for being busy); while the window
is full the pump waits, and while the router holds more than ``max_backlog`` unsent outputs
the s2s readers wait before reading again, so a fast peer is slowed down by TCP rather than
queued without bound.

Resource handling: everything runs in the nursery of :meth:`serve` (or the one given to
:meth:`attach`); :meth:`kill` stops it all at once, :meth:`shutdown` leaves the ring first.
Error handling: a failing observer or an s2s error never reaches the ring node; stanzas the
s2s side cannot send are bounced to their senders by the router.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio
from lxml import etree

from ring.events import Confirmed, Event, Undeliverable
from ring.live.logfmt import log_event
from ring.live.server import LiveNode
from ring.messages import Envelope

from .errors import LocalProtocolError
from .router import (
    EdgeAnnounced,
    PayloadRefused,
    RingSend,
    RouterConfig,
    RouterEvent,
    S2SSend,
    StanzaArrived,
    StanzaBounced,
    StanzaExited,
    StanzaRouter,
)
from .s2s_events import StanzaReceived, StanzaRejected
from .s2s_shell import S2SNode
from .services import RingServices

log = logging.getLogger("ringmesh.edge")
INFO, DEBUG, WARNING = logging.INFO, logging.DEBUG, logging.WARNING

Observer = Callable[[RouterEvent], None]


class StanzaNode:
    """Stanza handling for ``live``; with ``s2s``, federation for ``s2s.config.domains``."""

    def __init__(self, live: LiveNode, router_config: RouterConfig, *, s2s: S2SNode | None = None,
                 services: RingServices | None = None, max_backlog: int = 4096,
                 max_in_flight: int = 2048, s2s_queue: int = 10_000) -> None:
        self.live = live
        self.s2s = s2s
        self.router = StanzaRouter(live.space, live.node_id, router_config, services=services,
                                   edge_domains=s2s.config.domains if s2s is not None else frozenset())
        self.max_backlog = max_backlog
        self.max_in_flight = max_in_flight
        self._window = trio.Event()  # set when the in-flight window has room again
        self.observers: list[Observer] = []
        self.s2s_port: int | None = None
        self._wake = trio.Event()
        self._drained = trio.Event()
        self._early: set[int] | None = None  # confirmations that beat their msg id back to us
        self._delivered: list[Envelope] = []  # envelopes for us, not yet given to the router
        self._scope: trio.CancelScope | None = None
        self._s2s_in, self._s2s_out = trio.open_memory_channel[etree._Element](s2s_queue)
        self._chain(live)
        if s2s is not None:
            s2s.on_stanza = self._on_s2s_stanza
            s2s.on_unsent = self._on_unsent
            s2s.flow = self._flow

    @property
    def name(self) -> str:
        return self.live.name

    @property
    def is_edge(self) -> bool:
        return self.s2s is not None

    def _chain(self, live: LiveNode) -> None:
        prev_deliver, prev_event = live.on_deliver, live.on_event
        router = self.router

        def on_deliver(env: Envelope) -> None:
            # Handed to the router by the pump, with whatever else the same read delivered.
            self._delivered.append(env)
            self._wake.set()
            if prev_deliver is not None:
                prev_deliver(env)

        def on_event(ev: Event) -> None:
            t = type(ev)
            if t is Confirmed:
                router.on_confirmed(ev.msg_id)
                if self._early is not None:
                    self._early.add(ev.msg_id)
                if router.in_flight < self.max_in_flight // 2:
                    self._window.set()
            elif t is Undeliverable:
                router.on_undeliverable(ev.report, trio.current_time())
                self._window.set()
                self._wake.set()
            if prev_event is not None:
                prev_event(ev)

        live.on_deliver = on_deliver
        live.on_event = on_event

    # == lifecycle ===========================================================================

    async def serve(self, *, s2s_host: str = "127.0.0.1", s2s_port: int = 0,
                    task_status: trio.TaskStatus[StanzaNode] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the ring node and the stanza handling until the ring node stops."""
        async with trio.open_nursery() as nursery:
            async def ring_node(task_status: trio.TaskStatus[LiveNode]) -> None:
                await self.live.serve(task_status=task_status)
                nursery.cancel_scope.cancel()  # the ring node stopped: so does the rest

            await nursery.start(ring_node)
            await nursery.start(self._run, s2s_host, s2s_port)
            task_status.started(self)

    async def attach(self, nursery: trio.Nursery, *, s2s_host: str = "127.0.0.1", s2s_port: int = 0) -> None:
        """Start stanza handling for a ring node that ``nursery`` already serves."""
        await nursery.start(self._run, s2s_host, s2s_port)

    async def _run(self, s2s_host: str, s2s_port: int, task_status: trio.TaskStatus[None]) -> None:
        await self.live.wait_ready()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as n:
                if self.s2s is not None:
                    self.s2s_port = await n.start(self.s2s.run, s2s_host, s2s_port)
                    n.start_soon(self._s2s_sender)
                    log_event(log, INFO, "edge_listening", node=self._short(), s2s=f"{s2s_host}:{self.s2s_port}",
                              domains=",".join(sorted(self.s2s.config.domains)),
                              tls="starttls" if self.s2s.tls is not None else "off")
                self.router.start(trio.current_time())
                n.start_soon(self._pump)
                task_status.started()

    def kill(self) -> None:
        """Stop at once, as a crash would (s2s connections dropped, no goodbye to the ring)."""
        if self._scope is not None:
            self._scope.cancel()
        self.live.stop()

    async def shutdown(self, timeout: float | None = None) -> bool:
        """Stop federating, leave the ring gracefully, stop. True if custody drained."""
        self.router.stop(trio.current_time())
        if self._scope is not None:
            self._scope.cancel()
        return await self.live.shutdown(timeout)

    # == originating =========================================================================

    def submit(self, element: etree._Element) -> None:
        """Send a stanza from a ring entity (``from`` one of the ring's domains) from this node.

        Raises ValueError if the ring cannot send it."""
        self.router.submit(element, trio.current_time())
        self._wake.set()

    # == s2s side ============================================================================

    def _on_s2s_stanza(self, event: StanzaReceived | StanzaRejected) -> None:
        now = trio.current_time()
        if type(event) is StanzaReceived:
            self.router.from_s2s(event, now)
        elif event.reply is not None:
            try:
                self.router.submit(event.reply, now)
            except ValueError:
                return
        self._wake.set()

    def _on_unsent(self, elements: tuple[etree._Element, ...], reason: str) -> None:
        self.router.s2s_failed(elements, reason, trio.current_time())
        self._wake.set()

    async def _flow(self) -> None:
        while self.router.backlog >= self.max_backlog:
            self._wake.set()
            await self._drained.wait()

    async def _s2s_sender(self) -> None:
        assert self.s2s is not None
        async for element in self._s2s_out:
            try:
                await self.s2s.send(element)
            except LocalProtocolError as exc:
                self.router.s2s_failed((element,), str(exc), trio.current_time())
                self._wake.set()
            except Exception as exc:  # a bug on one stanza must not stop federation
                log_event(log, WARNING, "s2s_send_failed", node=self._short(), to=element.get("to"),
                          error=f"{type(exc).__name__}: {exc}")

    # == the router's outputs ================================================================

    async def _pump(self) -> None:
        router = self.router
        while True:  # until cancelled
            t = router.get_timer()
            with trio.move_on_at(t if t is not None else math.inf):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            t = router.get_timer()
            if t is not None and t <= now:
                router.handle_timer(now)
            await self._drain()

    async def _drain(self) -> None:
        router = self.router
        for _ in range(100_000):
            if self._delivered:
                delivered, self._delivered = self._delivered, []
                router.on_delivered_many(delivered, trio.current_time())
            outs = router.take_outputs()
            evs = router.take_events()
            if evs:
                self._dispatch(evs)
            if not outs:
                break
            groups: dict[int, list[RingSend]] = {}
            for o in outs:
                if type(o) is RingSend:
                    groups.setdefault(o.flags, []).append(o)
                elif type(o) is S2SSend:
                    try:
                        self._s2s_in.send_nowait(o.element)
                    except trio.WouldBlock:
                        router.s2s_failed((o.element,), "the edge's s2s queue is full", trio.current_time())
            for flags, group in groups.items():
                while router.in_flight >= self.max_in_flight:
                    self._window = trio.Event()
                    with trio.move_on_after(1.0):  # confirmations may be lost with a dying node
                        await self._window.wait()
                    if router.in_flight >= self.max_in_flight and not self._window.is_set():
                        break  # the ring is stuck: send anyway, its own limits apply
                self._early = set()
                try:
                    ids = await self.live.send_batch([(o.dest, o.payload) for o in group], flags=flags)
                except (RuntimeError, ValueError) as exc:  # leaving, or a payload the ring refuses
                    leaving = isinstance(exc, RuntimeError)
                    log_event(log, DEBUG if leaving else WARNING, "ring_send_failed", node=self._short(),
                              count=len(group), error=str(exc))
                    continue
                finally:
                    early, self._early = self._early, None
                now = trio.current_time()
                for mid, o in zip(ids, group):
                    if o.stanza is not None and mid not in early:
                        router.track(mid, o, now)
        self._drained.set()
        self._drained = trio.Event()

    def _dispatch(self, evs: list[RouterEvent]) -> None:
        observers, debug = self.observers, log.isEnabledFor(DEBUG)
        for ev in evs:
            t = type(ev)
            if t is StanzaArrived or t is StanzaExited:  # one per stanza: first and cheap
                if debug:
                    log_event(log, DEBUG, "stanza_arrived" if t is StanzaArrived else "stanza_exited",
                              node=self._short(), id=ev.element.get("id"), to=ev.element.get("to"),
                              hops=ev.hops, trace=">".join(self.live.space.short(x) for x in ev.trace))
            elif t is StanzaBounced:
                log_event(log, INFO, "stanza_bounced", node=self._short(), to=ev.element.get("to"),
                          condition=ev.condition, reason=ev.reason)
            elif t is PayloadRefused:
                log_event(log, WARNING, "payload_refused", node=self._short(),
                          origin=self.live.space.short(ev.origin), reason=ev.reason)
            elif t is EdgeAnnounced and ev.new:
                log_event(log, INFO, "edge_registered", node=self._short(),
                          edge=self.live.space.short(ev.entry.edge), domains=",".join(ev.entry.domains))
            for observer in observers:
                try:
                    observer(ev)
                except Exception:
                    log.exception("%s", "event=observer_failed")

    def _short(self) -> str:
        return self.live.space.short(self.live.node_id)
