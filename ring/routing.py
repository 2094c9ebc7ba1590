"""Chord routing state of one node: successor list, predecessor, fingers, and ``next_hop``.

"Closest preceding node of k" is the farthest known node whose clockwise distance from this
node is below k's. Both tables are kept ordered by that distance: the successor list is
sorted, and finger i succeeds me + 2**i, so fingers grow with i. Fingers sit beside an array
of the top 64 bits of their distances (8 bytes an entry instead of a 48-byte integer, which
matters at 10**6 simulated nodes): one C-speed bisect, exact comparison only where top bits
tie. The successor list needs no such array: a key beyond its last entry (the common case)
is decided by that entry alone, and a nearer key is found by bisecting the list itself.

Because the successor is always known and precedes every key it is not responsible for,
``next_hop`` always makes progress: the chosen hop is strictly closer to the key than this
node is (or is the key's successor, the final hop). Entries are checked against the key's
distance before they are returned, so a finger table made inconsistent by churn may give a
worse hop, never a wrong one.

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
    __slots__ = ("space", "me", "r", "successors", "successor", "predecessor", "_fi", "_fr",
                 "_f_hi", "_src")

    def __init__(self, space: KeySpace, me: NodeRef, r: int) -> None:
        if r < 1:
            raise ValueError("successor list length must be at least 1")
        self.space = space
        self.me = me
        self.r = r
        # The next r nodes clockwise, nearest first, and the first of them (read-only: change
        # with set_successors or remove, the only writers of both). A tuple, so a stabilization
        # answer can carry it as it is; the first is kept apart because every message reads it.
        self.successors: tuple[NodeRef, ...] = ()
        self.successor: NodeRef | None = None
        self.predecessor: NodeRef | None = None
        # The list the successor gave when it last settled ours (see set_successors_from).
        self._src: tuple[NodeRef, ...] | None = None
        # finger index i -> successor(me + 2**i), as a sorted association list: indices in a
        # bytearray (bits <= 256), nodes and their distances' top bits in parallel. Only
        # indices whose start lies beyond the immediate successor are worth storing: the rest
        # are the successor itself.
        self._fi = bytearray()
        self._fr: list[NodeRef] = []
        self._f_hi = array("Q")

    # -- reading --------------------------------------------------------------------------

    @property
    def alone(self) -> bool:
        """No other node known as successor: this node is the whole ring."""
        return not self.successors

    @property
    def fingers(self) -> dict[int, NodeRef]:
        """The finger table as a mapping (a copy: change it with set_finger)."""
        return dict(zip(self._fi, self._fr))

    def finger_nodes(self) -> tuple[NodeRef, ...]:
        """The distinct nodes of the finger table, nearest first."""
        out: list[NodeRef] = []
        for f in self._fr:
            if not out or out[-1].id != f.id:
                out.append(f)
        return tuple(out)

    def finger(self, i: int) -> NodeRef | None:
        pos = bisect_left(self._fi, i)
        if pos < len(self._fi) and self._fi[pos] == i:
            return self._fr[pos]
        return None

    def distance(self, node_id: int) -> int:
        return (node_id - self.me.id) % self.space.modulus

    def is_responsible(self, key: int) -> bool | None:
        """True/False when the predecessor tells; None when it is unknown."""
        if not self.successors:
            return True
        if key == self.me.id:
            return True
        if self.predecessor is None:
            return None
        return self.space.in_half_open(key, self.predecessor.id, self.me.id)

    def known_nodes(self) -> list[NodeRef]:
        """Every successor and finger once, by clockwise distance from this node."""
        byid = {n.id: n for n in (*self._fr, *self.successors)}
        byid.pop(self.me.id, None)
        return sorted(byid.values(), key=lambda n: self.distance(n.id))

    def knows(self, node_id: int) -> bool:
        if self.predecessor is not None and self.predecessor.id == node_id:
            return True
        return any(s.id == node_id for s in self.successors) or any(
            f.id == node_id for f in self._fr
        )

    def closest_known_after_me(self) -> NodeRef | None:
        """The nearest node clockwise among everything known (a successor of last resort)."""
        known = self.known_nodes()
        return known[0] if known else self.predecessor

    def listed_successor(self, key: int) -> NodeRef | None:
        """The key's successor when the successor list settles it, else None.

        The list holds consecutive nodes, so a key up to its last entry succeeds to the
        first entry at or past it. (A key that is this node's own id is not settled here.)
        """
        succs = self.successors
        if not succs:
            return None
        me, m = self.me.id, self.space.modulus
        d = (key - me) % m
        if d == 0 or d > (succs[-1].id - me) % m:
            return None
        return succs[bisect_left(succs, d, key=lambda r: (r.id - me) % m)]

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
        succs = self.successors
        if not succs:
            return None
        m = self.space.modulus
        me = self.me.id
        d = (key - me) % m
        if d == 0:
            return None
        # The final hop: the first live successor at or past the key.
        for s in succs:
            if s.id in exclude:
                continue
            if d <= (s.id - me) % m:
                return s, True
            break
        best = _preceding_successor(succs, d, me, m, exclude)
        cand = _preceding(self._fr, self._f_hi, d >> self.space.top_shift, d, me, m, exclude)
        if cand is not None and (best is None or (cand.id - me) % m > (best.id - me) % m):
            best = cand
        return None if best is None else (best, False)

    # -- changing -------------------------------------------------------------------------

    def set_successors_from(self, head: NodeRef, tail: tuple[NodeRef, ...]) -> bool:
        """``set_successors((head, *tail))``, where ``tail`` is head's own successor list.

        A node asks its successor for that list at every stabilization and mostly gets the
        same one back. When the head and the list are those that settled the current list,
        nothing can change, and that is decided without building the candidate list:
        copying r references would write to r objects' reference counts, in a large
        simulation r cache misses per stabilization.
        """
        src = self._src
        if src is not None and head is self.successor and (tail is src or tail == src):
            return False
        changed = self.set_successors((head, *tail))
        # (only a list that head leads settles it: a later answer from the same successor)
        self._src = tail if self.successor is head else None
        return changed

    def set_successors(self, nodes: Iterable[NodeRef]) -> bool:
        """Replace the successor list: deduplicated, self removed, nearest first, at most r.

        Returns True if the immediate successor changed. Runs at every stabilization, where
        the list arrives already in order and mostly unchanged: one pass checks both.
        """
        old = self.successor
        cur = self.successors
        self._src = None
        if type(nodes) is not tuple:
            nodes = tuple(nodes)
        r = self.r
        me = self.me.id
        if len(cur) == r and nodes[:r] == cur:
            # The usual stabilization: nothing new (compared in C, by identity first), as long
            # as what follows is no nearer than our last (ids compared on the ring's order).
            last = cur[-1].id
            far = last < me
            for n in nodes[r:]:
                nid = n.id
                if nid != me and ((nid < me) == far and nid < last or far and nid > me):
                    break
            else:
                return False
        # The next usual case: the list came from our successor, so it is already in order
        # (ids ascending past ours, then ascending from 0) and free of repeats. Checking that
        # compares ids only; the general way below computes a distance (a new big number) and
        # hashes an id for every entry.
        out: list[NodeRef] = []
        wrapped, prev = False, -1
        for n in nodes:
            nid = n.id
            if nid == me:
                continue
            if nid < me:
                if not wrapped:
                    wrapped, prev = True, -1
            elif wrapped:
                break  # past us again: not in order
            if nid <= prev:
                break  # out of order, or a repeat
            prev = nid
            out.append(n)
        else:
            return self._replace_successors(tuple(out[:r]), old)
        m = self.space.modulus
        out = []
        seen: set[int] = set()
        prev, in_order = 0, True
        for n in nodes:
            nid = n.id
            if nid == me or nid in seen:
                continue
            seen.add(nid)
            d = (nid - me) % m
            if d < prev:
                in_order = False
            prev = d
            out.append(n)
        if not in_order:
            out.sort(key=lambda n: (n.id - me) % m)
        del out[r:]
        return self._replace_successors(tuple(out), old)

    def _replace_successors(self, new: tuple[NodeRef, ...], old: NodeRef | None) -> bool:
        if new != self.successors:
            self.successors = new
            self.successor = new[0] if new else None
        succ = self.successor
        return succ is not old and succ != old

    def set_predecessor(self, node: NodeRef | None) -> bool:
        if node is not None and node.id == self.me.id:
            node = None
        changed = node != self.predecessor
        self.predecessor = node
        return changed

    def set_finger(self, i: int, node: NodeRef) -> None:
        if not 0 <= i < self.space.bits:
            raise ValueError(f"finger index {i} outside 0..{self.space.bits - 1}")
        fi, fr, hi = self._fi, self._fr, self._f_hi
        pos = bisect_left(fi, i)
        present = pos < len(fi) and fi[pos] == i
        if node.id == self.me.id:
            if present:
                del fi[pos], fr[pos], hi[pos]
        elif present:
            fr[pos] = node
            hi[pos] = self.distance(node.id) >> self.space.top_shift
        else:
            fi.insert(pos, i)
            fr.insert(pos, node)
            hi.insert(pos, self.distance(node.id) >> self.space.top_shift)

    def remove(self, node_id: int) -> bool:
        """Forget a node everywhere (it is suspected dead or left). True if successor changed."""
        old = self.successor
        # Both tables are ordered by distance, and the fingers' distances are at hand as
        # numbers in an array: the node's distance rules most of them out before any entry
        # is read (each entry read is a NodeRef, and its id, somewhere in memory).
        d = self.distance(node_id)
        succs = self.successors
        if (succs and d <= self.distance(succs[-1].id)
                and any(s.id == node_id for s in succs)):
            self.successors = tuple(s for s in succs if s.id != node_id)
            self._src = None
            self.successor = self.successors[0] if self.successors else None
        if self.predecessor is not None and self.predecessor.id == node_id:
            self.predecessor = None
        if (d >> self.space.top_shift) in self._f_hi and any(f.id == node_id for f in self._fr):
            # (by position: mypyc cannot zip a bytearray, see ring.compiled)
            fi, fr, hi = self._fi, self._fr, self._f_hi
            keep = [k for k in range(len(fr)) if fr[k].id != node_id]
            self._fi = bytearray([fi[k] for k in keep])
            self._fr = [fr[k] for k in keep]
            self._f_hi = array("Q", [hi[k] for k in keep])
        return self.successor != old


def _preceding_successor(succs: tuple[NodeRef, ...], d: int, me: int, m: int,
                         exclude: frozenset[int]) -> NodeRef | None:
    """The farthest successor strictly before distance d (the list is sorted by distance)."""
    j = len(succs) - 1
    if (succs[j].id - me) % m >= d:
        j = bisect_left(succs, d, key=lambda r: (r.id - me) % m) - 1
    while j >= 0:
        cand = succs[j]
        if cand.id not in exclude:
            return cand
        j -= 1
    return None


def _preceding(refs: list[NodeRef], hi: array, dk: int, d: int, me: int, m: int,
               exclude: frozenset[int]) -> NodeRef | None:
    """The farthest entry of a distance-ordered table strictly before distance d."""
    j = bisect_left(hi, dk) - 1  # entries up to j have smaller top bits, so smaller distance
    last = len(hi) - 1
    while j < last and hi[j + 1] == dk and (refs[j + 1].id - me) % m < d:
        j += 1  # same top bits as the key: decide exactly
    while j >= 0:
        cand = refs[j]
        # A table out of order (churn) may put a farther node early: never return it.
        if cand.id not in exclude and (cand.id - me) % m < d:
            return cand
        j -= 1
    return None
