"""The sans-IO Chord node: messages and ``now`` in, addressed messages and events out.

Rule 1: nothing here knows about sockets, tasks or clocks. A driver (the trio shell of a
live node, the simulator's event heap, a test's message pump) calls

- ``handle_message(sender, message, now)`` for every message that arrives,
- ``handle_timer(now)`` once ``now`` reaches ``get_timer()``,
- ``take_outputs()`` and ``take_events()`` after each call, and sends/acts on what it gets.

Rule 2: every envelope this node accepts stays in its custody until the next hop reports it
*delivered*, not merely received (see ``custody``). The destination suppresses duplicates.
So a node on the path may die at any time: its upstream still holds the envelope and sends
it another way, and the envelope arrives exactly once.

Maintenance follows the Chord paper: join through any node, periodic stabilize/notify, fix
fingers, check predecessor, a successor list of length r to survive failures, and failure
detection by timeouts. Each periodic task draws its next period with jitter from the node's
own seeded RNG, so a simulation is reproducible and nodes do not move in lock step.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

from .config import RingConfig
from .custody import NOTHING_HELD, CustodyStore, Entry, Held, Key
from .events import (
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
from .messages import (
    Ack,
    AckKind,
    Envelope,
    ErrorCode,
    ErrorReport,
    F_ERROR,
    F_FINAL,
    F_LOOKUP,
    F_PROBE,
    F_REPLY,
    F_TRACE,
    FindSuccessor,
    Fingers,
    FoundSuccessor,
    GetFingers,
    GetNeighbours,
    Leave,
    Message,
    Neighbours,
    NodeRef,
    Notify,
    Ping,
    Pong,
)
from .routing import RoutingTable
from .wire import RELAY_TTL_AT, MalformedMessage, RelayedFrames, WireCodec, shared_codec

ACK_BATCH = 4096  # ids per Ack message (the codec accepts up to 8192)
# The stabilize question carries Chord's notify (see GetNeighbours).
_STABILIZE_QUESTION = partial(GetNeighbours, notify=True)
FINGER_WALK = 2  # a stale finger is corrected by asking back this far before a lookup
_ACK_KINDS = tuple(AckKind)  # (iterating the Enum itself runs Python code every time)
_new_envelope = tuple.__new__  # Envelope(...) without its Python-level __new__
_NEVER: Final = float("inf")  # an unset deadline
_NOTHING: tuple = ()  # what take_outputs/take_events return when there is nothing (no allocation)
_NO_STARTS = itertools.repeat(None)  # handle_messages without starts: none for any message


class NodeState(enum.Enum):
    IDLE = "idle"  # constructed, neither created a ring nor joined one
    JOINING = "joining"
    ACTIVE = "active"
    LEAVING = "leaving"  # told its neighbours; draining custody, no maintenance


class _Purpose(enum.Enum):
    JOIN = "join"
    FINGER = "finger"
    USER = "user"
    STABILIZE = "stabilize"
    CHECK_PREDECESSOR = "check-predecessor"
    LIVENESS = "liveness"  # a lookup through this peer timed out: is the peer itself alive?
    FINGER_CHECK = "finger-check"  # is this finger still the successor of its start?
    FINGER_SEED = "finger-seed"  # just joined: the successor's fingers, as hints for ours


_LOOKUPS = frozenset({_Purpose.JOIN, _Purpose.FINGER, _Purpose.USER})
# Requests answered by the peer itself: silence means the peer is gone.
_DIRECT = frozenset({_Purpose.STABILIZE, _Purpose.CHECK_PREDECESSOR, _Purpose.LIVENESS,
                     _Purpose.FINGER_CHECK, _Purpose.FINGER_SEED})


class _Rpc:
    """An open request. (A plain class, not a dataclass: compiled (see ring.compiled), a
    dataclass keeps the generated __init__ interpreted, and one is made per request.)"""

    __slots__ = ("purpose", "peer", "deadline", "key", "finger_index", "msg_id", "steps")

    def __init__(self, purpose: _Purpose, peer: NodeRef | None, deadline: float, key: int = 0,
                 finger_index: int = -1, msg_id: int = -1, steps: int = 0) -> None:
        self.purpose = purpose
        self.peer = peer
        self.deadline = deadline
        self.key = key
        self.finger_index = finger_index
        self.msg_id = msg_id  # the probe carrying a routed lookup
        self.steps = steps  # finger checks: how far this one walked back from the finger


@dataclass(slots=True)
class NodeStats:
    originated: int = 0
    forwarded: int = 0
    delivered: int = 0
    duplicates: int = 0
    loops: int = 0
    rerouted: int = 0
    retransmitted: int = 0
    ttl_expired: int = 0
    undeliverable: int = 0
    congested: int = 0
    orphan_errors: int = 0
    suspected: int = 0
    lookups_failed: int = 0
    malformed: int = 0


class RingNode:
    """One routing node of the ring. See the module docstring for how to drive it.

    ``rng`` draws the jitter of periodic tasks; a simulation may share one among all its
    nodes (a Mersenne Twister is 2.5 KB). ``codec`` defaults to one shared per key space.
    """

    __slots__ = ("config", "space", "me", "table", "codec", "state", "_stats", "_rng", "_out",
                 "_events", "_acks", "_custody", "_done", "_rpcs", "_rpc_heap", "_next_req",
                 "_next_msg", "_lookups", "_t_tick", "_tick", "_t_restab", "_t_prune", "_pred_heard",
                 "_next_finger", "_bootstrap", "_join_attempts", "shell_wakeup", "shell_deadline")

    def __init__(
        self,
        me: NodeRef,
        config: RingConfig | None = None,
        *,
        rng: random.Random | None = None,
        msg_id_base: int = 0,
        codec: WireCodec | None = None,
    ) -> None:
        self.config = config or RingConfig()
        self.space = self.config.space
        self.space.check(me.id)
        self.me = me
        self.table = RoutingTable(self.space, me, self.config.r)
        self.codec: WireCodec = codec or shared_codec(self.space)
        self.state = NodeState.IDLE
        self._stats: NodeStats | None = None
        self._rng = rng if rng is not None else random.Random(me.id)
        # Outputs, events, pending acks, finished keys and open requests are created on first
        # use and dropped when drained: most nodes of a large simulation are idle most of the
        # time, and an empty container still costs 56-64 bytes.
        self._out: list[tuple[NodeRef, Message | RelayedFrames]] | None = None
        self._events: list[Event] | None = None
        # Acks waiting to be batched: peer id -> (peer, keys per kind RECEIVED, DELIVERED,
        # FAILED). Keyed by id: an int hashes in C, a NodeRef dataclass in Python.
        self._acks: dict[int, tuple[NodeRef, list[Key], list[Key], list[Key]]] | None = None
        self._custody = NOTHING_HELD  # (its own store comes with the first envelope held)
        # Envelopes delivered here -> when to forget them: duplicates are answered, not
        # delivered twice.
        self._done: dict[Key, float] | None = None
        self._rpcs: dict[int, _Rpc] | None = None
        self._rpc_heap: list[tuple[float, int]] | None = None
        self._next_req = 1
        self._next_msg = msg_id_base & ((1 << 64) - 1)
        self._lookups: dict[int, int] | None = None  # msg_id of a lookup probe -> its req_id
        # One maintenance tick drives stabilize, fix fingers and check predecessor (see
        # RingConfig.maintenance_plan); _t_restab asks for an extra stabilize at once.
        # Deadlines are plain floats, _NEVER when unset: compiled (see ring.compiled), a float
        # attribute lives inside the object, where get_timer (run after every event of a
        # simulation) finds it without visiting a float object elsewhere in memory.
        self._t_tick = _NEVER
        self._tick = 0
        self._t_restab = _NEVER
        self._t_prune = _NEVER
        self._pred_heard = -1.0  # when the predecessor last spoke to us (it proves it is alive)
        self._next_finger = 0
        self._bootstrap: NodeRef | None = None
        self._join_attempts = 0
        # Two numbers that belong to the shell driving this core, which the core never
        # reads: when the shell's wake-up for it is due, and what get_timer() said when the
        # shell last drove it (inf: none). Kept here because the shell reads them whenever
        # it touches the core: a simulator of 10^5 cores finds them in memory it fetches
        # anyway, unboxed, instead of in a table of its own.
        self.shell_wakeup = _NEVER
        self.shell_deadline = _NEVER

    @property
    def stats(self) -> NodeStats:
        """Counters, created when first counted (an idle simulated node needs none)."""
        st = self._stats
        if st is None:
            st = self._stats = NodeStats()
        return st

    # == driver interface ====================================================================

    def take_outputs(self) -> Sequence[tuple[NodeRef, Message | RelayedFrames]]:
        """Messages to send, each addressed to a node. Acks are batched per peer.
        Envelopes relayed by ``handle_messages`` (given their frames) are frames already:
        one RelayedFrames per run of them to one hop."""
        out = self._out
        if out is None:
            if not self._acks:
                return _NOTHING
            out = []
        self._out = None
        if self._acks:
            for peer, *per_kind in self._acks.values():
                for kind, keys in zip(_ACK_KINDS, per_kind):
                    if len(keys) <= ACK_BATCH:
                        if keys:
                            out.append((peer, Ack(kind, tuple(keys))))
                        continue
                    for i in range(0, len(keys), ACK_BATCH):
                        out.append((peer, Ack(kind, tuple(keys[i : i + ACK_BATCH]))))
            self._acks = None
        return out

    def take_events(self) -> Sequence[Event]:
        ev = self._events
        self._events = None
        return ev if ev is not None else _NOTHING

    def _emit(self, dest: NodeRef, msg: Message) -> None:
        out = self._out
        if out is None:
            self._out = [(dest, msg)]
        else:
            out.append((dest, msg))

    def _event(self, event: Event) -> None:
        evs = self._events
        if evs is None:
            self._events = [event]
        else:
            evs.append(event)

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next be called (None: nothing is pending)."""
        best = self._t_tick
        t = self._t_restab
        if t < best:
            best = t
        if self._done is not None:  # (pruning is only worth waking for with something to forget)
            t = self._t_prune
            if t < best:
                best = t
        custody = self._custody
        if custody.count:
            c = custody.next_deadline()
            if c is not None and c < best:
                best = c
        heap = self._rpc_heap
        if heap:
            rpcs = self._rpcs or {}
            # Answered requests leave their deadline in the heap; drop those at the head so
            # the driver is not woken for nothing (44% of wake-ups in a 10**4-node ring).
            while heap:
                t, req = heap[0]
                rpc = rpcs.get(req)
                if rpc is not None and rpc.deadline == t:
                    break
                heapq.heappop(heap)
            if heap and heap[0][0] < best:
                best = heap[0][0]
        return None if best == _NEVER else best

    def handle_timer(self, now: float) -> None:
        self._expire_rpcs(now)
        self._expire_custody(now)
        stabilized = False
        if now >= self._t_restab:
            self._t_restab = _NEVER
            self._stabilize(now)
            stabilized = True
        if now >= self._t_tick:
            self._maintain(now, stabilized)
        if now >= self._t_prune:
            self._t_prune = now + self.config.seen_ttl / 4
            self._prune_done(now)

    def handle_message(self, sender: NodeRef, msg: Message, now: float) -> None:
        t = type(msg)
        if t is Envelope:
            self._on_envelope(sender, msg, now)  # type: ignore[arg-type]
        elif t is Ack:
            self._on_ack(sender, msg, now)  # type: ignore[arg-type]
        else:
            pred = self.table.predecessor
            # (identity first: a simulation's refs are shared objects, and reading an id
            # touches two more objects)
            if pred is not None and (sender is pred or sender.id == pred.id):
                self._pred_heard = now
            # A chain of identity tests, most frequent first, rather than a dict of the
            # class's functions: as fast interpreted, and when the module is compiled
            # (see ring.compiled) each branch is a direct call.
            if t is GetNeighbours:
                self._on_get_neighbours(sender, msg, now)  # type: ignore[arg-type]
            elif t is Neighbours:
                self._on_neighbours(sender, msg, now)  # type: ignore[arg-type]
            elif t is Ping:
                self._on_ping(sender, msg, now)  # type: ignore[arg-type]
            elif t is Pong:
                self._on_pong(sender, msg, now)  # type: ignore[arg-type]
            elif t is FindSuccessor:
                self._on_find_successor(sender, msg, now)  # type: ignore[arg-type]
            elif t is FoundSuccessor:
                self._on_found_successor(sender, msg, now)  # type: ignore[arg-type]
            elif t is GetFingers:
                self._on_get_fingers(sender, msg, now)  # type: ignore[arg-type]
            elif t is Fingers:
                self._on_fingers(sender, msg, now)  # type: ignore[arg-type]
            elif t is Notify:
                self._on_notify(sender, msg, now)  # type: ignore[arg-type]
            elif t is Leave:
                self._on_leave(sender, msg, now)  # type: ignore[arg-type]
            # Hello: link setup is the shell's business

    def handle_messages(self, sender: NodeRef, msgs: Sequence[Message], now: float,
                        starts: Sequence[int | None] | None = None, data: bytes = b"") -> None:
        """``handle_message`` for each of ``msgs``, all from ``sender``, in order.

        The same outcome, for less: a live link hands over all that one read brought. The
        usual envelope (new here, neither traced nor final, to be forwarded) takes a short
        path, with the routing state and the sender's acks looked up once; anything else
        goes the general way, after which the routing state is looked up again (the
        general way changed it).

        ``starts``, one per message, and ``data`` (``MessageDecoder.messages`` and its
        ``last_read``): an envelope that takes the short path and has a start goes out as
        its relayed frame (exactly the encoding of the forwarded envelope; see
        ``WireCodec.relay``) instead of as an Envelope, so the driver sends it as it is.
        The frames are relayed in place, in one copy of ``data`` per call (three bytes
        changed per frame, no bytes made per frame), and consecutive ones to one hop make
        one output, a RelayedFrames holding views of that copy. Custody holds the
        Envelope: a retransmission or a re-route is encoded afresh.
        """
        t = self.table
        custody = self._own_custody()
        # Custody's queues, taken when the first envelope is held, and its count, kept here
        # (custody.add inlined) and handed back before anything else runs. The envelopes
        # given to one hop are held as pairs with one shared Held (see custody).
        sent: dict[Key, Entry] | None = None
        acked: dict[Key, Entry] = {}
        count = custody.count
        shared_hop: NodeRef | None = None
        shared: Held | None = None
        upstreams = (sender,)
        next_hop = t.next_hop
        me = self.me.id
        max_custody = self.config.max_custody
        deadline = now + self.config.ack_timeout
        slow = F_TRACE | F_FINAL
        ttl_at, over = RELAY_TTL_AT, self.codec.relay_over
        # The outputs, appended to directly (the general way's _emit appends to the same list)
        out = self._out
        if out is None:
            out = self._out = []
        received: list[Key] | None = None
        # Relayed frames to one hop, one after the other, go out as one output (a run).
        # ``buf``: the copy of ``data`` they are relayed in (made for the first); a run is
        # views of it, one per stretch of frames back to back in it. The open stretch,
        # [piece_start, piece_end), joins the run when it ends.
        buf: bytearray | None = None
        view = memoryview(b"")
        run_hop: NodeRef | None = None
        run = RelayedFrames()  # the current run (to run_hop) and its frame count
        run_n = piece_start = piece_end = 0
        last_origin, high = None, 0  # the last envelope's origin, and its part of the key
        forwarded = 0
        pred, succs, state = t.predecessor, t.successors, self.state
        fast, lo, lo_wraps, hi, hi_wraps, final_hop, done = self._fast_path_state()
        for msg, start in zip(msgs, _NO_STARTS if starts is None else starts):
            if type(msg) is Envelope and fast:
                msg_id, origin, dest, ttl, hops, flags, payload, trace = msg  # type: ignore[misc]
                if origin is not last_origin:  # (a read's envelopes share their origins' ints)
                    last_origin, high = origin, origin << 64
                key = high | msg_id
                # This node is responsible for dest in (pred, me], the successor for dest in
                # (me, succ] (next_hop's first test, inlined): told by comparing ids, without
                # distances (big numbers made afresh), the wrap past 0 handled apart.
                if (flags & slow or ttl <= 0 or hops >= 255
                        or ((lo < dest or dest <= me) if lo_wraps else (lo < dest <= me))
                        or count >= max_custody or (done is not None and key in done)):
                    route = None
                elif (me < dest or dest <= hi) if hi_wraps else (me < dest <= hi):
                    route = final_hop
                else:
                    route = next_hop(dest)
                if route is not None:
                    hop, final = route
                    if sent is None:
                        sent, acked = custody.queues()
                    # A key custody holds already is a duplicate: it goes the general way.
                    if key not in sent and key not in acked:
                        if hop is not shared_hop:
                            shared = Held(msg, upstreams, hop, deadline)  # type: ignore[arg-type]
                            shared_hop = hop
                        sent[key] = (msg, shared)  # type: ignore[assignment]
                        count += 1
                        if final:
                            flags |= F_FINAL
                        if start is not None:  # WireCodec.relay, in place
                            if buf is None:
                                buf = bytearray(data)
                                view = memoryview(buf)
                            o = start + ttl_at
                            buf[o] = ttl - 1
                            buf[o + 1] = hops + 1
                            if final:
                                buf[o + 2] = flags
                            if hop is not run_hop or start != piece_end:
                                if run_hop is not None:  # the stretch so far is done
                                    run.append(view[piece_start:piece_end])
                                    if hop is not run_hop:
                                        run.frames = run_n
                                if hop is not run_hop:
                                    run = RelayedFrames()
                                    out.append((hop, run))
                                    run_hop = hop
                                    run_n = 0
                                piece_start = start
                            n = len(payload)
                            piece_end = start + over + n + (n > 255)
                            run_n += 1
                        else:
                            if run_hop is not None:
                                run.append(view[piece_start:piece_end])
                                run.frames = run_n
                                run_hop = None
                            out.append((hop, _new_envelope(Envelope, (
                                msg_id, origin, dest, ttl - 1, hops + 1, flags, payload, trace))))
                        if received is None:
                            received = self._ack_list(AckKind.RECEIVED, sender)
                        received.append(key)
                        forwarded += 1
                        continue
            if run_hop is not None:  # (what it sends comes after the run, in order)
                run.append(view[piece_start:piece_end])
                run.frames = run_n
                run_hop = None
            if sent is not None:
                custody.count = count
                custody.tidy()
                sent = None
            self.handle_message(sender, msg, now)
            count = custody.count
            if (t.predecessor is not pred or t.successors is not succs or self.state is not state
                    or self._done is not done):
                pred, succs, state = t.predecessor, t.successors, self.state
                fast, lo, lo_wraps, hi, hi_wraps, final_hop, done = self._fast_path_state()
        if run_hop is not None:
            run.append(view[piece_start:piece_end])
            run.frames = run_n
        if sent is not None:
            custody.count = count
            custody.tidy()
        if forwarded:
            self.stats.forwarded += forwarded
        if not out:
            self._out = None

    def _fast_path_state(self) -> tuple[bool, int, bool, int, bool, tuple[NodeRef, bool] | None,
                                        dict[Key, float] | None]:
        """Whether envelopes may take handle_messages' short path, and what it needs: the
        predecessor's id (keys after it up to this node are ours) and whether that span
        wraps past 0, the successor's id (keys after this node up to it go there, the final
        hop) and whether that one wraps, the route to the successor, and the delivered keys.
        Only an active node that knows its predecessor and successor."""
        t = self.table
        pred = t.predecessor
        me = self.me.id
        if (self.state is not NodeState.ACTIVE or pred is None or not t.successors
                or pred.id == me):
            return False, 0, False, 0, False, None, self._done
        succ = t.successors[0]
        return (True, pred.id, pred.id > me, succ.id, succ.id < me, (succ, True), self._done)

    def peer_unreachable(self, peer: NodeRef, now: float, reason: str = "unreachable") -> None:
        """The driver could not reach ``peer`` (connection refused or reset)."""
        self._suspect(peer, reason, now)

    # == lifecycle ===========================================================================

    def create(self, now: float) -> None:
        """Start a new ring consisting of this node alone."""
        self._require(NodeState.IDLE, "create")
        self.state = NodeState.ACTIVE
        self._start_maintenance(now)

    def join(self, bootstrap: NodeRef, now: float) -> None:
        """Join the ring that ``bootstrap`` belongs to."""
        self._require(NodeState.IDLE, "join")
        if bootstrap.id == self.me.id:
            raise ValueError("a node cannot join through itself")
        self.state = NodeState.JOINING
        self._bootstrap = bootstrap
        self._join_attempts = 1
        self._send_lookup(self.me.id, _Purpose.JOIN, now, via=bootstrap)

    def leave(self, now: float) -> None:
        """Graceful departure: hand both neighbours over to each other, keep draining custody."""
        if self.state is not NodeState.ACTIVE:
            return
        t = self.table
        note = Leave(t.predecessor, t.successors)
        targets = {n.id: n for n in (t.successor, t.predecessor) if n is not None}
        for n in targets.values():
            self._emit(n, note)
        self.state = NodeState.LEAVING
        self._t_tick = self._t_restab = _NEVER

    def _own_custody(self) -> CustodyStore:
        """This node's own custody store, made when it first holds something (until then
        it reads the shared, never-written NOTHING_HELD)."""
        custody = self._custody
        if custody is NOTHING_HELD:
            custody = self._custody = CustodyStore()
        return custody

    @property
    def custody_count(self) -> int:
        return len(self._custody)

    @property
    def drained(self) -> bool:
        """A leaving node may stop once nothing is held for others."""
        return self.state is NodeState.LEAVING and len(self._custody) == 0

    # == sending =============================================================================

    def send(self, dest: int, payload: bytes, now: float, *, flags: int = 0,
             ttl: int | None = None) -> int:
        """Originate an envelope towards key ``dest``; returns its msg_id."""
        if self.state is not NodeState.ACTIVE:
            raise RuntimeError(f"cannot send while {self.state.value}")
        if len(payload) > self.codec.max_payload:
            raise ValueError(f"payload of {len(payload)} bytes over {self.codec.max_payload}")
        self.space.check(dest)
        msg_id = self._new_msg_id()
        trace = (self.me.id,) if flags & F_TRACE else ()
        env = Envelope(msg_id, self.me.id, dest, ttl or self.config.default_ttl, 0,
                       flags & ~F_FINAL, payload, trace)
        self.stats.originated += 1
        self._accept(env, None, now)
        return msg_id

    def probe(self, dest: int, now: float) -> int:
        """Route a probe to ``dest``; a ProbeResult event reports the path it took."""
        return self.send(dest, b"", now, flags=F_PROBE | F_TRACE)

    def lookup(self, key: int, now: float) -> int:
        """Find the node responsible for ``key``; a LookupDone/LookupFailed event answers."""
        if self.state is not NodeState.ACTIVE:
            raise RuntimeError(f"cannot look up while {self.state.value}")
        return self._send_lookup(self.space.check(key), _Purpose.USER, now)

    # == envelopes ===========================================================================

    def _on_envelope(self, sender: NodeRef, env: Envelope, now: float) -> None:
        state = self.state
        if state is NodeState.IDLE or state is NodeState.JOINING:
            # Not part of the ring yet: stay silent, so the sender suspects us and re-routes.
            return
        key = (env.origin << 64) | env.msg_id  # envelope_key, inlined
        custody = self._custody
        held = custody.get(key) if custody.count else None
        if held is not None:
            # Already ours: a retransmission, or it came round a loop. Answer once we are done.
            if env.hops > held.envelope.hops:
                self.stats.loops += 1
            else:
                self.stats.duplicates += 1
            if sender not in held.upstreams:
                held.upstreams += (sender,)
            self._ack(AckKind.RECEIVED, sender, key)
            return
        if self._done is not None and key in self._done:
            self.stats.duplicates += 1  # delivered here already
            self._ack(AckKind.DELIVERED, sender, key)
            return
        if env.flags & F_TRACE and len(env.trace) < self.codec.max_trace:
            env = env._replace(trace=env.trace + (self.me.id,))
        if self._accept(env, sender, now):
            # Held for the sender now: tell it we have the envelope. When the outcome was
            # known at once (delivered here, or failed), its DELIVERED or FAILED ack is
            # already queued and says more: no RECEIVED ack for the destination to send.
            self._ack(AckKind.RECEIVED, sender, key)

    def _accept(self, env: Envelope, upstream: NodeRef | None, now: float) -> bool:
        """Take an envelope received or originated here; True if it is now in custody
        (forwarded), False if its outcome is already known (delivered here, or failed)."""
        key = (env.origin << 64) | env.msg_id  # envelope_key, inlined
        held = Held(env, (upstream,) if upstream is not None else ())
        if self._responsible(env):
            self._deliver(key, held, now)
            return False
        if (upstream is not None and not env.flags & (F_ERROR | F_LOOKUP)
                and self._custody.count >= self.config.max_custody):
            # (error reports and lookups are exempt: refusing the ring's own repair traffic
            # under load would only make routing worse)
            self.stats.congested += 1
            self._fail(key, held, ErrorCode.CONGESTED, now)
            return False
        return self._forward(key, held, now, new=True)

    def _responsible(self, env: Envelope) -> bool:
        # RoutingTable.is_responsible, inlined: it is asked for every envelope.
        t = self.table
        dest, me = env.dest, self.me.id
        if not t.successors or dest == me:
            return True
        pred = t.predecessor
        if pred is None:
            return bool(env.flags & F_FINAL)
        m = self.space.modulus
        span = (me - pred.id) % m
        return span == 0 or 0 < (dest - pred.id) % m <= span

    def _dispatch(self, key: Key, held: Held, now: float) -> None:
        """Deliver here or forward: asked afresh on every attempt, as the ring may have moved."""
        if self._responsible(held.envelope):
            self._custody.remove(key)
            self._deliver(key, held, now)
        else:
            self._forward(key, held, now)

    def _forward(self, key: Key, held: Held, now: float, *, new: bool = False) -> bool:
        """Send towards the next hop and hold in custody (True), or fail or deliver here."""
        env = held.envelope
        if env.ttl <= 0:
            self.stats.ttl_expired += 1
            self._fail(key, held, ErrorCode.TTL_EXPIRED, now)
            return False
        route = None
        pred = self.table.predecessor
        if (env.flags & F_FINAL and held.upstreams and pred is not None
                and pred.id not in held.excluded
                and self.space.in_half_open(env.dest, held.upstreams[0].id, pred.id)):
            # The sender thought we were responsible, but a node has joined between it and
            # us since: the key belongs to our new predecessor.
            route = (pred, True)
        if route is None:
            route = self.table.next_hop(env.dest, held.excluded)
        if route is None:
            if self.table.alone:
                self._custody.remove(key)
                self._deliver(key, held, now)
            else:
                self._fail(key, held, ErrorCode.NO_ROUTE, now)
            return False
        hop, final = route
        flags = (env.flags | F_FINAL) if final else (env.flags & ~F_FINAL)
        # (hops saturate at 255, the most a frame can say: counting on would not encode)
        fwd = Envelope(env.msg_id, env.origin, env.dest, env.ttl - 1, min(env.hops + 1, 255),
                       flags, env.payload, env.trace)
        custody = self._own_custody()
        if new:
            custody.put_new(key, held, hop, now + self.config.ack_timeout)
        else:
            custody.put_sent(key, held, hop, now + self.config.ack_timeout)
        self._emit(hop, fwd)
        st = self._stats
        if st is None:
            st = self.stats
        st.forwarded += 1
        return True

    def _deliver(self, key: Key, held: Held, now: float) -> None:
        env = held.envelope
        # Only the destination remembers: a duplicate arriving anywhere else is forwarded
        # again and answered here. (Remembering at every hop cost a dict entry per hop.)
        done = self._done
        if done is None:
            done = self._done = {}
        done[key] = now + self.config.seen_ttl
        cap = self.config.seen_capacity
        if len(done) > cap:
            self._drop_oldest_done(max(1, cap // 16))
        self._finish(key, held, now, delivered=True)
        self.stats.delivered += 1
        if env.flags & F_ERROR:
            if env.dest == self.me.id:
                try:
                    report = self.codec.decode_error_report(env.payload)
                except MalformedMessage:
                    self.stats.malformed += 1
                else:
                    self._undeliverable(report, now)
            else:
                self.stats.orphan_errors += 1  # its origin is gone; nobody to tell
            return
        if env.flags & F_PROBE:
            if env.flags & F_REPLY:
                if env.dest == self.me.id:
                    self._on_probe_reply(env)
            elif env.flags & F_LOOKUP:
                self._answer_lookup(env, now)
            else:
                self._answer_probe(env, now)
            return
        self._event(Delivered(env))
        if env.origin == self.me.id:  # (it may have come round a loop: upstreams say nothing)
            self._event(Confirmed(env.msg_id, env.dest))

    def _on_ack(self, sender: NodeRef, ack: Ack, now: float) -> None:
        custody = self._custody
        kind = ack.kind
        if kind is AckKind.RECEIVED:
            custody.mark_all_received(ack.ids, sender.id, now + self.config.custody_timeout)
            return
        # DELIVERED or FAILED: the outcome is known, pass it on upstream (_finish, inlined).
        delivered = kind is AckKind.DELIVERED
        me = self.me.id
        # The usual ack: envelopes from one upstream, none originated here (no events).
        run = custody.pop_run(ack.ids, sender.id, me if delivered else None)
        if run is not None:
            ups, done = run
            for u in ups:
                self._ack_list(kind, u).extend(done)
            return
        last: tuple[NodeRef, ...] | None = None
        keys: list[Key] = []
        for key, held in custody.pop_all_done(ack.ids, sender.id):
            ups = held.upstreams
            if ups is last:  # the envelopes of one read share one tuple of upstreams
                keys.append(key)
            elif len(ups) == 1:
                keys = self._ack_list(kind, ups[0])
                keys.append(key)
                last = ups
            else:
                for u in ups:
                    self._ack_list(kind, u).append(key)
                last = None
            env = held.envelope
            if delivered and env.origin == me and not env.flags & (F_ERROR | F_PROBE):
                self._event(Confirmed(env.msg_id, env.dest))

    def _expire_custody(self, now: float) -> None:
        if not len(self._custody):
            return
        unconfirmed, undelivered = self._custody.expired(now)
        for key in unconfirmed:
            held = self._custody.get(key)
            if held is not None and held.hop is not None and held.deadline <= now:
                # Silence from the next hop: suspect it; that re-routes all it holds of ours
                # (so later keys of this list may already be on their way elsewhere).
                self._suspect(held.hop, "no ack", now)
        for key in undelivered:
            held = self._custody.get(key)
            if held is not None and held.deadline <= now:
                self.stats.retransmitted += 1
                self._retry(key, held, now, exclude_hop=False)

    def _retry(self, key: Key, held: Held, now: float, *, exclude_hop: bool) -> None:
        """Route again: around a silent next hop (``exclude_hop``), or to send again an
        envelope whose delivery was never confirmed. Each has its own limit (see RingConfig)."""
        if exclude_hop and held.hop is not None:
            held.excluded = held.excluded | {held.hop.id}
            over = len(held.excluded) > self.config.max_reroutes
        else:
            held.attempts += 1
            over = held.attempts > self.config.max_retries
        if over:
            self._fail(key, held, ErrorCode.RETRIES_EXHAUSTED, now)
            return
        self._dispatch(key, held, now)

    def _fail(self, key: Key, held: Held, code: ErrorCode, now: float) -> None:
        self._custody.remove(key)
        self._finish(key, held, now, delivered=False)
        self.stats.undeliverable += 1
        self._report(held.envelope, code, now)

    def _finish(self, key: Key, held: Held, now: float, *, delivered: bool) -> None:
        """The outcome is known: tell everyone who handed us the envelope."""
        kind = AckKind.DELIVERED if delivered else AckKind.FAILED
        for u in held.upstreams:
            self._ack(kind, u, key)

    def _report(self, env: Envelope, code: ErrorCode, now: float) -> None:
        """Tell an envelope's origin it could not be delivered (never about an error)."""
        if env.flags & F_ERROR:
            return
        report = ErrorReport(code, env.msg_id, env.dest, self.me.id)
        if env.origin == self.me.id:
            self._undeliverable(report, now)
            return
        if self.state is not NodeState.ACTIVE and self.state is not NodeState.LEAVING:
            return
        err = Envelope(self._new_msg_id(), self.me.id, env.origin, self.config.default_ttl, 0,
                       F_ERROR, self.codec.encode_error_report(report))
        self._accept(err, None, now)

    def _answer_probe(self, env: Envelope, now: float) -> None:
        payload = self.codec.encode_probe_reply(env.msg_id, env.dest, env.hops, env.trace)
        reply = Envelope(self._new_msg_id(), self.me.id, env.origin, self.config.default_ttl, 0,
                         F_PROBE | F_REPLY, payload)
        if env.origin == self.me.id:
            self._on_probe_reply(reply)
            return
        self._accept(reply, None, now)

    def _on_probe_reply(self, env: Envelope) -> None:
        try:
            msg_id, dest, hops, trace = self.codec.decode_probe_reply(env.payload)
        except MalformedMessage:
            self.stats.malformed += 1
            return
        self._event(ProbeResult(msg_id, dest, trace, hops))

    def _ack(self, kind: AckKind, peer: NodeRef, key: Key) -> None:
        self._ack_list(kind, peer).append(key)

    def _ack_list(self, kind: AckKind, peer: NodeRef) -> list[Key]:
        """The keys waiting to be acked to ``peer`` with ``kind`` (append to it)."""
        acks = self._acks
        if acks is None:
            acks = self._acks = {}
        entry = acks.get(peer.id)
        if entry is None:
            entry = acks[peer.id] = (peer, [], [], [])
        return entry[1 + kind]  # type: ignore[return-value]

    def _prune_done(self, now: float) -> None:
        done = self._done
        if done is None:
            return
        stale = 0
        for t in done.values():  # deadlines grow in insertion order
            if t > now:
                break
            stale += 1
        if stale:
            self._drop_oldest_done(stale)
        if not done:
            self._done = None

    def _drop_oldest_done(self, n: int) -> None:
        """Forget the n oldest delivered keys, found in one scan. (Taking the first key
        again after each deletion rescans every slot deleted before it: once the default
        seen_capacity of 200,000 was reached, a destination spent 42 us per delivery instead
        of 2.2, so _deliver now forgets the oldest sixteenth at once.)"""
        done = self._done
        for k in list(itertools.islice(done, n)):  # type: ignore[arg-type]
            del done[k]  # type: ignore[index,union-attr]

    def _new_msg_id(self) -> int:
        self._next_msg = (self._next_msg + 1) & ((1 << 64) - 1)
        return self._next_msg

    # == failure handling ====================================================================

    def _suspect(self, peer: NodeRef, reason: str, now: float) -> None:
        if peer.id == self.me.id:
            return
        table = self.table
        held_keys = self._custody.held_by(peer.id)
        if not table.knows(peer.id) and not held_keys:
            return
        self.stats.suspected += 1
        old_succ, old_pred = table.successor, table.predecessor
        table.remove(peer.id)
        if table.alone:
            fallback = table.closest_known_after_me()
            if fallback is not None:
                table.set_successors([fallback])
        self._event(PeerSuspected(peer, reason))
        self._note_neighbour_changes(old_succ, old_pred)
        for key in held_keys:
            held = self._custody.get(key)
            if held is not None:
                self.stats.rerouted += 1
                self._retry(key, held, now, exclude_hop=True)

    def _note_neighbour_changes(self, old_succ: NodeRef | None, old_pred: NodeRef | None) -> None:
        t = self.table
        succ, pred = t.successor, t.predecessor
        if succ is not old_succ and succ != old_succ:  # identity first: dataclass == is slow
            self._event(SuccessorChanged(old_succ, succ))
        if pred is not old_pred and pred != old_pred:
            self._event(PredecessorChanged(old_pred, pred))

    # == maintenance =========================================================================

    def _start_maintenance(self, now: float) -> None:
        self._t_tick = now
        self._tick = 0
        self._t_prune = now + self.config.seen_ttl / 4

    def _maintain(self, now: float, stabilized: bool) -> None:
        """One maintenance tick: each periodic task runs on every k-th tick.

        One timer instead of three: in a simulation of 10^5 nodes a timer wake-up is an
        event, and so is the wake-up at each request's time limit, which requests sent on
        the same tick share. The tasks keep their configured rates (see maintenance_plan).
        """
        base, every_stab, every_finger, every_pred = self.config.maintenance_plan
        n = self._tick
        self._tick = (n + 1) % (every_stab * every_finger * every_pred)
        self._t_tick = now + self._period(base)
        if n % every_stab == 0 and not stabilized:
            self._stabilize(now)
        if n % every_finger == 0:
            self._fix_finger(now)
        if n % every_pred == 0:
            self._check_predecessor(now)

    def _restabilize(self, now: float) -> None:
        """Stabilize again at once (the successor changed or stopped answering)."""
        if self._t_tick != _NEVER:
            self._t_restab = now

    def _period(self, interval: float) -> float:
        j = self.config.jitter
        if not j:
            return interval
        return interval * (1.0 - j + 2.0 * j * self._rng.random())

    def _stabilize(self, now: float) -> None:
        t = self.table
        succ = t.successor
        if succ is None:
            if t.predecessor is not None:
                # Alone until now: whoever notified us is our successor too (a two-node ring).
                old = t.successor
                t.set_successors([t.predecessor])
                self._note_neighbour_changes(old, t.predecessor)
                self._emit(t.predecessor, Notify())
            return
        # The question carries the notify: one message fewer per round, and the answer
        # already reflects it (Chord's stabilize ends with notify(successor) anyway).
        self._rpc(succ, _STABILIZE_QUESTION, _Purpose.STABILIZE, now)

    def _on_neighbours(self, sender: NodeRef, msg: Neighbours, now: float) -> None:
        rpc = self._pop_rpc(msg.req_id, sender)
        if rpc is not None and rpc.purpose is _Purpose.FINGER_CHECK:
            self._on_finger_check(sender, msg.predecessor, rpc.finger_index, rpc.steps, now)
            return
        if rpc is None or rpc.purpose is not _Purpose.STABILIZE:
            return
        t = self.table
        old_succ, old_pred = t.successor, t.predecessor
        if old_succ is None or (old_succ is not sender and old_succ.id != sender.id):
            return  # our successor changed while the question was in flight
        x = msg.predecessor
        me = self.me
        adopted = False
        if (x is not None and x is not me and x.id != me.id
                and self.space.in_open(x.id, me.id, sender.id)):
            t.set_successors((x, sender, *msg.successors))
            adopted = True
        else:
            t.set_successors_from(sender, msg.successors)
        self._note_neighbour_changes(old_succ, old_pred)
        succ = t.successor
        if succ is not None and succ is not sender and succ.id != sender.id and not adopted:
            self._emit(succ, Notify())  # the sender was notified by the question itself
        if adopted:
            self._restabilize(now)  # fetch the new successor's list (and notify it) at once

    def _on_get_neighbours(self, sender: NodeRef, msg: GetNeighbours, now: float) -> None:
        if msg.notify:
            self._notified(sender)
        t = self.table
        # The whole list, shared as it is (the asker keeps what fits its own r).
        self._emit(sender, Neighbours(msg.req_id, t.predecessor, t.successors))

    def _on_notify(self, sender: NodeRef, msg: Notify, now: float) -> None:
        self._notified(sender)

    def _notified(self, sender: NodeRef) -> None:
        """``sender`` thinks it is our predecessor (Chord's notify)."""
        if self.state is not NodeState.ACTIVE:
            return
        t = self.table
        old_succ, old_pred = t.successor, t.predecessor
        if old_pred is sender and old_succ is not None:
            return  # the usual round: our predecessor asks again, and nothing changes
        if old_pred is None or self.space.in_open(sender.id, old_pred.id, self.me.id):
            t.set_predecessor(sender)
        if t.alone:
            t.set_successors([sender])
        self._note_neighbour_changes(old_succ, old_pred)

    def _on_leave(self, sender: NodeRef, msg: Leave, now: float) -> None:
        t = self.table
        old_succ, old_pred = t.successor, t.predecessor
        was_pred = old_pred is not None and old_pred.id == sender.id
        was_succ = old_succ is not None and old_succ.id == sender.id
        rest = [s for s in t.successors if s.id != sender.id]
        t.remove(sender.id)
        if was_pred and msg.predecessor is not None:
            t.set_predecessor(msg.predecessor)
        if was_succ:
            t.set_successors([s for s in msg.successors if s.id != sender.id] + rest)
            self._restabilize(now)
        self._note_neighbour_changes(old_succ, old_pred)

    def _check_predecessor(self, now: float) -> None:
        pred = self.table.predecessor
        if pred is None:
            return
        if now - self._pred_heard < self.config.check_predecessor_interval:
            return  # it stabilized with us lately: alive, no need to ask
        self._rpc(pred, Ping, _Purpose.CHECK_PREDECESSOR, now)

    def _on_ping(self, sender: NodeRef, msg: Ping, now: float) -> None:
        self._emit(sender, Pong(msg.req_id))

    def _on_pong(self, sender: NodeRef, msg: Pong, now: float) -> None:
        self._pop_rpc(msg.req_id, sender)

    def _fix_finger(self, now: float) -> None:
        t = self.table
        if t.alone:
            return
        lo, bits = t.first_finger_index(), self.space.bits
        if lo >= bits:
            return
        i = self._next_finger
        if not lo <= i < bits:
            i = lo
        near = t.listed_successor(self.space.finger_start(self.me.id, i))
        if near is not None:
            # The successor list, refreshed by every stabilization, already names it: no
            # message. (Such fingers are about a third of a large ring's distinct ones.)
            self._set_fingers_from(i, near)
            return
        f = t.finger(i)
        if f is None:
            self._send_lookup(self.space.finger_start(self.me.id, i), _Purpose.FINGER, now,
                              finger_index=i)
        else:
            # A settled finger only needs checking: its predecessor tells whether it still
            # succeeds the finger's start. Two messages instead of a lookup of O(log N) hops,
            # which is most of a node's maintenance traffic.
            self._rpc(f, GetNeighbours, _Purpose.FINGER_CHECK, now, finger_index=i)

    def _on_finger_check(self, f: NodeRef, pred: NodeRef | None, i: int, steps: int,
                         now: float) -> None:
        space = self.space
        start = space.finger_start(self.me.id, i)
        if pred is not None and space.in_half_open(start, pred.id, f.id):
            self._set_fingers_from(i, f)  # still right, as far as the finger knows
        elif (pred is not None and steps < FINGER_WALK and pred.id != self.me.id
              and (pred.id == start or space.in_open(pred.id, start, f.id))):
            # A node joined between the start and the finger, the usual way a finger goes
            # stale under churn: it is the finger's predecessor, so ask it in turn. Two
            # messages instead of a lookup of O(log N) hops and its receipts (in a churning
            # ring of 10^4 nodes such lookups were a quarter of all events).
            self._rpc(pred, GetNeighbours, _Purpose.FINGER_CHECK, now, finger_index=i,
                      steps=steps + 1)
        else:
            # Several joined there, or the finger cannot tell: a lookup finds the exact
            # successor in one go.
            self._send_lookup(start, _Purpose.FINGER, now, finger_index=i)

    def _on_get_fingers(self, sender: NodeRef, msg: GetFingers, now: float) -> None:
        self._emit(sender, Fingers(msg.req_id, self.table.finger_nodes()))

    def _on_fingers(self, sender: NodeRef, msg: Fingers, now: float) -> None:
        rpc = self._pop_rpc(msg.req_id, sender)
        if rpc is None or rpc.purpose is not _Purpose.FINGER_SEED:
            return
        t, space, me = self.table, self.space, self.me.id
        hints = sorted((f for f in msg.fingers if f.id != me),
                       key=lambda r: space.distance(me, r.id))
        j = 0
        for i in range(t.first_finger_index(), space.bits):
            reach = 1 << i  # the distance from us to finger i's start
            while j < len(hints) and space.distance(me, hints[j].id) < reach:
                j += 1
            if j == len(hints):
                break
            if t.finger(i) is None:
                t.set_finger(i, hints[j])  # the first hint at or past the start

    def _advance_finger(self, i: int) -> None:
        nxt = i + 1
        self._next_finger = nxt if nxt < self.space.bits else self.table.first_finger_index()

    def _set_fingers_from(self, i: int, node: NodeRef) -> None:
        """finger[i] = node, and every later finger whose start ``node`` also succeeds."""
        t, space = self.table, self.space
        bits = space.bits
        t.set_finger(i, node)
        # Finger j's start is me + 2**j: node succeeds it while 2**j <= distance(me, node).
        d = space.distance(self.me.id, node.id)
        stop = bits if d == 0 else min(bits, d.bit_length())
        j = i + 1
        while j < stop:
            t.set_finger(j, node)
            j += 1
        self._next_finger = j if j < bits else t.first_finger_index()

    # == lookups =============================================================================

    def _send_lookup(self, key: int, purpose: _Purpose, now: float, *,
                     via: NodeRef | None = None, finger_index: int = -1) -> int:
        req = self._new_req()
        if via is None:
            if self.table.is_responsible(key):
                self._lookup_result(purpose, req, key, self.me, 0, now, finger_index)
                return req
            route = self.table.next_hop(key)
            if route is None:
                self._lookup_result(purpose, req, key, self.me, 0, now, finger_index)
                return req
            via, final = route
            if final:
                self._lookup_result(purpose, req, key, via, 0, now, finger_index)
                return req
            # Routed as a probe envelope: held in custody hop by hop and re-routed around
            # dead nodes like any stanza, so a lookup survives failures on its path. The
            # responsible node answers the asker directly.
            msg_id = self._new_msg_id()
            payload = self.codec.encode_lookup_request(req, self.me.addr)
            self._add_rpc(req, _Rpc(purpose, None, now + self.config.lookup_timeout, key,
                                    finger_index, msg_id))
            if self._lookups is None:
                self._lookups = {}
            self._lookups[msg_id] = req
            self._accept(Envelope(msg_id, self.me.id, key, self.config.default_ttl, 0,
                                  F_PROBE | F_LOOKUP, payload), None, now)
            return req
        # Joining: not on the ring yet, so the bootstrap node routes a plain request for us.
        self._emit(via, FindSuccessor(req, key, self.me, 1, self.config.default_ttl))
        self._add_rpc(req, _Rpc(purpose, via, now + self.config.lookup_timeout, key, finger_index))
        return req

    def _answer_lookup(self, env: Envelope, now: float) -> None:
        try:
            req, addr = self.codec.decode_lookup_request(env.payload)
        except MalformedMessage:
            self.stats.malformed += 1
            return
        found = FoundSuccessor(req, env.dest, self.me, env.hops)
        if env.origin == self.me.id:
            self._on_found_successor(self.me, found, now)
        else:
            self._emit(NodeRef(env.origin, addr), found)

    def _forget_lookup(self, rpc: _Rpc) -> None:
        if rpc.msg_id >= 0 and self._lookups is not None:
            self._lookups.pop(rpc.msg_id, None)
            if not self._lookups:
                self._lookups = None

    def _undeliverable(self, report: ErrorReport, now: float) -> None:
        """An envelope of ours failed: a lookup's probe fails the lookup; others are news."""
        req = self._lookups.get(report.msg_id) if self._lookups is not None else None
        if req is None:
            self._event(Undeliverable(report))
            return
        rpc = self._take_rpc(req)
        if rpc is not None:
            self._on_rpc_timeout(req, rpc, now)

    def _on_find_successor(self, sender: NodeRef, msg: FindSuccessor, now: float) -> None:
        if self.state is not NodeState.ACTIVE and self.state is not NodeState.LEAVING:
            return
        t = self.table
        if t.is_responsible(msg.key):
            self._emit(msg.requester, FoundSuccessor(msg.req_id, msg.key, self.me, msg.hops))
            return
        route = t.next_hop(msg.key)
        if route is None:
            self._emit(msg.requester, FoundSuccessor(msg.req_id, msg.key, self.me, msg.hops))
            return
        hop, final = route
        if final:
            self._emit(msg.requester, FoundSuccessor(msg.req_id, msg.key, hop, msg.hops))
        elif msg.ttl > 1:
            self._emit(hop, FindSuccessor(msg.req_id, msg.key, msg.requester,
                                                 msg.hops + 1, msg.ttl - 1))

    def _on_found_successor(self, sender: NodeRef, msg: FoundSuccessor, now: float) -> None:
        rpc = self._rpcs.get(msg.req_id) if self._rpcs is not None else None
        if rpc is None or rpc.key != msg.key or rpc.purpose not in _LOOKUPS:
            return
        self._take_rpc(msg.req_id)
        self._forget_lookup(rpc)
        self._lookup_result(rpc.purpose, msg.req_id, msg.key, msg.successor, msg.hops, now,
                            rpc.finger_index)

    def _lookup_result(self, purpose: _Purpose, req: int, key: int, succ: NodeRef, hops: int,
                       now: float, finger_index: int) -> None:
        if purpose is _Purpose.JOIN:
            if self.state is not NodeState.JOINING:
                return
            if succ.id == self.me.id:
                self._event(JoinFailed(f"node id {self.space.short(self.me.id)} in use"))
                self.state = NodeState.IDLE
                return
            self.table.set_successors([succ])
            self.state = NodeState.ACTIVE
            self._event(Joined(succ))
            self._event(SuccessorChanged(None, succ))
            self._start_maintenance(now)
            # Fingers from the successor's table: each is then checked (two messages) instead
            # of looked up (a probe of O(log N) hops with its receipts), which under churn
            # was a large share of a ring's work.
            self._rpc(succ, GetFingers, _Purpose.FINGER_SEED, now)
        elif purpose is _Purpose.FINGER:
            if finger_index < 0:
                return
            if succ.id != self.me.id:
                self._set_fingers_from(finger_index, succ)
            else:
                # The start wrapped round to us (a small ring): no finger there. Move on,
                # or this index would be asked forever and the later ones never.
                self.table.set_finger(finger_index, self.me)
                self._advance_finger(finger_index)
        else:
            self._event(LookupDone(req, key, succ, hops))

    # == requests and their time limits ======================================================

    def _new_req(self) -> int:
        self._next_req = (self._next_req + 1) & ((1 << 64) - 1)
        return self._next_req

    def _rpc(self, peer: NodeRef, make: Callable[[int], Message], purpose: _Purpose,
             now: float, *, finger_index: int = -1, steps: int = 0) -> None:
        """Ask ``peer`` directly: ``make(req_id)`` is the question; silence is a time-out."""
        req = self._new_req()
        self._emit(peer, make(req))
        self._add_rpc(req, _Rpc(purpose, peer, now + self.config.rpc_timeout,
                                finger_index=finger_index, steps=steps))

    def _add_rpc(self, req: int, rpc: _Rpc) -> None:
        if self._rpcs is None:
            self._rpcs, self._rpc_heap = {}, []
        self._rpcs[req] = rpc
        heapq.heappush(self._rpc_heap, (rpc.deadline, req))  # type: ignore[arg-type]

    def _take_rpc(self, req: int) -> _Rpc | None:
        rpcs = self._rpcs
        if rpcs is None:
            return None
        rpc = rpcs.pop(req, None)
        if not rpcs:
            # Nothing open: every deadline left in the heap is an answered request's. (Most
            # rounds end so, and get_timer then has no heap to clean.)
            self._rpcs = self._rpc_heap = None
        return rpc

    def _pop_rpc(self, req: int, sender: NodeRef) -> _Rpc | None:
        rpc = self._rpcs.get(req) if self._rpcs is not None else None
        if rpc is None:
            return None
        peer = rpc.peer
        if peer is None or (peer is not sender and peer.id != sender.id):
            return None
        return self._take_rpc(req)

    def _expire_rpcs(self, now: float) -> None:
        heap = self._rpc_heap
        while heap and heap[0][0] <= now:
            deadline, req = heapq.heappop(heap)
            rpc = self._rpcs.get(req) if self._rpcs is not None else None
            if rpc is None or rpc.deadline != deadline:
                continue
            self._take_rpc(req)  # (drops heap and table when nothing is left open)
            self._on_rpc_timeout(req, rpc, now)

    def _on_rpc_timeout(self, req: int, rpc: _Rpc, now: float) -> None:
        p = rpc.purpose
        self._forget_lookup(rpc)
        if p in _DIRECT:
            if rpc.peer is not None:
                self._suspect(rpc.peer, f"{p.value} timeout", now)
            if p is _Purpose.STABILIZE:
                self._restabilize(now)  # try the next successor straight away
            return
        if p is _Purpose.JOIN:
            if self.state is not NodeState.JOINING or self._bootstrap is None:
                return
            if self._join_attempts >= self.config.join_attempts:
                self.state = NodeState.IDLE
                self._event(JoinFailed(
                    f"no answer from {self._bootstrap.addr} after {self._join_attempts} attempts"))
                return
            self._join_attempts += 1
            self._send_lookup(self.me.id, _Purpose.JOIN, now, via=self._bootstrap)
            return
        self.stats.lookups_failed += 1
        if p is _Purpose.FINGER and rpc.finger_index >= 0:
            self._advance_finger(rpc.finger_index)  # try the others; this one comes round again
        if p is _Purpose.USER:
            self._event(LookupFailed(req, rpc.key))
        if rpc.peer is not None and self.table.knows(rpc.peer.id):
            # Somewhere on the path a node is gone; find out whether it is the first hop.
            self._rpc(rpc.peer, Ping, _Purpose.LIVENESS, now)

    def _require(self, state: NodeState, what: str) -> None:
        if self.state is not state:
            raise RuntimeError(f"cannot {what} while {self.state.value}")
