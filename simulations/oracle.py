"""Build a converged ring directly, without running joins: the "oracle" construction.

Static experiments (path length against N up to 2^16, the 10^6-node memory benchmark) need
a correct ring, not the story of how it formed; joining 10^6 nodes one by one would take
hours and measure nothing the experiment asks about. The oracle computes each node's
successor list, predecessor and fingers from the sorted ids and installs them through the
core's own ``RoutingTable`` methods (``set_successors``, ``set_predecessor``,
``set_finger``), exactly the state fix_fingers and stabilize would converge to. Routing
afterwards is the real core's ``lookup``/``send``/``probe``/``next_hop``. The tables are
filled by ``ring.converged``, the same code the in-memory cluster uses.

With ``maintain=True`` each core first calls ``create`` at a random instant within one
stabilization interval (which only starts its maintenance timers), so stabilize, fix
fingers and check predecessor run as usual from then on: the starting point of the
failure experiments, which the Chord paper also begins from a stable ring.
"""

from __future__ import annotations

from ring.converged import install_converged_tables
from ring.node import NodeState

from .driver import Simulation


def build_static_ring(sim: Simulation, n: int, *, maintain: bool = False,
                      progress: object | None = None) -> list[int]:
    """Spawn ``n`` nodes and install a converged ring among them; returns their indices."""
    if n < 1:
        raise ValueError("a ring needs at least one node")
    idx = [sim.spawn() for _ in range(n)]
    if progress is not None:
        progress.update(n)  # type: ignore[attr-defined]
    order = sorted(idx, key=lambda i: sim.refs[i].id)
    ids = [sim.refs[i].id for i in order]
    nodes = [sim.nodes[i] for i in order]
    install_converged_tables([node.table for node in nodes], [sim.refs[i] for i in order])  # type: ignore[union-attr]
    interval = sim.config.stabilize_interval
    for node in nodes:
        assert node is not None
        if maintain:
            node.create(sim.now + sim.rng.random() * interval)
        else:
            node.state = NodeState.ACTIVE
    truth = sim.truth
    truth.ids = sorted(set(truth.ids).union(ids))
    for i in order:
        if maintain:
            sim.kick(i)
    return idx
