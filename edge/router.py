"""Where a stanza goes: to the ring entity its ``to`` names, or out through a live edge.

Every ring node runs one :class:`StanzaRouter`, since entities live wherever their key falls:

- A stanza for a ring domain is wrapped into an envelope (:mod:`.payload`) keyed by
  ``ring.ids.jid_key(space, to)`` and routed hop by hop by the ring core. The node
  responsible for that key unwraps it and lets the ring entities (:mod:`.services`) answer;
  their replies are routed the same way.
- A stanza for any other domain must leave by s2s from an edge that federates for the
  sender's domain. An edge sends it itself; any other node picks a live edge from its
  :class:`~.registry.EdgeDirectory` (preferring the edge the conversation came in by) and
  sends it an envelope keyed by that edge's node id. If the edge has died meanwhile, the
  envelope arrives at its successor instead, which forgets that edge and redirects.
- Edges announce themselves to the node responsible for a well-known registry key; a node
  without a usable copy of the edge list asks that node, holding its outbound stanzas (a
  bounded queue, with a deadline) until the answer comes.

Sans-IO like the ring core: inputs carry ``now``; outputs (:class:`RingSend`,
:class:`S2SSend`) and events are taken by the driver; ``get_timer``/``handle_timer`` run
announcements, registry queries and deadlines. Nothing here reads a clock or a socket.

Bad input from the ring (a malformed payload, a stanza that does not parse) is counted and
reported as a :class:`PayloadRefused` event; it never raises into the driver.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from lxml import etree

from ring.ids import jid_key, name_key
from ring.keyspace import KeySpace
from ring.messages import F_TRACE, Envelope, ErrorReport

from .errors import StanzaCondition, stanza_error_reply
from .jid import JID, JIDError, parse_jid
from .payload import (
    EdgeAnnounce,
    EdgeEntry,
    EdgeList,
    EdgeQuery,
    MalformedPayload,
    OutboundPayload,
    PayloadCodec,
    Payload,
    PayloadLimits,
    StanzaPayload,
)
from .registry import EdgeDirectory, EdgeRegistry, serves
from .s2s_events import StanzaReceived
from .services import RingServices
from .stanza import stanza_kind, view
from .stanza_bytes import parse_stanza, parse_stanzas

REGISTRY_NAME = "ringmesh:edge-registry"


@dataclass(frozen=True)
class RouterConfig:
    """The ring's XMPP domains and the timing of the edge registry.

    Defaults suit a deployed ring; tests and demos shorten the intervals.
    """

    domains: frozenset[str]
    subdomains: bool = True  # chat.ring.example belongs to the ring too
    announce_interval: float = 10.0  # an edge re-announces itself this often
    edge_ttl: float = 30.0  # an announcement lives this long at the registry
    cache_ttl: float = 15.0  # a node trusts its copy of the edge list this long
    query_timeout: float = 2.0  # the registry did not answer: ask again
    query_retry: float = 0.5  # the registry knew no suitable edge: ask again after this
    pending_timeout: float = 15.0  # an outbound stanza waits this long for an edge
    max_pending: int = 10_000  # outbound stanzas waiting for an edge list
    max_inflight: int = 100_000  # sent envelopes remembered, to bounce them if undeliverable
    inflight_ttl: float = 120.0  # ... for this long: a confirmation lost with a dying node is forgotten
    max_redirects: int = 3  # times an outbound stanza may be steered to another edge
    max_key_cache: int = 65_536
    trace: bool = False  # stanza envelopes record the nodes they cross (demos, debugging)
    registry_name: str = REGISTRY_NAME
    jitter: float = 0.2
    limits: PayloadLimits = field(default_factory=PayloadLimits)

    def __post_init__(self) -> None:
        if not self.domains:
            raise ValueError("a ring serves at least one XMPP domain")
        for name in ("announce_interval", "edge_ttl", "cache_ttl", "query_timeout", "query_retry",
                     "pending_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.edge_ttl <= self.announce_interval:
            raise ValueError("edge_ttl must exceed announce_interval, or live edges expire")
        if not 0 <= self.max_redirects <= self.limits.max_redirects:
            raise ValueError(f"max_redirects must be in 0..{self.limits.max_redirects}")


# == outputs and events ========================================================================

@dataclass(slots=True)  # not frozen: one is made per stanza, and frozen __init__ costs
class RingSend:
    """Originate an envelope to ``dest``. ``stanza``: the stanza it carries, if a bounce is
    owed to its sender should the ring fail to deliver it (report the msg id with ``track``)."""

    dest: int
    payload: bytes
    flags: int = 0
    stanza: bytes | None = None


@dataclass(slots=True)
class S2SSend:
    """Send a stanza over s2s (this node is an edge for its ``from`` domain)."""

    element: etree._Element = field(compare=False)


class StanzaArrived(NamedTuple):
    """A stanza reached the node where its recipient entity lives.

    Immutable as the other events, but a NamedTuple: one is made per stanza a node delivers,
    and a frozen dataclass's ``__init__`` costs three times as much."""

    element: etree._Element
    origin: int
    hops: int
    trace: tuple[int, ...]
    edge: int | None  # the edge it entered the ring by, if it came from outside


@dataclass(frozen=True, slots=True)
class StanzaExited:
    """An edge handed a stanza to s2s; ``origin``/``hops``/``trace`` say how it crossed the ring."""

    element: etree._Element = field(compare=False)
    origin: int
    hops: int
    trace: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StanzaBounced:
    """A stanza could not be delivered; an error went back to its sender (if it deserves one)."""

    element: etree._Element = field(compare=False)
    condition: str
    reason: str


@dataclass(frozen=True, slots=True)
class PayloadRefused:
    origin: int
    reason: str


@dataclass(frozen=True, slots=True)
class EdgeAnnounced:
    """This node (the registry) heard an edge's announcement; ``new`` if it was unknown."""

    entry: EdgeEntry
    new: bool


Output = RingSend | S2SSend
RouterEvent = StanzaArrived | StanzaExited | StanzaBounced | PayloadRefused | EdgeAnnounced


@dataclass
class RouterStats:
    from_s2s: int = 0
    submitted: int = 0
    arrived: int = 0
    replies: int = 0
    exited: int = 0
    sent_to_edge: int = 0
    redirected: int = 0
    bounced: int = 0
    refused: int = 0
    queued: int = 0
    queries: int = 0
    announcements: int = 0
    registry_size: int = 0


@dataclass(slots=True)
class _Pending:
    element: etree._Element
    raw: bytes
    local: str
    remote: str
    redirects: int
    avoid: tuple[int, ...]
    deadline: float


def serialize(element: etree._Element) -> bytes:
    return etree.tostring(element, encoding="utf-8")


class StanzaRouter:
    """The stanza routing of one ring node (and, with ``edge_domains``, of an edge)."""

    def __init__(self, space: KeySpace, node_id: int, config: RouterConfig, *,
                 services: RingServices | None = None, edge_domains: frozenset[str] = frozenset(),
                 rng: random.Random | None = None) -> None:
        self.space = space
        self.node_id = space.check(node_id)
        self.config = config
        self.services = services or RingServices(config.domains)
        self.edge_domains = frozenset(edge_domains)
        for d in self.edge_domains:
            if not self._is_ring(d):
                raise ValueError(f"edge domain {d} is not one of the ring's domains")
        self.codec = PayloadCodec(space, config.limits)
        self.registry_key = name_key(space, config.registry_name)
        self.registry = EdgeRegistry(config.limits.max_edges)
        self.directory = EdgeDirectory(config.cache_ttl, dead_ttl=config.edge_ttl,
                                       max_edges=config.limits.max_edges)
        self.stats = RouterStats()
        self.s2s_up = False
        self._rng = rng or random.Random(node_id)
        self._flags = F_TRACE if config.trace else 0
        self._out: list[Output] = []
        self._events: list[RouterEvent] = []
        self._keys: dict[str, int] = {}
        self._edge_seen: dict[tuple[int, str], float] = {}  # (edge, domain) -> when we last told the directory
        self._inflight: dict[int, tuple[bytes, float]] = {}  # msg_id -> (stanza, sent at), for bounces
        self._pending: deque[_Pending] = deque()
        self._announce_at: float | None = None
        self._query_deadline: float | None = None  # a query is outstanding until then
        self._retry_at: float | None = None

    # == lifecycle ===========================================================================

    @property
    def is_edge(self) -> bool:
        return bool(self.edge_domains) and self.s2s_up

    def start(self, now: float) -> None:
        """The node is an active ring member (and, for an edge, its s2s listener is up)."""
        if self.edge_domains:
            self.s2s_up = True
            self._announce(now)

    def stop(self, now: float) -> None:
        """Stop federating (the s2s side is going away): no more announcements."""
        self.s2s_up = False
        self._announce_at = None

    # == inputs ==============================================================================

    def from_s2s(self, stanza: StanzaReceived | etree._Element, now: float) -> None:
        """A stanza an s2s stream of this edge accepted (addresses already checked).

        The hot path: a :class:`StanzaReceived` whose bytes need no declaration but
        jabber:server's goes into the ring as received, its tree never built."""
        self.stats.from_s2s += 1
        if type(stanza) is StanzaReceived:
            to, raw = stanza.to, stanza.raw
        else:
            to, raw = stanza.get("to"), None
        dest = self._keys.get(to)
        if dest is None:
            element = stanza.element if type(stanza) is StanzaReceived else stanza
            try:
                rcpt = parse_jid(to)
            except JIDError:
                self._bounce(element, StanzaCondition.JID_MALFORMED, "bad 'to'", now)
                return
            if not self._is_ring(rcpt.domain):
                self._route(element, now)
                return
            dest = self._key_of(to, rcpt)
        if raw is None or b"<!" in raw:  # CDATA sections are rewritten as text
            raw = serialize(stanza.element if type(stanza) is StanzaReceived else stanza)
        self._out.append(RingSend(dest, self.codec.encode_stanza(raw, self.node_id), self._flags, raw))

    def submit(self, element: etree._Element, now: float) -> None:
        """Originate a stanza on this node, as a ring entity (``from`` a ring domain).

        Raises ValueError for a stanza the ring cannot send (local misuse)."""
        if stanza_kind(element) is None:
            raise ValueError(f"not a stanza: {element.tag!r}")
        try:
            sender = parse_jid(element.get("from", ""))
            parse_jid(element.get("to", ""))
        except JIDError as exc:
            raise ValueError(f"stanza with an invalid address: {exc}") from None
        if not self._is_ring(sender.domain):
            raise ValueError(f"{sender.domain} is not a domain of this ring")
        self.stats.submitted += 1
        self._route(element, now)

    def on_delivered(self, env: Envelope, now: float) -> None:
        """An envelope for which this node is responsible (the core's Delivered event)."""
        try:
            payload = self.codec.decode(env.payload)
        except MalformedPayload as exc:
            self._refuse(env.origin, str(exc))
            return
        if type(payload) is StanzaPayload:
            try:
                element: etree._Element | ValueError = parse_stanza(payload.stanza)
            except ValueError as exc:
                element = exc
            self._on_stanza(env, payload, element, now)
        else:
            self._on_payload(env, payload, now)

    def on_delivered_many(self, envs: Sequence[Envelope], now: float) -> None:
        """Envelopes for which this node is responsible, in the order the core delivered
        them: as many :meth:`on_delivered` calls, but the stanzas are parsed in one go
        (see :mod:`.stanza_bytes`)."""
        if len(envs) == 1:
            self.on_delivered(envs[0], now)
            return
        decode = self.codec.decode
        payloads: list[Payload | MalformedPayload] = []
        for env in envs:
            try:
                payloads.append(decode(env.payload))
            except MalformedPayload as exc:
                payloads.append(exc)
        parsed = iter(parse_stanzas([p.stanza for p in payloads if type(p) is StanzaPayload]))
        for env, payload in zip(envs, payloads):
            if type(payload) is StanzaPayload:
                self._on_stanza(env, payload, next(parsed), now)
            else:
                self._on_payload(env, payload, now)

    def _on_payload(self, env: Envelope, payload: Payload | MalformedPayload, now: float) -> None:
        t = type(payload)
        if t is MalformedPayload:
            self._refuse(env.origin, str(payload))
        elif t is OutboundPayload:
            self._on_outbound(env, payload, now)
        elif t is EdgeAnnounce:
            entry = payload.entry
            new = self.registry.announce(entry, now)
            self.stats.registry_size = len(self.registry)
            self.directory.learn(entry.edge, entry.domains, now, min(entry.ttl, self.config.cache_ttl))
            self._events.append(EdgeAnnounced(entry, new))
            if self._pending:
                self._flush_pending(now)
        elif t is EdgeQuery:
            answer = EdgeList(self.registry.entries(now))
            self._out.append(RingSend(env.origin, self.codec.encode(answer)))
        elif t is EdgeList:
            self._on_edge_list(payload, now)

    def track(self, msg_id: int, send: RingSend, now: float) -> None:
        """The driver sent ``send`` as envelope ``msg_id`` (only sends with a stanza)."""
        if send.stanza is None:
            return
        inflight = self._inflight
        inflight[msg_id] = (send.stanza, now)
        if len(inflight) > self.config.max_inflight:
            del inflight[next(iter(inflight))]  # the oldest: it will not be bounced

    def on_confirmed(self, msg_id: int) -> None:
        self._inflight.pop(msg_id, None)

    def on_undeliverable(self, report: ErrorReport, now: float) -> None:
        entry = self._inflight.pop(report.msg_id, None)
        if entry is None:
            return
        raw = entry[0]
        try:
            element = parse_stanza(raw)
        except ValueError:
            return
        self._bounce(element, StanzaCondition.RECIPIENT_UNAVAILABLE,
                     f"the ring could not deliver it ({report.code.name.lower()})", now)

    def s2s_failed(self, elements: tuple[etree._Element, ...], reason: str, now: float) -> None:
        """Stanzas the s2s side could not send (the remote server is unreachable or refused us)."""
        for el in elements:
            self._bounce(el, StanzaCondition.REMOTE_SERVER_NOT_FOUND, reason, now)

    # == timers ==============================================================================

    def get_timer(self) -> float | None:
        times = [t for t in (self._announce_at, self._query_deadline, self._retry_at) if t is not None]
        if self._pending:
            times.append(self._pending[0].deadline)
        if self._inflight:
            times.append(next(iter(self._inflight.values()))[1] + self.config.inflight_ttl)
        return min(times, default=None)

    def handle_timer(self, now: float) -> None:
        if self._announce_at is not None and self._announce_at <= now:
            self._announce(now)
        if self._query_deadline is not None and self._query_deadline <= now:
            self._query_deadline = None
            if self._pending:
                self._query(now)
        if self._retry_at is not None and self._retry_at <= now:
            self._retry_at = None
            if self._pending and self._query_deadline is None:
                self._query(now)
        inflight, horizon = self._inflight, now - self.config.inflight_ttl
        while inflight:
            oldest = next(iter(inflight))
            if inflight[oldest][1] > horizon:
                break
            del inflight[oldest]  # its confirmation was lost with a node that died
        while self._pending and self._pending[0].deadline <= now:
            p = self._pending.popleft()
            self._bounce(p.element, StanzaCondition.REMOTE_SERVER_TIMEOUT, "no live edge for its domain", now)

    # == outputs =============================================================================

    def take_outputs(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[RouterEvent]:
        ev, self._events = self._events, []
        return ev

    @property
    def backlog(self) -> int:
        return len(self._out)

    @property
    def in_flight(self) -> int:
        """Stanza envelopes sent from here whose delivery is not yet confirmed."""
        return len(self._inflight)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # == internals ===========================================================================

    def _is_ring(self, domain: str) -> bool:
        if domain in self.config.domains:
            return True
        return self.config.subdomains and serves(self.config.domains, domain)

    def _key_of(self, to: str, rcpt: JID) -> int:
        key = jid_key(self.space, str(rcpt.bare))
        keys = self._keys
        if len(keys) >= self.config.max_key_cache:
            keys.clear()
        keys[to] = key
        return key

    def _route(self, element: etree._Element, now: float, *, edge_hint: int | None = None,
               raw: bytes | None = None) -> None:
        to = element.get("to")
        if to is None:
            self._refuse(self.node_id, "stanza without 'to' on the ring")
            return
        try:
            rcpt = parse_jid(to)
            sender = parse_jid(element.get("from", ""))
        except JIDError:
            self._bounce(element, StanzaCondition.JID_MALFORMED, "bad address", now)
            return
        if raw is None:
            raw = serialize(element)
        if self._is_ring(rcpt.domain):
            dest = self._keys.get(to)
            if dest is None:
                dest = self._key_of(to, rcpt)
            self._out.append(RingSend(dest, self.codec.encode_stanza(raw, edge_hint), self._flags))
            return
        if not self._is_ring(sender.domain):
            self._refuse(self.node_id, f"the ring does not relay {sender.domain} -> {rcpt.domain}")
            return
        self._outbound(element, raw, sender.domain, rcpt.domain, now, prefer=edge_hint)

    def _outbound(self, element: etree._Element, raw: bytes, local: str, remote: str, now: float, *,
                  prefer: int | None = None, redirects: int = 0, avoid: tuple[int, ...] = (),
                  envelope: Envelope | None = None) -> None:
        if self.s2s_up and serves(self.edge_domains, local):
            self._exit(element, envelope)
            return
        edge = self.directory.pick(local, remote, now, prefer=prefer, avoid=avoid)
        if edge is None:
            if len(self._pending) >= self.config.max_pending:
                self._bounce(element, StanzaCondition.RESOURCE_CONSTRAINT, "too many stanzas waiting for an edge", now)
                return
            self.stats.queued += 1
            self._pending.append(_Pending(element, raw, local, remote, redirects, avoid,
                                          now + self.config.pending_timeout))
            if self._query_deadline is None and self._retry_at is None:
                self._query(now)
            return
        if self.directory.stale(now) and self._query_deadline is None:
            self._query(now)  # keep the copy warm; this stanza goes now
        self.stats.sent_to_edge += 1
        self._out.append(RingSend(edge, self.codec.encode_outbound(raw, redirects, avoid), self._flags, raw))

    def _exit(self, element: etree._Element, env: Envelope | None) -> None:
        self.stats.exited += 1
        self._out.append(S2SSend(element))
        if env is None:
            self._events.append(StanzaExited(element, self.node_id, 0, (self.node_id,)))
        else:
            self._events.append(StanzaExited(element, env.origin, env.hops, env.trace))

    def _on_stanza(self, env: Envelope, payload: StanzaPayload, element: etree._Element | ValueError,
                   now: float) -> None:
        if isinstance(element, ValueError):
            self._refuse(env.origin, str(element))
            return
        try:
            sv = view(element)
        except (ValueError, JIDError) as exc:
            self._refuse(env.origin, str(exc))
            return
        rcpt = sv.recipient
        if rcpt is None or sv.sender is None:
            self._refuse(env.origin, "stanza without from/to on the ring")
            return
        if not self._is_ring(rcpt.domain):
            self._route(element, now, edge_hint=payload.edge, raw=payload.stanza)
            return
        edge = payload.edge
        if edge is not None and edge != self.node_id:
            # Evidence that the edge lives, once a second per edge and domain is plenty.
            seen = self._edge_seen
            if now - seen.get((edge, rcpt.domain), -1.0) >= 1.0:
                if len(seen) >= self.config.limits.max_edges:
                    seen.clear()
                seen[(edge, rcpt.domain)] = now
                self.directory.learn(edge, (rcpt.domain,), now)
        self.stats.arrived += 1
        self._events.append(StanzaArrived(element, env.origin, env.hops, env.trace, edge))
        for reply in self.services.handle(element, sv):
            try:
                rv = view(reply)
            except (ValueError, JIDError):
                continue
            if self.services.serves(rv):
                continue  # built-in entities never talk among themselves (no echo loops)
            self.stats.replies += 1
            self._route(reply, now, edge_hint=payload.edge)

    def _on_outbound(self, env: Envelope, payload: OutboundPayload, now: float) -> None:
        try:
            element = parse_stanza(payload.stanza)
            sender = parse_jid(element.get("from", ""))
            rcpt = parse_jid(element.get("to", ""))
        except (ValueError, JIDError) as exc:
            self._refuse(env.origin, str(exc))
            return
        if not self._is_ring(sender.domain) or self._is_ring(rcpt.domain):
            self._refuse(env.origin, f"not an outbound stanza: {sender.domain} -> {rcpt.domain}")
            return
        if self.s2s_up and serves(self.edge_domains, sender.domain):
            self._exit(element, env)
            return
        # The edge it was meant for is gone (we are its successor) or does not serve the domain.
        avoid = payload.avoid
        if env.dest != self.node_id:
            self.directory.forget(env.dest, now)
            self._edge_seen.clear()
            avoid = avoid + (env.dest,)
        elif self.node_id not in avoid:
            avoid = avoid + (self.node_id,)
        if payload.redirects >= self.config.max_redirects:
            self._bounce(element, StanzaCondition.REMOTE_SERVER_TIMEOUT, "no edge took it", now)
            return
        self.stats.redirected += 1
        self._outbound(element, payload.stanza, sender.domain, rcpt.domain, now,
                       redirects=payload.redirects + 1, avoid=avoid)

    def _on_edge_list(self, payload: EdgeList, now: float) -> None:
        self._query_deadline = None
        self.directory.replace(payload.entries, now)
        if self._pending:
            self._flush_pending(now)
            if self._pending and self._retry_at is None:
                self._retry_at = now + self.config.query_retry

    def _flush_pending(self, now: float) -> None:
        waiting, self._pending = self._pending, deque()
        for p in waiting:
            edge = self.directory.pick(p.local, p.remote, now, avoid=p.avoid)
            if edge is None:
                self._pending.append(p)
                continue
            self.stats.sent_to_edge += 1
            self._out.append(RingSend(edge, self.codec.encode_outbound(p.raw, p.redirects, p.avoid),
                                      self._flags, p.raw))

    def _query(self, now: float) -> None:
        self.stats.queries += 1
        self._query_deadline = now + self.config.query_timeout
        self._out.append(RingSend(self.registry_key, self.codec.encode(EdgeQuery())))

    def _announce(self, now: float) -> None:
        if not self.s2s_up:
            self._announce_at = None
            return
        cfg = self.config
        entry = EdgeEntry(self.node_id, tuple(sorted(self.edge_domains)), cfg.edge_ttl)
        self.directory.learn(self.node_id, entry.domains, now, cfg.edge_ttl)
        self.stats.announcements += 1
        self._out.append(RingSend(self.registry_key, self.codec.encode(EdgeAnnounce(entry))))
        spread = 1.0 + cfg.jitter * (2 * self._rng.random() - 1)
        self._announce_at = now + cfg.announce_interval * spread

    def _bounce(self, element: etree._Element, condition: StanzaCondition, reason: str, now: float) -> None:
        self.stats.bounced += 1
        self._events.append(StanzaBounced(element, condition.tag, reason))
        reply = stanza_error_reply(element, condition, reason)
        if reply is None or reply.get("to") is None:
            return
        try:
            to = parse_jid(reply.get("to", ""))
            sender = parse_jid(reply.get("from", "")) if reply.get("from") else None
        except JIDError:
            return
        if self._is_ring(to.domain):
            if self.services.serves(view(reply)):
                return  # built-in entities have no use for errors
        elif sender is None or not self._is_ring(sender.domain):
            return  # towards other domains we speak only for the ring's
        # Routed like any stanza; an error is never answered by another (RFC 6120 §8.3.1).
        self._route(reply, now)

    def _refuse(self, origin: int, reason: str) -> None:
        self.stats.refused += 1
        self._events.append(PayloadRefused(origin, reason))
