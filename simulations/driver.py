"""Drives real ``ring.node.RingNode`` cores from the kernel: the simulator's node shell.

This is what ``ring.memcluster`` does for tests, with time that passes: every output of a
core goes through the simulated network (latency, loss, partitions, dead hosts), every
timer a core asks for becomes a kernel event, every event a core reports goes to the
listeners (workloads, churn, observers). The cores are the very objects the live node runs;
nothing here re-implements routing or maintenance.

Determinism: one seed derives every random stream (node identities, the cores' jitter, the
network's loss lottery, churn, workloads), each from its own named sub-seed, and the kernel
breaks ties by insertion order. Nothing iterates over a set of strings or reads a clock.

Memory: all cores share one ``random.Random`` for their timer jitter (a Mersenne Twister
is 2.5 KB; one per node would cost 2.5 GB at 10^6 nodes) -- still deterministic, since
the order of calls is. Crashed cores are dropped at once.
"""

from __future__ import annotations

import gc
import hashlib
import random
from bisect import bisect_left, insort
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from ring.config import RingConfig
from ring.events import Joined
from ring.identity import node_id_for_key
from ring.ids import node_id_from_public_key
from ring.messages import NodeRef
from ring.node import NodeState, RingNode
from ring.wire import WireCodec
from topology.latency import LatencyModel

from .kernel import Kernel
from .network import SimNetwork

ID_SCHEMES = ("ed25519", "hash")
_NO_TIMER = float("inf")


def sub_seed(seed: int, name: str) -> int:
    """A named, independent seed derived from the run's seed (stable across Python versions)."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "big")


class RingTruth:
    """The ring as an omniscient observer sees it: sorted ids of live, ACTIVE nodes."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, node_id: int) -> None:
        insort(self.ids, node_id)

    def discard(self, node_id: int) -> None:
        ids = self.ids
        k = bisect_left(ids, node_id)
        if k < len(ids) and ids[k] == node_id:
            del ids[k]

    def __contains__(self, node_id: int) -> bool:
        ids = self.ids
        k = bisect_left(ids, node_id)
        return k < len(ids) and ids[k] == node_id

    def successor(self, key: int) -> int | None:
        """The id of the node responsible for ``key``, None when the ring is empty."""
        ids = self.ids
        if not ids:
            return None
        k = bisect_left(ids, key)
        return ids[k] if k < len(ids) else ids[0]

    def next_after(self, node_id: int, k: int = 1) -> int:
        ids = self.ids
        return ids[(bisect_left(ids, node_id) + k) % len(ids)]


Listener = Callable[[int, Any], None]


class Simulation:
    """N ring cores, a kernel and a network. Indices name nodes; ``refs[i].addr == f"s{i}"``."""

    def __init__(self, config: RingConfig, *, seed: int, latency: LatencyModel,
                 loss: float = 0.0, ids: str = "ed25519", max_events: int = 2_000_000_000) -> None:
        if ids not in ID_SCHEMES:
            raise ValueError(f"unknown id scheme {ids!r} ({', '.join(ID_SCHEMES)})")
        self.config = config
        self.space = config.space
        self.seed = seed
        self.ids = ids
        self.kernel = Kernel(max_events=max_events)
        self.net = SimNetwork(self.kernel, latency, loss=loss,
                              rng=random.Random(sub_seed(seed, "loss")), deliver=self._deliver)
        self._id_rng = random.Random(sub_seed(seed, "ids"))
        self._core_rng = random.Random(sub_seed(seed, "cores"))
        self.rng = random.Random(sub_seed(seed, "driver"))
        self._codec = WireCodec(self.space)
        self.nodes_codec = self._codec  # the codec the cores share (observers read payloads)
        self.nodes: list[RingNode | None] = []
        self.refs: list[NodeRef] = []
        self.by_id: dict[int, int] = {}
        # The network finds a message's destination by address: a str caches its hash, a
        # 160-bit id is hashed afresh at every look-up (one per message).
        self.by_addr: dict[str, int] = {}
        self.truth = RingTruth()
        self.listeners: dict[type, list[Listener]] = {}
        self.on_down: list[Callable[[int], None]] = []
        self.event_counts: dict[str, int] = {}
        self.crashes = 0
        self._fire_cb = self._fire  # one bound method for every wake-up event, not one each
        self.leaves = 0
        self.joins = 0

    # -- identities -------------------------------------------------------------------------

    def _new_id(self) -> int:
        raw = self._id_rng.randbytes(32)
        if self.ids == "ed25519":
            key = ed25519.Ed25519PrivateKey.from_private_bytes(raw).public_key()
            return node_id_for_key(self.space, key)
        # A public-key-shaped byte string, hashed exactly as a real key would be.
        return node_id_from_public_key(self.space, raw)

    # -- membership -------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.kernel.now

    def spawn(self) -> int:
        """A new, idle core with a fresh identity; returns its index."""
        i = len(self.nodes)
        node_id = self._new_id()
        while node_id in self.by_id:  # astronomically rare, but ids must be unique
            node_id = self._new_id()
        # One codec for all cores: a WireCodec owns a msgpack Packer with a 256 KB buffer.
        node = RingNode(NodeRef(node_id, f"s{i}", i), self.config, rng=self._core_rng,
                        msg_id_base=i << 20, codec=self._codec)
        self.nodes.append(node)
        self.refs.append(node.me)  # the core's own copy, so only one NodeRef per node lives
        self.by_id[node_id] = i
        self.by_addr[node.me.addr] = i
        self.net.add_node()
        return i

    def create(self, i: int) -> None:
        node = self._node(i)
        node.create(self.now)
        self.truth.add(node.me.id)
        self._after(i, node)

    def join(self, i: int, via: int) -> None:
        node = self._node(i)
        node.join(self.refs[via], self.now)
        self.joins += 1
        self._after(i, node)

    def crash(self, i: int) -> None:
        """Stop node i dead: it answers nothing from now on and its core is dropped."""
        if self.nodes[i] is not None:
            self.crashes += 1
            self._take_down(i)

    def _take_down(self, i: int) -> None:
        self.truth.discard(self.refs[i].id)
        self.nodes[i] = None  # (its wake-up, if one is pending, finds no node and ends)
        self.net.down(i)
        for fn in self.on_down:
            fn(i)

    def leave(self, i: int, *, linger: float | None = None) -> None:
        """Graceful departure: the core says goodbye, drains its custody, then goes down."""
        node = self.nodes[i]
        if node is None:
            return
        self.truth.discard(node.me.id)
        node.leave(self.now)
        self.leaves += 1
        self._after(i, node)
        c = self.config
        limit = linger if linger is not None else c.custody_timeout * (c.max_retries + 1)
        self.kernel.after(1.0, self._drain_check, i, self.now + limit)

    def _drain_check(self, i: int, give_up: float, _: Any) -> None:
        node = self.nodes[i]
        if node is None:
            return
        if node.drained or self.now >= give_up:
            self._take_down(i)
        else:
            self.kernel.after(1.0, self._drain_check, i, give_up)

    def alive(self, i: int) -> bool:
        return self.nodes[i] is not None

    def active_indices(self) -> list[int]:
        by_id = self.by_id
        return [by_id[x] for x in self.truth.ids]

    def random_active(self) -> int | None:
        ids = self.truth.ids
        if not ids:
            return None
        return self.by_id[ids[self.rng.randrange(len(ids))]]

    def _node(self, i: int) -> RingNode:
        node = self.nodes[i]
        if node is None:
            raise ValueError(f"node {i} is down")
        return node

    # -- the loop ---------------------------------------------------------------------------

    def listen(self, kind: type, fn: Listener) -> None:
        self.listeners.setdefault(kind, []).append(fn)

    def _after(self, i: int, node: RingNode) -> None:
        out = node.take_outputs()
        if out:  # (crashed nodes stay in by_addr: the network drops their mail)
            self.net.carry(i, node.me, out, self.by_addr)
        ev = node.take_events()
        if ev:
            self._dispatch(i, node, ev)
        # The node keeps the driver's two numbers (see RingNode.shell_wakeup): its wake-up
        # event's time and its deadline as of now, inf for none.
        due = node.get_timer()
        t = _NO_TIMER if due is None else due
        node.shell_deadline = t
        if t < node.shell_wakeup:
            # Only an earlier deadline needs a new event. A later one (a request answered
            # before its time limit) lets the armed event fire early: _fire re-arms it.
            node.shell_wakeup = t
            self.kernel.at(t, self._fire_cb, i, t)

    def _dispatch(self, i: int, node: RingNode, events: Sequence[Any]) -> None:
        counts = self.event_counts
        listeners = self.listeners
        for e in events:
            kind = type(e)
            name = kind.__name__
            counts[name] = counts.get(name, 0) + 1
            if kind is Joined and node.state is NodeState.ACTIVE:
                self.truth.add(node.me.id)
            fns = listeners.get(kind)
            if fns:
                for fn in fns:
                    fn(i, e)

    def _fire(self, i: int, t: float, _: Any) -> None:
        node = self.nodes[i]
        if node is None or node.shell_wakeup != t:
            return  # down, or superseded by an earlier event
        # The core's deadline as of the last time it was driven (every drive ends in _after,
        # and only a drive changes it): a core woken early is not driven at all.
        due = node.shell_deadline
        if due == _NO_TIMER:
            node.shell_wakeup = _NO_TIMER
            return
        now = self.kernel.now
        if due > now:
            # Woken early: the request whose time limit this was got its answer. Sleep on;
            # nothing was handled, so there is nothing to collect.
            node.shell_wakeup = due
            self.kernel.at(due, self._fire_cb, i, due)
            return
        node.shell_wakeup = _NO_TIMER
        node.handle_timer(now)
        self._after(i, node)

    def _deliver(self, j: int, sender: NodeRef, msg: Any) -> None:
        node = self.nodes[j]
        if node is None:
            return
        node.handle_message(sender, msg, self.kernel.now)
        self._after(j, node)

    def kick(self, i: int) -> None:
        """Collect outputs and re-arm the timer after driving core i from outside."""
        node = self.nodes[i]
        if node is not None:
            self._after(i, node)

    def run(self, until: float) -> int:
        # The kernel's heap and buckets are large lists that every garbage collection walks
        # (at 10^5 nodes, 18 % of the run went to collections), and the cores make no
        # reference cycles as they run (a full collection after 60 simulated seconds of
        # 10^5 nodes found none): reference counting frees everything, so the cyclic
        # collector rests while the run lasts.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self.kernel.run(until)
        finally:
            if was_enabled:
                gc.enable()
