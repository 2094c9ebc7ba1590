import random

import pytest

from ring.keyspace import KeySpace
from simulations.workload import KeyChooser


def test_zipf_ranks_follow_the_power_law():
    kc = KeyChooser(KeySpace(), random.Random(3), dist="zipf", s=1.0, population=100)
    counts = [0] * 100
    n = 50_000
    for _ in range(n):
        counts[kc.rank()] += 1
    h = sum(1 / r for r in range(1, 101))
    for r in (1, 2, 5, 10, 50):
        assert counts[r - 1] / n == pytest.approx(1 / r / h, rel=0.1)
    keys = {kc() for _ in range(2000)}
    assert len(keys) < 100 and all(0 <= k < 2**160 for k in keys)


def test_uniform_keys_cover_the_circle():
    kc = KeyChooser(KeySpace(16), random.Random(1))
    xs = [kc() for _ in range(20_000)]
    assert all(0 <= x < 2**16 for x in xs)
    quarters = [sum(q * 2**14 <= x < (q + 1) * 2**14 for x in xs) / len(xs) for q in range(4)]
    assert all(0.23 < f < 0.27 for f in quarters)


@pytest.mark.parametrize("kw,msg", [({"dist": "normal"}, "unknown key distribution"),
                                    ({"dist": "zipf", "s": 0}, "positive"),
                                    ({"dist": "zipf", "population": 0}, "population")])
def test_bad_key_distributions(kw, msg):
    with pytest.raises(ValueError, match=msg):
        KeyChooser(KeySpace(), random.Random(1), **kw)
