"""The simulated network: carries what node cores send, with latency, loss and partitions.

A message from node ``a`` to node ``b`` arrives ``latency(a, b)`` seconds later, where the
latency model fixes one delay per pair for the whole run. It is lost when

- ``b`` is down (crashed, or left) when it would arrive: like a host that stopped answering,
  the sender learns nothing and must time out (Chord's failure model);
- ``a`` and ``b`` are on different sides of a partition when it is sent;
- the loss lottery says so (probability ``loss`` per message, from the run's seeded RNG).

Node indices are never reused: a node that comes back is a new node with a new index, so a
late message for an old incarnation can never reach a new one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ring.messages import NodeRef
from topology.latency import LatencyModel

from .kernel import Kernel

DeadLetterHook = Callable[[int, int, Any], None]


class _Count:
    """A counter that is counted up in place: compiled, its number is a machine word,
    where counting in a dict of ints makes a new int object per message."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class SimNetwork:
    __slots__ = ("kernel", "model", "loss", "rng", "up", "group", "delivered", "lost_down",
                 "lost_partition", "lost_random", "on_dead_letter", "_deliver", "_by_type",
                 "_latency")

    def __init__(self, kernel: Kernel, model: LatencyModel, *, rng: random.Random,
                 deliver: Callable[[int, Any, Any], None], loss: float = 0.0) -> None:
        if not 0 <= loss < 1:
            raise ValueError("loss must be in [0, 1)")
        self.kernel = kernel
        self.model = model
        self.loss = loss
        self.rng = rng
        # 1 while node i is up: a byte a node, so that 10^5 nodes' flags fit a core's cache
        # (a list of bools is 8 bytes a node, and it is read twice for every message).
        self.up = bytearray()
        self.group: list[int] | None = None  # partition side of each node, None: no partition
        self.delivered = 0
        self.lost_down = 0
        self.lost_partition = 0
        self.lost_random = 0
        self._by_type: dict[type, _Count] = {}  # messages sent, by class (names for reports)
        self.on_dead_letter: DeadLetterHook | None = None  # (src, dst, msg) lost to a down node
        self._deliver = deliver
        self._latency = model.latency

    @property
    def sent(self) -> int:
        return sum(c.n for c in self._by_type.values())

    @property
    def by_kind(self) -> dict[str, int]:
        return {t.__name__: c.n for t, c in self._by_type.items()}

    def add_node(self) -> int:
        self.up.append(1)
        if self.group is not None:
            self.group.append(0)
        return len(self.up) - 1

    def down(self, i: int) -> None:
        self.up[i] = 0

    def send(self, src: int, dst: int, sender: Any, msg: Any) -> None:
        """Carry ``msg`` from ``src`` (whose NodeRef is ``sender``) to ``dst``."""
        self.carry(src, sender, ((dst, msg),))

    def carry(self, src: int, sender: Any, out: Any, index: dict[str, int] | None = None) -> None:
        """Carry every ``(dest, msg)`` of ``out`` from ``src`` (whose NodeRef is ``sender``).

        ``dest`` is a node index, or with ``index`` a NodeRef: its ``slot``, or else the
        index its address maps to (an address ``index`` lacks is no node of the run: its
        mail is dropped uncounted).
        One call per batch: this runs for every message of a simulation.
        """
        bt = self._by_type
        up = self.up
        g = self.group
        loss = self.loss
        k = self.kernel
        # (k.at is called as a method, not through a local: compiled, that is a direct call)
        now, latency, arrive = k.now, self._latency, self._arrive
        for dest, msg in out:
            if index is None:
                dst = dest
            else:
                ref: NodeRef = dest
                dst = ref.slot  # (the driver's refs carry their index; decoded ones do not)
                if dst < 0:
                    found = index.get(ref.addr)
                    if found is None:
                        continue
                    dst = found
            kind = type(msg)
            count = bt.get(kind)
            if count is None:
                count = bt[kind] = _Count()
            count.n += 1
            if not up[dst]:
                self.lost_down += 1
                if self.on_dead_letter is not None:
                    self.on_dead_letter(src, dst, msg)
            elif g is not None and g[src] != g[dst]:
                self.lost_partition += 1
            elif loss and self.rng.random() < loss:
                self.lost_random += 1
            else:
                k.at(now + latency(src, dst), arrive, dst, sender, msg)

    def _arrive(self, dst: int, sender: Any, msg: Any) -> None:
        if not self.up[dst]:
            self.lost_down += 1
            if self.on_dead_letter is not None:
                self.on_dead_letter(-1, dst, msg)
            return
        self.delivered += 1
        self._deliver(dst, sender, msg)

    # -- partitions ------------------------------------------------------------------------

    def partition(self, sides: list[int]) -> None:
        """Put node i on side ``sides[i]``; messages across sides are dropped until heal()."""
        if len(sides) != len(self.up):
            raise ValueError("one side per node is needed")
        self.group = list(sides)

    def heal(self) -> None:
        self.group = None

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "delivered": self.delivered,
            "lost_down": self.lost_down,
            "lost_partition": self.lost_partition,
            "lost_random": self.lost_random,
            "by_kind": dict(sorted(self.by_kind.items())),
        }
