"""Chord routing state of one node: successor list, predecessor, fingers, and ``next_hop``.

All known nodes (successors and fingers) are kept in one index sorted by clockwise distance
from this node. The index stores only the top 64 bits of each distance, in an array of
machine words (8 bytes an entry instead of a 48-byte integer: it matters at 10**6 simulated
nodes); entries whose top bits tie with the key's are compared exactly. "Closest preceding node of k" is then the last index entry whose distance is
below k's distance: one bisect, whatever the table size. Because the successor is always in
the index and precedes every key it is not responsible for, ``next_hop`` always makes
progress: the chosen hop is strictly closer to the key than this node is.

The table knows nothing of time or messages; the node core decides when to change it.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Iterable

from .keyspace import KeySpace
from .messages import NodeRef


def default_successor_list_length(expected_nodes: int) -> int:
    """r = 2 * ceil(log2 N_expected), at least 8 (Chord's analysis wants Omega(log N))."""
    return max(8, 2 * math.ceil(math.log2(max(expected_nodes, 2))))


class RoutingTable:
    __slots__ = ("space", "me", "r", "successors", "predecessor", "_fi", "_fr",
                 "_idx_hi", "_idx_r", "_dirty", "_shift")

    def __init__(self, space: KeySpace, me: NodeRef, r: int) -> None:
        if r < 1:
            raise ValueError("successor list length must be at least 1")
        self.space = space
        self.me = me
        self.r = r
        self.successors: list[NodeRef] = []
        self.predecessor: NodeRef | None = None
        # finger index i -> successor(me + 2**i), as a sorted association list: indices in a
        # bytearray (bits <= 256), nodes in a parallel list. Half the size of a dict, which
        # counts at 10**6 simulated nodes. Only indices whose start lies beyond the immediate
        # successor are worth storing: the rest are the successor itself.
        self._fi = bytearray()
        self._fr: list[NodeRef] = []
        self._idx_hi = array("Q")
        self._idx_r: list[NodeRef] = []
        self._dirty = False
        self._shift = max(space.bits - 64, 0)

    # -- reading --------------------------------------------------------------------------

    @property
    def successor(self) -> NodeRef | None:
        return self.successors[0] if self.successors else None

    @property
    def alone(self) -> bool:
        """No other node known as successor: this node is the whole ring."""
        return not self.successors

    def distance(self, node_id: int) -> int:
        return (node_id - self.me.id) % self.space.modulus

    def is_responsible(self, key: int) -> bool | None:
        """True/False when the predecessor tells; None when it is unknown."""
        if self.alone:
            return True
        if key == self.me.id:
            return True
        if self.predecessor is None:
            return None
        return self.space.in_half_open(key, self.predecessor.id, self.me.id)

    @property
    def fingers(self) -> dict[int, NodeRef]:
        """The finger table as a mapping (a copy: change it with set_finger)."""
        return dict(zip(self._fi, self._fr))

    def finger(self, i: int) -> NodeRef | None:
        pos = bisect_left(self._fi, i)
        if pos < len(self._fi) and self._fi[pos] == i:
            return self._fr[pos]
        return None

    def known_nodes(self) -> list[NodeRef]:
        """Every node in the index, by clockwise distance from this node."""
        self._rebuild()
        return list(self._idx_r)

    def first_finger_index(self) -> int:
        """Lowest finger index whose start lies beyond the successor (0 when alone)."""
        s = self.successor
        if s is None:
            return 0
        return min(self.distance(s.id).bit_length(), self.space.bits)

    # -- routing --------------------------------------------------------------------------

    def next_hop(self, key: int, exclude: frozenset[int] = frozenset()) -> tuple[NodeRef, bool] | None:
        """Best next hop towards ``key`` and whether it is the key's successor (the final hop).

        Returns None when this node is alone (it is responsible for everything) or every
        known node is excluded.
        """
        if not self.successors:
            return None
        m = self.space.modulus
        me = self.me.id
        d = (key - me) % m
        if d == 0:
            return None
        # The final hop: the first live successor at or past the key.
        for s in self.successors:
            if s.id in exclude:
                continue
            ds = (s.id - me) % m
            if d <= ds:
                return s, True
            break
        if self._dirty:
            self._rebuild()
        idx_r, hi = self._idx_r, self._idx_hi
        dk = d >> self._shift
        j = bisect_left(hi, dk) - 1  # every entry up to j is strictly closer than the key
        last = len(hi) - 1
        while j < last and hi[j + 1] == dk and (idx_r[j + 1].id - me) % m < d:
            j += 1  # same top bits as the key: decide exactly
        while j >= 0:
            cand = idx_r[j]
            if cand.id not in exclude:
                return cand, False
            j -= 1
        return None

    # -- changing -------------------------------------------------------------------------

    def set_successors(self, nodes: Iterable[NodeRef]) -> bool:
        """Replace the successor list (deduplicated, self removed, capped at r).

        Returns True if the immediate successor changed.
        """
        old = self.successor
        seen: set[int] = {self.me.id}
        out: list[NodeRef] = []
        for n in nodes:
            if n.id in seen:
                continue
            seen.add(n.id)
            out.append(n)
            if len(out) >= self.r:
                break
        self.successors = out
        self._dirty = True
        return self.successor != old

    def set_predecessor(self, node: NodeRef | None) -> bool:
        if node is not None and node.id == self.me.id:
            node = None
        changed = node != self.predecessor
        self.predecessor = node
        return changed

    def set_finger(self, i: int, node: NodeRef) -> None:
        if not 0 <= i < self.space.bits:
            raise ValueError(f"finger index {i} outside 0..{self.space.bits - 1}")
        fi, fr = self._fi, self._fr
        pos = bisect_left(fi, i)
        present = pos < len(fi) and fi[pos] == i
        if node.id == self.me.id:
            if present:
                del fi[pos]
                del fr[pos]
        elif present:
            fr[pos] = node
        else:
            fi.insert(pos, i)
            fr.insert(pos, node)
        self._dirty = True

    def remove(self, node_id: int) -> bool:
        """Forget a node everywhere (it is suspected dead or left). True if successor changed."""
        old = self.successor
        self.successors = [s for s in self.successors if s.id != node_id]
        if self.predecessor is not None and self.predecessor.id == node_id:
            self.predecessor = None
        if any(f.id == node_id for f in self._fr):
            keep = [(i, f) for i, f in zip(self._fi, self._fr) if f.id != node_id]
            self._fi = bytearray(i for i, _ in keep)
            self._fr = [f for _, f in keep]
        self._dirty = True
        return self.successor != old

    def knows(self, node_id: int) -> bool:
        if self.predecessor is not None and self.predecessor.id == node_id:
            return True
        return any(s.id == node_id for s in self.successors) or any(
            f.id == node_id for f in self._fr
        )

    def closest_known_after_me(self) -> NodeRef | None:
        """The nearest node clockwise among everything known (a successor of last resort)."""
        self._rebuild()
        if self._idx_r:
            return self._idx_r[0]
        return self.predecessor

    def _rebuild(self) -> None:
        if not self._dirty:
            return
        m = self.space.modulus
        me = self.me.id
        byid: dict[int, NodeRef] = {}
        for s in self.successors:
            byid[s.id] = s
        for f in self._fr:
            byid.setdefault(f.id, f)
        items = sorted(((n - me) % m, ref) for n, ref in byid.items() if n != me)
        shift = self._shift
        self._idx_hi = array("Q", [d >> shift for d, _ in items])
        self._idx_r = [r for _, r in items]
        self._dirty = False
