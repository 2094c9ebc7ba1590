from hypothesis import given
from hypothesis import strategies as st

import pytest

from ring.keyspace import KeySpace

SMALL = KeySpace(6)  # 64 points: small enough to compare with brute force


def brute_open(x, a, b, m):
    """Walk clockwise from a (exclusive) to b (exclusive)."""
    pts, p = set(), (a + 1) % m
    while p != b:
        pts.add(p)
        p = (p + 1) % m
    if a == b:
        pts = set(range(m)) - {a}
    return x in pts


ids6 = st.integers(0, 63)


@given(ids6, ids6, ids6)
def test_in_open_matches_a_clockwise_walk(x, a, b):
    assert SMALL.in_open(x, a, b) == brute_open(x, a, b, 64)


@given(ids6, ids6, ids6)
def test_in_half_open_is_open_plus_the_end(x, a, b):
    want = brute_open(x, a, b, 64) or x == b
    if a == b:
        want = True  # a lone node owns the whole circle
    assert SMALL.in_half_open(x, a, b) == want


@given(st.integers(1, 256).flatmap(lambda bits: st.tuples(
    st.just(bits), st.integers(0, (1 << bits) - 1), st.integers(0, (1 << bits) - 1))))
def test_distance_is_clockwise_and_complementary(t):
    bits, a, b = t
    ks = KeySpace(bits)
    d = ks.distance(a, b)
    assert 0 <= d < ks.modulus
    assert (a + d) % ks.modulus == b
    assert (d + ks.distance(b, a)) % ks.modulus == 0


@given(st.integers(0, (1 << 160) - 1))
def test_id_bytes_round_trip(x):
    ks = KeySpace()
    assert ks.from_bytes(ks.to_bytes(x)) == x
    assert len(ks.to_bytes(x)) == 20


def test_hash_lands_in_the_space():
    for bits in (1, 7, 64, 160, 256):
        ks = KeySpace(bits)
        assert 0 <= ks.hash_bytes(b"x") < ks.modulus


def test_bad_spaces_and_ids_are_refused():
    with pytest.raises(ValueError, match="1..256"):
        KeySpace(0)
    with pytest.raises(ValueError, match="outside"):
        KeySpace(8).check(256)
    with pytest.raises(ValueError, match="must be 1 bytes"):
        KeySpace(8).from_bytes(b"\x00\x01")


def test_finger_start_wraps():
    assert SMALL.finger_start(60, 3) == 4
    assert SMALL.finger_start(0, 5) == 32
