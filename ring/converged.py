"""The routing state a converged ring has, installed directly.

Static experiments (path length against N, memory at 10**6 nodes) need a correct ring, not
the story of how it formed: joining 10**6 nodes one by one would take hours and measure
nothing they ask about. This computes each node's successor list, predecessor and fingers
from the sorted ids and installs them through the routing table's own methods: exactly the
state that stabilize and fix_fingers converge to. Routing afterwards is the real core's.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from .messages import NodeRef
from .routing import RoutingTable


def install_converged_tables(tables: Sequence[RoutingTable], refs: Sequence[NodeRef]) -> None:
    """Fill ``tables[k]`` (the table of ``refs[k]``); ``refs`` must be sorted by id."""
    n = len(refs)
    if n != len(tables):
        raise ValueError("one table per node")
    if n < 2:
        return
    ids = [r.id for r in refs]
    if any(a >= b for a, b in zip(ids, ids[1:])):
        raise ValueError("refs must be sorted by id, without duplicates")
    for k, t in enumerate(tables):
        if t.me.id != ids[k]:
            raise ValueError(f"table {k} does not belong to node {k}")
        space = t.space
        m, bits = space.modulus, space.bits
        me = ids[k]
        t.set_successors(refs[(k + j) % n] for j in range(1, min(t.r, n - 1) + 1))
        t.set_predecessor(refs[k - 1])
        i = t.first_finger_index()
        while i < bits:
            p = bisect_left(ids, (me + (1 << i)) % m) % n
            d = (ids[p] - me) % m
            if d == 0:
                break
            top = min(d.bit_length(), bits)  # every finger j with 2**j <= d is this node too
            for j in range(i, top):
                t.set_finger(j, refs[p])
            i = top
