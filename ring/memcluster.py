"""N node cores in one process, driven deterministically: a message pump and a virtual clock.

Messages are delivered in FIFO order with no latency; time only moves when every queue is
empty, jumping to the earliest timer any node asked for. The same seed gives the same run.
This is the harness for tests, the core benchmark and the offline demo; the simulator
(``simulations``) adds latency, loss and churn on top of the same cores.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Iterable

from cryptography.hazmat.primitives.asymmetric import ed25519

from .config import RingConfig
from .converged import install_converged_tables
from .events import Event
from .identity import node_id_for_key
from .messages import Message, NodeRef
from .node import NodeState, RingNode


class StepLimitExceeded(RuntimeError):
    pass


class InMemoryCluster:
    def __init__(self, config: RingConfig | None = None, *, seed: int = 0,
                 max_steps: int = 50_000_000) -> None:
        self.config = config or RingConfig()
        self.space = self.config.space
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes: dict[str, RingNode] = {}
        self.crashed: set[str] = set()
        self.events: list[tuple[str, Event]] = []
        self.keep_events: Callable[[Event], bool] = lambda e: True
        self.messages_delivered = 0
        self.max_steps = max_steps
        self._queue: deque[tuple[str, NodeRef, Message]] = deque()
        self._timers: list[tuple[float, int, str]] = []
        self._armed: dict[str, float | None] = {}
        self._seq = 0
        self._made = 0

    # -- membership -----------------------------------------------------------------------

    def new_ref(self) -> NodeRef:
        """A fresh node: an Ed25519 key from the seeded RNG, its id the hash of the key."""
        priv = ed25519.Ed25519PrivateKey.from_private_bytes(self.rng.randbytes(32))
        node_id = node_id_for_key(self.space, priv.public_key())
        self._made += 1
        return NodeRef(node_id, f"mem-{self._made - 1}")

    def add_node(self, bootstrap: str | None = None, ref: NodeRef | None = None) -> RingNode:
        """Create a node; the first one creates the ring, later ones join through ``bootstrap``
        (default: the first live node)."""
        ref = ref or self.new_ref()
        node = RingNode(ref, self.config, rng=self.rng, msg_id_base=self.rng.getrandbits(32) << 24)
        live = self.live()
        self.nodes[ref.addr] = node
        if not live:
            node.create(self.now)
        else:
            boot = self.nodes[bootstrap] if bootstrap else live[0]
            node.join(boot.me, self.now)
        self._after(node)
        return node

    def add_stable(self, n: int, *, maintenance: bool = False) -> None:
        """Add n nodes with the routing state a converged ring would have, all at once.

        Joins cost O(N log N) messages and virtual time; to measure routing over 2**14 nodes
        or more, this fills each real core's successor list, predecessor and fingers from the
        sorted ring instead. Routing itself still runs through the cores. Only for a cluster
        without nodes yet.
        """
        if self.nodes:
            raise RuntimeError("add_stable builds a ring from nothing")
        refs = sorted((self.new_ref() for _ in range(n)), key=lambda r: r.id)
        nodes = [RingNode(ref, self.config, rng=self.rng, msg_id_base=self.rng.getrandbits(32) << 24)
                 for ref in refs]
        install_converged_tables([node.table for node in nodes], refs)
        for node in nodes:
            self.nodes[node.me.addr] = node
            if maintenance or n == 1:
                node.create(self.now)  # active, with its maintenance timers running
            else:
                node.state = NodeState.ACTIVE  # routes, but maintains nothing
            self._after(node)

    def live(self) -> list[RingNode]:
        return [n for a, n in self.nodes.items() if a not in self.crashed
                and n.state is not NodeState.IDLE]

    def active(self) -> list[RingNode]:
        return [n for a, n in self.nodes.items()
                if a not in self.crashed and n.state is NodeState.ACTIVE]

    def crash(self, addr: str) -> None:
        """Stop a node dead: it answers nothing, and everything sent to it is lost."""
        self.crashed.add(addr)
        self._armed[addr] = None

    def leave(self, addr: str) -> None:
        self.nodes[addr].leave(self.now)
        self._after(self.nodes[addr])

    # -- driving --------------------------------------------------------------------------

    def _after(self, node: RingNode) -> None:
        addr = node.me.addr
        for dest, msg in node.take_outputs():
            self._queue.append((dest.addr, node.me, msg))
        evs = node.take_events()
        if evs:
            keep = self.keep_events
            self.events.extend((addr, e) for e in evs if keep(e))
        t = node.get_timer()
        if t is not None and t != self._armed.get(addr):
            self._armed[addr] = t
            self._seq += 1
            heapq.heappush(self._timers, (t, self._seq, addr))

    def pump(self) -> int:
        """Deliver queued messages until none are left; returns how many were delivered."""
        n = 0
        q, nodes, crashed = self._queue, self.nodes, self.crashed
        while q:
            addr, sender, msg = q.popleft()
            if addr in crashed or sender.addr in crashed:
                continue
            node = nodes.get(addr)
            if node is None:
                continue
            node.handle_message(sender, msg, self.now)
            self._after(node)
            n += 1
            if n > self.max_steps:
                raise StepLimitExceeded(f"more than {self.max_steps} messages in one pump")
        self.messages_delivered += n
        return n

    def run_for(self, duration: float) -> None:
        """Advance the virtual clock by ``duration``, running every timer that falls due."""
        end = self.now + duration
        self.pump()
        timers = self._timers
        steps = 0
        while timers and timers[0][0] <= end:
            t, _, addr = heapq.heappop(timers)
            if self._armed.get(addr) != t or addr in self.crashed:
                continue
            self._armed[addr] = None
            self.now = max(self.now, t)
            node = self.nodes[addr]
            node.handle_timer(self.now)
            self._after(node)
            self.pump()
            steps += 1
            if steps > self.max_steps:
                raise StepLimitExceeded(f"more than {self.max_steps} timer steps")
        self.now = end

    def run_until(self, done: Callable[[], bool], *, timeout: float, check_every: float = 1.0) -> bool:
        """Run until ``done()`` holds or ``timeout`` virtual seconds pass; returns done()."""
        deadline = self.now + timeout
        while self.now < deadline:
            if done():
                return True
            self.run_for(min(check_every, deadline - self.now))
        return done()

    def send(self, addr: str, dest: int, payload: bytes, **kw: object) -> int:
        node = self.nodes[addr]
        msg_id = node.send(dest, payload, self.now, **kw)  # type: ignore[arg-type]
        self._after(node)
        return msg_id

    def lookup(self, addr: str, key: int) -> int:
        node = self.nodes[addr]
        req = node.lookup(key, self.now)
        self._after(node)
        return req

    def probe(self, addr: str, dest: int) -> int:
        node = self.nodes[addr]
        msg_id = node.probe(dest, self.now)
        self._after(node)
        return msg_id

    # -- the truth, for checking -----------------------------------------------------------

    def ring_order(self) -> list[NodeRef]:
        return sorted((n.me for n in self.active()), key=lambda r: r.id)

    def responsible(self, key: int) -> NodeRef:
        """The live node that should be responsible for ``key`` (its successor on the circle)."""
        order = self.ring_order()
        ids = [r.id for r in order]
        from bisect import bisect_left

        i = bisect_left(ids, key)
        return order[i % len(order)]

    def converged(self) -> bool:
        """Every active node has the right successor, predecessor and successor list head."""
        order = self.ring_order()
        n = len(order)
        if n == 0:
            return True
        for i, ref in enumerate(order):
            node = self.nodes[ref.addr]
            want_succ = order[(i + 1) % n]
            want_pred = order[(i - 1) % n]
            if n == 1:
                if node.table.successor not in (None, ref):
                    return False
                continue
            if node.table.successor != want_succ or node.table.predecessor != want_pred:
                return False
            want = tuple(order[(i + k) % n] for k in range(1, min(node.table.r, n - 1) + 1))
            if node.table.successors != want:
                return False
        return True

    def fingers_correct(self) -> bool:
        """Every stored finger i of every active node is successor(n + 2**i) among live nodes."""
        for node in self.active():
            lo = node.table.first_finger_index()
            for i in range(lo, self.space.bits):
                want = self.responsible(self.space.finger_start(node.me.id, i))
                if want.id == node.me.id:
                    continue
                if node.table.finger(i) != want:
                    return False
        return True

    def events_of(self, kind: type, nodes: Iterable[str] | None = None) -> list[tuple[str, Event]]:
        wanted = set(nodes) if nodes is not None else None
        return [(a, e) for a, e in self.events
                if isinstance(e, kind) and (wanted is None or a in wanted)]
