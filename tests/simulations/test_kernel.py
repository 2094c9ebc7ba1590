import pytest

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
