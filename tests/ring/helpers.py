"""Shared helpers for ring tests: build converged in-memory rings."""

from __future__ import annotations

from ring.config import RingConfig
from ring.memcluster import InMemoryCluster


def build_ring(n: int, *, seed: int = 1, fingers: bool = True, **cfg: object) -> InMemoryCluster:
    """A ring of n cores built by joins, run until successors (and fingers) are right."""
    cluster = InMemoryCluster(RingConfig(expected_nodes=max(n, 2), **cfg), seed=seed)  # type: ignore[arg-type]
    for _ in range(n):
        cluster.add_node()
        cluster.run_for(0.02)
    assert cluster.run_until(cluster.converged, timeout=600), f"{n}-node ring did not converge"
    if fingers:
        assert cluster.run_until(cluster.fingers_correct, timeout=600), "fingers did not settle"
    cluster.events.clear()
    return cluster
