import heapq

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulations.kernel import EventLimitExceeded, Kernel


def test_events_run_in_time_order_and_ties_in_insertion_order():
    k = Kernel()
    seen = []
    for t, tag in [(2.0, "c"), (1.0, "a"), (2.0, "d"), (1.0, "b"), (0.5, "first")]:
        k.at(t, lambda tag, _b, _c: seen.append((k.now, tag)), tag)
    assert k.run(10.0) == 5
    assert seen == [(0.5, "first"), (1.0, "a"), (1.0, "b"), (2.0, "c"), (2.0, "d")]
    assert k.now == 10.0


def test_run_stops_at_until_and_keeps_later_events():
    k = Kernel()
    seen = []
    k.at(1.0, lambda *_: seen.append(1))
    k.at(5.0, lambda *_: seen.append(5))
    k.run(3.0)
    assert seen == [1] and k.now == 3.0 and len(k) == 1
    k.run(5.0)
    assert seen == [1, 5]


def test_events_scheduled_from_handlers_and_in_the_past_run_now():
    k = Kernel()
    seen = []

    def chain(n, _b, _c):
        seen.append((round(k.now, 6), n))
        if n < 3:
            k.after(0.25, chain, n + 1)
            k.at(k.now - 100, lambda *_: seen.append((round(k.now, 6), "past")))

    k.at(1.0, chain, 0)
    k.run(10.0)
    assert seen[0] == (1.0, 0)
    assert (1.0, "past") in seen
    assert seen[-1] == (1.75, 3)


def test_event_limit_stops_a_runaway():
    k = Kernel(max_events=100)

    def forever(*_):
        k.after(0.0, forever)

    k.at(0.0, forever)
    with pytest.raises(EventLimitExceeded):
        k.run(1.0)
    assert k.events_run == 100


def test_bad_limit_rejected():
    with pytest.raises(ValueError):
        Kernel(max_events=0)


def test_bucket_span_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        Kernel(bucket_span=0.3)
    Kernel(bucket_span=0.25)
    with pytest.raises(ValueError, match="slots"):
        Kernel(slots=6)


@settings(max_examples=60, deadline=None)
@given(plan=st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 2.0, 0.999, 3.75, 40.0, 1e-9]),
                               st.integers(0, 3)), min_size=1, max_size=60),
       span=st.sampled_from([0.25, 1.0, 4.0]),
       slots=st.sampled_from([1, 2, 8, 8192]),
       stops=st.lists(st.floats(0, 200), max_size=4))
def test_the_order_is_that_of_one_heap_over_time_and_insertion(plan, span, slots, stops):
    """Near events in the heap, later ones in the ring's buckets, far ones in the dict's:
    the trace equals a plain heap's."""
    def trace(kernel_cls):
        k = kernel_cls()
        seen = []
        todo = iter(range(10_000))

        def ev(tag, depth, _):
            seen.append((k.now, tag))
            if depth:
                for delay, d in plan[tag % len(plan):][:2]:
                    k.after(delay, ev, next(todo), min(depth - 1, d))

        for i, (delay, depth) in enumerate(plan):
            k.at(delay * (i % 3), ev, next(todo), depth)
        for until in sorted(stops):
            k.run(until)
            seen.append(("pending", len(k), k.next_time()))
        k.run(10_000.0)
        return seen

    class OneHeap:
        def __init__(self):
            self.now, self.heap, self.seq = 0.0, [], 0

        def at(self, t, fn, a=None, b=None, c=None):
            self.seq += 1
            heapq.heappush(self.heap, (max(t, self.now), self.seq, fn, a, b, c))

        def after(self, d, fn, a=None, b=None, c=None):
            self.at(self.now + d, fn, a, b, c)

        def __len__(self):
            return len(self.heap)

        def next_time(self):
            return self.heap[0][0] if self.heap else None

        def run(self, until):
            while self.heap and self.heap[0][0] <= until:
                t, _, fn, a, b, c = heapq.heappop(self.heap)
                self.now = t
                fn(a, b, c)
            self.now = max(self.now, until)

    bucketed = trace(lambda: Kernel(bucket_span=span, slots=slots))
    assert bucketed == trace(OneHeap)
    assert len(bucketed) >= len(plan)
