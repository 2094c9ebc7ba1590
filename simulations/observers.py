"""Periodic looks at the whole simulated ring, as an omniscient observer would take them.

``RingObserver`` records, every ``every`` seconds, how many nodes are active and how much of
their routing state is right: the fraction whose successor and predecessor are the true
ones, and, for a seeded sample of nodes, the fraction of stored fingers that point at the
true successor of their start. These are the quantities analyses of Chord under churn
predict, so a run can be checked against theory as well as against the paper.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ring.node import NodeState

from .driver import Simulation


class RingObserver:
    def __init__(self, sim: Simulation, sink: Callable[[dict[str, Any]], None], *, every: float,
                 start: float, stop: float, finger_sample: int = 100, seed: int = 0) -> None:
        if every <= 0:
            raise ValueError("observer interval must be positive")
        if finger_sample < 0:
            raise ValueError("finger_sample must be >= 0")
        self.sim, self.sink, self.every, self.stop = sim, sink, every, stop
        self.finger_sample = finger_sample
        self.rng = random.Random(seed)
        self.records: list[dict[str, Any]] = []
        self._last_sent = 0
        self._last_t = start
        sim.kernel.at(start, self._tick)

    def observe(self) -> dict[str, Any]:
        sim = self.sim
        truth = sim.truth
        ids = truth.ids
        n = len(ids)
        succ_ok = pred_ok = custody = 0
        for k, x in enumerate(ids):
            node = sim.nodes[sim.by_id[x]]
            if node is None:
                continue
            t = node.table
            s, p = t.successor, t.predecessor
            if n == 1:
                succ_ok += s is None or s.id == x
                pred_ok += p is None or p.id == x
            else:
                succ_ok += s is not None and s.id == ids[(k + 1) % n]
                pred_ok += p is not None and p.id == ids[k - 1]
            custody += node.custody_count
        fingers = checked = 0
        if n > 1 and self.finger_sample:
            space = sim.space
            for x in self.rng.sample(ids, min(self.finger_sample, n)):
                node = sim.nodes[sim.by_id[x]]
                if node is None:
                    continue
                for i, f in list(node.table.fingers.items()):
                    checked += 1
                    fingers += truth.successor(space.finger_start(x, i)) == f.id
        alive = sum(1 for nd in sim.nodes if nd is not None)
        joining = sum(1 for nd in sim.nodes if nd is not None and nd.state is NodeState.JOINING)
        now = sim.now
        sent = sim.net.sent
        dt = now - self._last_t
        rec = {
            "type": "ring", "t": round(now, 6), "active": n, "alive": alive, "joining": joining,
            "succ_ok": round(succ_ok / n, 6) if n else None,
            "pred_ok": round(pred_ok / n, 6) if n else None,
            "fingers_ok": round(fingers / checked, 6) if checked else None,
            "custody": custody,
            "msgs_per_node_s": round((sent - self._last_sent) / dt / n, 4) if dt > 0 and n else None,
        }
        self._last_sent, self._last_t = sent, now
        return rec

    def _tick(self, *_: Any) -> None:
        rec = self.observe()
        self.records.append(rec)
        self.sink(rec)
        nxt = self.sim.now + self.every
        if nxt <= self.stop + 1e-9:
            self.sim.kernel.at(nxt, self._tick)
