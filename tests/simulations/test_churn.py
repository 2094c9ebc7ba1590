"""Churn models against their distributions (fixed seeds: deterministic, but they fail if
the sampling is wrong)."""

import math
import random

import pytest

from ring.config import RingConfig
from simulations.churn import RateChurn, SessionChurn, SessionLength, mass_failure, partition
from simulations.driver import Simulation
from simulations.oracle import build_static_ring
from topology.latency import ConstantLatency


def _ks_statistic(samples, cdf):
    xs = sorted(samples)
    n = len(xs)
    return max(max((i + 1) / n - cdf(x), cdf(x) - i / n) for i, x in enumerate(xs))


@pytest.mark.parametrize("dist,shape,scale,cdf", [
    ("weibull", 0.5, 100.0, lambda x: 1 - math.exp(-((x / 100.0) ** 0.5))),
    ("weibull", 2.0, 50.0, lambda x: 1 - math.exp(-((x / 50.0) ** 2.0))),
    ("pareto", 1.5, 10.0, lambda x: 0.0 if x < 10 else 1 - (10.0 / x) ** 1.5),
    ("exponential", 1.0, 30.0, lambda x: 1 - math.exp(-x / 30.0)),
])
def test_session_lengths_follow_their_distribution(dist, shape, scale, cdf):
    s = SessionLength(dist, scale, shape)
    rng = random.Random(7)
    xs = [s.draw(rng) for _ in range(4000)]
    # Kolmogorov-Smirnov at alpha = 0.01: critical value 1.63 / sqrt(n)
    assert _ks_statistic(xs, cdf) < 1.63 / math.sqrt(len(xs))


def test_session_means():
    assert SessionLength("weibull", 100.0, 0.5).mean == pytest.approx(200.0)
    assert SessionLength("pareto", 10.0, 2.0).mean == pytest.approx(20.0)
    assert SessionLength("pareto", 10.0, 1.0).mean == math.inf
    with pytest.raises(ValueError):
        SessionLength("lognormal", 1.0)
    with pytest.raises(ValueError):
        SessionLength("weibull", -1.0)


def _sim(n=200, seed=3):
    sim = Simulation(RingConfig(expected_nodes=n, stabilize_interval=5, fix_fingers_interval=5,
                                check_predecessor_interval=5),
                     seed=seed, latency=ConstantLatency(10), ids="hash")
    idx = build_static_ring(sim, n, maintain=True)
    return sim, idx


def test_rate_churn_counts_are_poisson():
    sim, _ = _sim()
    ch = RateChurn(sim, join_rate=0.5, fail_rate=0.25, start=0.0, stop=400.0, seed=9)
    sim.run(400.0)
    # Poisson counts: mean rate*T, sd sqrt(rate*T); allow 4 sd
    assert abs(ch.joined - 200) < 4 * math.sqrt(200)
    assert abs(ch.failed - 100) < 4 * math.sqrt(100)
    assert sim.crashes == ch.failed
    assert len(sim.truth) == pytest.approx(200 + ch.joined - ch.failed, abs=10)


def test_session_churn_population_and_recorded_sessions():
    sim, idx = _sim(n=100)
    ch = SessionChurn(sim, arrival_rate=1.0, session=SessionLength("exponential", 100.0),
                      start=0.0, stop=600.0, seed=4, initial=idx)
    sim.run(600.0)
    # Little's law: the population settles around rate * mean session = 100
    assert 60 < len(sim.truth) < 140
    assert abs(ch.arrived - 600) < 4 * math.sqrt(600)
    assert ch.ended >= 100


def test_mass_failure_and_partition_fractions():
    sim, _ = _sim(n=200)
    victims = mass_failure(sim, 0.3, random.Random(1))
    assert len(victims) == 60 and len(set(victims)) == 60
    assert len(sim.truth) == 140 and all(not sim.alive(i) for i in victims)
    side1 = partition(sim, 0.25, random.Random(2))
    assert side1 == 50 and sum(sim.net.group) == 50
    with pytest.raises(ValueError):
        mass_failure(sim, 1.0, random.Random(1))
