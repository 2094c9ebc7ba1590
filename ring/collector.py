"""Garbage collector settings for a long-running routing process (an edge or ring node).

Why: such a process allocates a few short-lived objects per stanza, which reference counting
frees at once, and holds thousands in flight: envelopes in custody, stanzas awaiting their
delivery confirmation, outputs queued for a link. With CPython's default thresholds (a young
collection every 700 allocations, a full one every 100 young ones or so) those in-flight
objects are scanned again and again, and every full collection also walks the ~40,000
objects that imports and start-up left behind: an edge at 30,000 stanzas/s spent 3 to 4 us
of its 24 us per stanza collecting garbage (``python -m benchmarks.bench_edge`` prints the
figure per process). Collecting ~70 times less often, and moving what start-up made out of
the collector's sight, costs a little memory and nothing else: reference cycles are still
collected, only later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)
MIDDLE_THRESHOLD = 20  # young collections per middle one (default 10)
OLD_THRESHOLD = 100  # middle collections per full one (default 10)


def tune_for_routing() -> None:
    """Call once the process has imported and started what it needs (from its entry point,
    never from a library: the settings are the whole process's)."""
    gc.collect()
    gc.freeze()  # start-up objects live as long as the process: never scan them again
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
