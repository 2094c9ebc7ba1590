"""A destination remembers delivered envelopes (seen_capacity, seen_ttl) to drop duplicates,
and forgets the oldest first."""

import random

from ring.config import RingConfig
from ring.events import Delivered
from ring.messages import Envelope, NodeRef
from ring.node import RingNode

M = RingConfig().space.modulus
A, B = NodeRef(M // 4, "a"), NodeRef(M // 2, "b")


def _destination(**cfg) -> RingNode:
    b = RingNode(B, RingConfig(expected_nodes=4, **cfg), rng=random.Random(1))
    b.create(0.0)
    b.table.set_successors([A])
    b.table.set_predecessor(A)
    b.take_outputs()
    return b


def _env(i: int) -> Envelope:
    return Envelope(i, A.id, B.id - 7, 9, 1, 0, b"<message/>")


def _delivered(b: RingNode) -> list[int]:
    return [e.envelope.msg_id for e in b.take_events() if type(e) is Delivered]


def test_at_capacity_the_oldest_sixteenth_is_forgotten_and_the_rest_still_dropped():
    b = _destination(seen_capacity=64)
    b.handle_messages(A, [_env(i) for i in range(65)], 1.0)
    assert _delivered(b) == list(range(65))
    assert len(b._done) == 65 - 4  # noqa: SLF001 - one sixteenth of 64 went at once
    b.handle_messages(A, [_env(i) for i in (3, 4, 40, 64)], 2.0)
    assert _delivered(b) == [3]  # only a forgotten one comes through again
    assert b.stats.duplicates == 3


def test_a_small_capacity_forgets_one_at_a_time():
    b = _destination(seen_capacity=8)
    b.handle_messages(A, [_env(i) for i in range(10)], 1.0)
    assert len(b._done) == 8  # noqa: SLF001
    b.handle_messages(A, [_env(0), _env(9)], 2.0)
    assert _delivered(b)[-1:] == [0]


def test_remembered_keys_expire_after_seen_ttl():
    b = _destination(seen_ttl=10.0)
    b.handle_messages(A, [_env(i) for i in range(5)], 1.0)
    b.handle_messages(A, [_env(i) for i in range(5, 8)], 6.0)
    b._prune_done(11.5)  # noqa: SLF001 - the periodic step handle_timer runs
    assert len(b._done) == 3  # noqa: SLF001 - the first five expired at 11.0
    b.handle_messages(A, [_env(0), _env(7)], 12.0)
    assert _delivered(b)[-1:] == [0]
    b._prune_done(22.5)  # noqa: SLF001
    assert b._done is None  # noqa: SLF001 - nothing left: the dict is dropped
