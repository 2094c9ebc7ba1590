"""Who arrives, who leaves and when: churn processes and one-off disruptions.

- ``RateChurn``: joins and failures as two independent Poisson processes (rates per second),
  each failure hitting a uniformly chosen live node. This is the Chord paper's model for
  "lookups during churn" (Fig. 12: 500 nodes, R from 0.01/s to 0.1/s).
- ``SessionChurn``: Poisson arrivals, each node staying for a session drawn from a
  heavy-tailed distribution (Weibull or Pareto, as measured in deployed P2P systems), or an
  exponential one; at its end a node fails, or leaves gracefully with ``leave_fraction``.
- ``mass_failure``: a fraction p of live nodes fails at one instant (Fig. 11).
- ``partition``/``heal``: the network splits into sides; messages across are dropped.

Every draw comes from the churn's own seeded RNG, so changing the workload does not change
which nodes fail.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ring.events import JoinFailed

from .driver import Simulation

JOIN_RETRIES = 3
JOIN_RETRY_DELAY = 5.0


@dataclass(frozen=True)
class SessionLength:
    """A session-length distribution: ``weibull`` (shape k, scale), ``pareto`` (shape alpha,
    scale x_m = the minimum), or ``exponential`` (scale = mean)."""

    dist: str
    scale: float
    shape: float = 1.0

    def __post_init__(self) -> None:
        if self.dist not in ("weibull", "pareto", "exponential"):
            raise ValueError(f"unknown session distribution {self.dist!r} "
                             "(weibull, pareto, exponential)")
        if self.scale <= 0 or self.shape <= 0:
            raise ValueError("session scale and shape must be positive")

    def draw(self, rng: random.Random) -> float:
        if self.dist == "weibull":
            return rng.weibullvariate(self.scale, self.shape)
        if self.dist == "pareto":
            return self.scale * rng.paretovariate(self.shape)
        return rng.expovariate(1.0 / self.scale)

    @property
    def mean(self) -> float:
        if self.dist == "weibull":
            return self.scale * math.gamma(1.0 + 1.0 / self.shape)
        if self.dist == "pareto":
            return math.inf if self.shape <= 1 else self.shape * self.scale / (self.shape - 1)
        return self.scale


class _Joiner:
    """Starts new nodes through a random active node, retrying a failed join elsewhere."""

    def __init__(self, sim: Simulation, rng: random.Random) -> None:
        self.sim = sim
        self.rng = rng
        self.attempts: dict[int, int] = {}
        self.failed = 0
        sim.listen(JoinFailed, self._on_failed)

    def start(self) -> int | None:
        sim = self.sim
        i = sim.spawn()
        if len(sim.truth) == 0:
            sim.create(i)
            return i
        self.attempts[i] = 1
        self._join(i)
        return i

    def _join(self, i: int) -> None:
        sim = self.sim
        ids = sim.truth.ids
        if not ids:
            sim.create(i)
            return
        via = sim.by_id[ids[self.rng.randrange(len(ids))]]
        sim.join(i, via)

    def _on_failed(self, i: int, _e: object) -> None:
        n = self.attempts.get(i, 0)
        if n >= JOIN_RETRIES:
            self.failed += 1
            self.sim.crash(i)  # gives up: gone, like a user who closed the client
            return
        self.attempts[i] = n + 1
        self.sim.kernel.after(JOIN_RETRY_DELAY, self._retry, i)

    def _retry(self, i: int, _b: object, _c: object) -> None:
        if self.sim.alive(i):
            self._join(i)


class RateChurn:
    """Poisson joins at ``join_rate``/s and Poisson failures at ``fail_rate``/s."""

    def __init__(self, sim: Simulation, *, join_rate: float, fail_rate: float, start: float,
                 stop: float, seed: int, leave_fraction: float = 0.0) -> None:
        if join_rate < 0 or fail_rate < 0:
            raise ValueError("churn rates must be >= 0")
        if not 0 <= leave_fraction <= 1:
            raise ValueError("leave_fraction must be in [0, 1]")
        self.sim = sim
        self.rng = random.Random(seed)
        self.join_rate, self.fail_rate, self.stop = join_rate, fail_rate, stop
        self.leave_fraction = leave_fraction
        self.joiner = _Joiner(sim, self.rng)
        self.joined = self.failed = 0
        if join_rate > 0:
            sim.kernel.at(start + self.rng.expovariate(join_rate), self._join)
        if fail_rate > 0:
            sim.kernel.at(start + self.rng.expovariate(fail_rate), self._fail)

    def _join(self, *_: object) -> None:
        k = self.sim.kernel
        if k.now > self.stop:
            return
        self.joiner.start()
        self.joined += 1
        k.after(self.rng.expovariate(self.join_rate), self._join)

    def _fail(self, *_: object) -> None:
        sim = self.sim
        k = sim.kernel
        if k.now > self.stop:
            return
        ids = sim.truth.ids
        if len(ids) > 1:
            i = sim.by_id[ids[self.rng.randrange(len(ids))]]
            if self.leave_fraction and self.rng.random() < self.leave_fraction:
                sim.leave(i)
            else:
                sim.crash(i)
            self.failed += 1
        k.after(self.rng.expovariate(self.fail_rate), self._fail)


class SessionChurn:
    """Poisson arrivals at ``arrival_rate``/s; each node lives for one drawn session.

    Nodes present at the start get sessions too (drawn afresh, not as residual lifetimes:
    the population then settles towards ``arrival_rate * mean session`` over a few sessions).
    """

    def __init__(self, sim: Simulation, *, arrival_rate: float, session: SessionLength,
                 start: float, stop: float, seed: int, leave_fraction: float = 0.0,
                 initial: list[int] | None = None) -> None:
        if arrival_rate < 0:
            raise ValueError("arrival_rate must be >= 0")
        if not 0 <= leave_fraction <= 1:
            raise ValueError("leave_fraction must be in [0, 1]")
        self.sim = sim
        self.rng = random.Random(seed)
        self.rate, self.session, self.stop = arrival_rate, session, stop
        self.leave_fraction = leave_fraction
        self.joiner = _Joiner(sim, self.rng)
        self.arrived = self.ended = 0
        self.sessions: list[float] = []
        for i in initial or ():
            self._schedule_end(i, start)
        if arrival_rate > 0:
            sim.kernel.at(start + self.rng.expovariate(arrival_rate), self._arrive)

    def _schedule_end(self, i: int, t0: float) -> None:
        length = self.session.draw(self.rng)
        self.sessions.append(length)
        self.sim.kernel.at(t0 + length, self._end, i)

    def _arrive(self, *_: object) -> None:
        k = self.sim.kernel
        if k.now > self.stop:
            return
        i = self.joiner.start()
        self.arrived += 1
        if i is not None:
            self._schedule_end(i, k.now)
        k.after(self.rng.expovariate(self.rate), self._arrive)

    def _end(self, i: int, *_: object) -> None:
        sim = self.sim
        if not sim.alive(i) or sim.kernel.now > self.stop:
            return
        self.ended += 1
        if self.leave_fraction and self.rng.random() < self.leave_fraction:
            sim.leave(i)
        else:
            sim.crash(i)


def mass_failure(sim: Simulation, fraction: float, rng: random.Random) -> list[int]:
    """Crash a fraction of the live active nodes at this instant; returns who failed."""
    if not 0 <= fraction < 1:
        raise ValueError("failure fraction must be in [0, 1)")
    live = sim.active_indices()
    victims = rng.sample(live, round(fraction * len(live)))
    for i in victims:
        sim.crash(i)
    return victims


def partition(sim: Simulation, fraction: float, rng: random.Random) -> int:
    """Split the network in two: a random ``fraction`` of nodes on side 1, the rest on side 0.
    Returns the size of side 1. Nodes created during the partition join side 0."""
    if not 0 < fraction < 1:
        raise ValueError("partition fraction must be in (0, 1)")
    n = len(sim.nodes)
    sides = [0] * n
    for i in rng.sample(range(n), round(fraction * n)):
        sides[i] = 1
    sim.net.partition(sides)
    return sum(sides)


def heal(sim: Simulation) -> None:
    sim.net.heal()
