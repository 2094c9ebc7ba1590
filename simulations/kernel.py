"""The discrete-event kernel: events ``(time, seq, fn, a, b, c)`` in time order, a virtual clock.

Why not trio (or asyncio)? Their schedulers are free to order ready tasks as they like, and
trio randomises on purpose; a simulation must give the same trace for the same seed, byte
for byte. Here two events at the same instant run in the order they were scheduled: the
sequence number breaks every tie, so the callable is never compared.

Events carry up to three positional arguments instead of a closure or an args tuple: one
tuple per event, nothing else allocated, which is what makes ~10^6 events/s reachable.

Time is cut into windows of ``bucket_span`` seconds. Events of a later window wait,
unsorted, in that window's bucket; when the clock reaches a window, its bucket is sorted
once (``list.sort`` compares tuples of floats in C, several times faster per comparison
than ``heapq``, which calls the generic comparison for every step down a heap) and read in
order. Only events scheduled into the window already being read -- a message whose latency
is shorter than what is left of the window -- go to a small heap, merged with the sorted
run as it is read. With the default span of 1/128 s and the usual latencies of several
milliseconds that heap is nearly always empty. (One heap of all pending events was the
first design: at 10^5 nodes every push and pop walked 17 levels of a heap no cache holds.)

The buckets of the next ``slots`` windows (64 s by default: every message and maintenance
timer of a simulation) sit in a ring of lists indexed by window number, so scheduling an
event is an index and an append; windows further out wait in a dict, with a heap of their
numbers, and join the ring's bucket of their window when the clock reaches it.

The order is exactly that of a single heap ordered by (time, seq): a window's events all
precede the next window's, and within a window the sorted run and the heap are merged by
the same key.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

from .errors import EventLimitExceeded as EventLimitExceeded

Handler = Callable[[Any, Any, Any], None]
Event = tuple[float, int, Handler, Any, Any, Any]


class Kernel:
    """Virtual time and the pending events, nothing else. See the module docstring."""

    __slots__ = ("now", "events_run", "max_events", "_seq", "_span", "_per_span", "_horizon",
                 "_run", "_pos", "_heap", "_cur", "_slots", "_mask", "_in_slots", "_far",
                 "_far_keys")

    def __init__(self, *, max_events: int = 2_000_000_000, bucket_span: float = 1 / 128,
                 slots: int = 8192) -> None:
        if max_events < 1:
            raise ValueError("max_events must be positive")
        if not (bucket_span > 0 and math.frexp(bucket_span)[0] == 0.5):
            # A power of two scales floats exactly: t // span and k * span never round, so
            # an event can never land on the wrong side of the horizon.
            raise ValueError("bucket_span must be a power of two (e.g. 0.25, 1.0, 4.0)")
        if slots < 1 or slots & (slots - 1):
            raise ValueError("slots must be a power of two")
        self.now = 0.0
        self.events_run = 0
        self.max_events = max_events
        self._seq = 0
        self._span = bucket_span
        self._per_span = 1.0 / bucket_span
        self._cur = 0  # the number of the window being read
        self._horizon = bucket_span  # its end ((cur + 1) * span): earlier events go to _heap
        self._run: list[Event] = []  # the window's bucket, sorted; read from _pos on
        self._pos = 0
        self._heap: list[Event] = []  # events scheduled into the window while it is read
        # Window k's bucket, for cur < k < cur + slots, is _slots[k % slots] (None: empty).
        self._slots: list[list[Event] | None] = [None] * slots
        self._mask = slots - 1
        self._in_slots = 0  # events waiting in _slots
        self._far: dict[int, list[Event]] = {}  # buckets of windows further out, unsorted
        self._far_keys: list[int] = []  # heap of their window numbers

    def __len__(self) -> int:
        return (len(self._run) - self._pos + len(self._heap) + self._in_slots
                + sum(len(b) for b in self._far.values()))

    def at(self, t: float, fn: Handler, a: Any = None, b: Any = None, c: Any = None) -> None:
        """Run ``fn(a, b, c)`` at virtual time ``t`` (never earlier than now)."""
        if t < self.now:
            t = self.now
        self._seq += 1
        if t < self._horizon:
            heapq.heappush(self._heap, (t, self._seq, fn, a, b, c))
            return
        k = int(t * self._per_span)  # (t >= 0, and 1/span a power of two: exact)
        if k - self._cur <= self._mask:
            i = k & self._mask
            bucket = self._slots[i]
            if bucket is None:
                self._slots[i] = [(t, self._seq, fn, a, b, c)]
            else:
                bucket.append((t, self._seq, fn, a, b, c))
            self._in_slots += 1
            return
        far = self._far.get(k)
        if far is None:
            self._far[k] = [(t, self._seq, fn, a, b, c)]
            heapq.heappush(self._far_keys, k)
        else:
            far.append((t, self._seq, fn, a, b, c))

    def after(self, delay: float, fn: Handler, a: Any = None, b: Any = None,
              c: Any = None) -> None:
        self.at(self.now + delay, fn, a, b, c)

    def _next_window(self) -> int:
        """The number of the next window with events waiting (-1: none)."""
        k = -1
        if self._in_slots:
            slots, mask = self._slots, self._mask
            k = self._cur + 1
            while slots[k & mask] is None:  # (ends within `slots` steps: one is not None)
                k += 1
        keys = self._far_keys
        if keys and (k < 0 or keys[0] < k):
            k = keys[0]
        return k

    def next_time(self) -> float | None:
        run, pos, heap = self._run, self._pos, self._heap
        if pos < len(run):
            t = run[pos][0]
            return heap[0][0] if heap and heap[0][0] < t else t
        if heap:
            return heap[0][0]
        k = self._next_window()
        if k < 0:
            return None
        events = list(self._slots[k & self._mask] or ()) + self._far.get(k, [])
        return min(events)[0]

    def run(self, until: float, *, max_events: int | None = None) -> int:
        """Run every event due at or before ``until``; the clock ends at ``until``.

        Returns the number of events run. ``max_events`` (default: the kernel's limit,
        counted over its whole life) bounds a runaway scenario.
        """
        heap = self._heap
        pop = heapq.heappop
        span = self._span
        limit = self.max_events if max_events is None else self.events_run + max_events
        n = self.events_run
        run = self._run
        pos = self._pos
        end = len(run)
        try:
            while True:
                if pos < end:
                    ev = run[pos]
                    if heap and heap[0] < ev:
                        ev = heap[0]
                        if ev[0] > until:
                            break
                        pop(heap)
                    else:
                        if ev[0] > until:
                            break
                        pos += 1
                elif heap:
                    ev = heap[0]
                    if ev[0] > until:
                        break
                    pop(heap)
                else:
                    # The window is read: the next non-empty one, sorted, is the next.
                    k = self._next_window()
                    if k < 0 or k * span > until:
                        break
                    i = k & self._mask
                    near = self._slots[i]
                    if near is not None:  # (a far window's slot is empty: the scan passed it)
                        self._slots[i] = None
                        self._in_slots -= len(near)
                        run = near
                    else:
                        run = []
                    if self._far_keys and self._far_keys[0] == k:
                        pop(self._far_keys)
                        run += self._far.pop(k)
                    run.sort()
                    self._run = run
                    pos, end = 0, len(run)
                    self._cur = k
                    self._horizon = (k + 1) * span
                    continue
                t, _, fn, a, b, c = ev
                self.now = t
                fn(a, b, c)
                n += 1
                if n >= limit:
                    raise EventLimitExceeded(f"event limit of {limit} reached at t={t:.3f}")
        finally:
            if pos >= end and run:
                run = self._run = []  # (drop the read window's events)
                pos = 0
            self._pos = pos
            ran = n - self.events_run
            self.events_run = n
        if until > self.now:
            self.now = until
        return ran
