"""The cyclic garbage collector's first threshold, raised for a forwarding node.

A node allocates a handful of short-lived objects per stanza (the decoded envelope, its
custody record, the forwarded copy), all freed by reference counting within milliseconds.
CPython still counts them towards a collection of the youngest generation: with the default
threshold (700 allocations) the envelopes in flight keep triggering collections, which then
walk everything in custody. That cost B of bench_live about 1 us per forwarded stanza (a
sixth of its CPU). At 50,000 collections become rare while cyclic garbage (which the node
makes little of) is still collected, and memory stays bounded.
"""

from __future__ import annotations

import gc

FIRST_THRESHOLD = 50_000


def raise_first_threshold(first: int = FIRST_THRESHOLD) -> None:
    """Raise the youngest generation's threshold to ``first`` (never lower it)."""
    t0, t1, t2 = gc.get_threshold()
    if t0 and t0 < first:
        gc.set_threshold(first, t1, t2)
