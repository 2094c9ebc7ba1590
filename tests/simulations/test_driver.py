"""The driver runs the real cores: oracle rings are exactly right, joins converge, failures
heal, requests are judged against the truth."""

import random

from ring.config import RingConfig
from ring.events import LookupDone
from ring.node import RingNode
from simulations.driver import Simulation
from simulations.oracle import build_static_ring
from simulations.workload import KeyChooser, RequestTracker
from topology.latency import ConstantLatency, PairwiseUniform


def _correct_tables(sim):
    ids = sim.truth.ids
    n = len(ids)
    for k, x in enumerate(ids):
        t = sim.nodes[sim.by_id[x]].table
        if t.successor.id != ids[(k + 1) % n] or t.predecessor.id != ids[k - 1]:
            return False
        for i, f in t.fingers.items():
            if sim.truth.successor(sim.space.finger_start(x, i)) != f.id:
                return False
    return True


def test_oracle_ring_is_converged_and_routes_every_lookup_correctly():
    cfg = RingConfig(expected_nodes=300)
    sim = Simulation(cfg, seed=1, latency=PairwiseUniform(5, 50, seed=1), ids="ed25519")
    build_static_ring(sim, 300)
    assert all(isinstance(n, RingNode) for n in sim.nodes)
    assert _correct_tables(sim)
    assert all(len(sim.nodes[i].table.successors) == cfg.r for i in range(300))
    recs = []
    tr = RequestTracker(sim, recs.append)
    keys = KeyChooser(sim.space, random.Random(3))
    rng = random.Random(4)
    for _ in range(500):
        tr.issue("lookup", rng.randrange(300), keys())
    sim.run(30.0)
    assert len(recs) == 500 and all(r["outcome"] == "ok" for r in recs)
    assert 1.5 < sum(r["hops"] for r in recs) / 500 < 5


def test_joins_converge_to_the_true_ring():
    cfg = RingConfig(expected_nodes=30, stabilize_interval=1.0, fix_fingers_interval=0.5,
                     check_predecessor_interval=2.0)
    sim = Simulation(cfg, seed=2, latency=ConstantLatency(20), ids="hash")
    first = sim.spawn()
    sim.create(first)
    for k in range(29):
        i = sim.spawn()
        sim.join(i, first)
        sim.run(sim.now + 0.5)
    sim.run(sim.now + 200)
    assert len(sim.truth) == 30
    assert _correct_tables(sim)


def test_ring_heals_after_mass_failure():
    cfg = RingConfig(expected_nodes=200, stabilize_interval=2.0, fix_fingers_interval=1.0,
                     check_predecessor_interval=2.0, rpc_timeout=0.5, ack_timeout=0.5)
    sim = Simulation(cfg, seed=3, latency=PairwiseUniform(5, 50, seed=3), ids="hash")
    idx = build_static_ring(sim, 200, maintain=True)
    sim.run(10.0)
    rng = random.Random(5)
    for i in rng.sample(idx, 60):
        sim.crash(i)
    sim.run(sim.now + 120)
    ids = sim.truth.ids
    assert len(ids) == 140
    ok = sum(sim.nodes[sim.by_id[x]].table.successor.id == ids[(k + 1) % 140]
             for k, x in enumerate(ids))
    assert ok == 140


def test_cores_share_one_codec_and_one_rng():
    sim = Simulation(RingConfig(), seed=1, latency=ConstantLatency(1), ids="hash")
    a, b = sim.spawn(), sim.spawn()
    assert sim.nodes[a].codec is sim.nodes[b].codec
    assert sim.refs[a] is sim.nodes[a].me


def test_lookup_answers_are_checked_against_the_truth():
    sim = Simulation(RingConfig(expected_nodes=50), seed=1, latency=ConstantLatency(5),
                     ids="hash")
    build_static_ring(sim, 50)
    recs = []
    tr = RequestTracker(sim, recs.append)
    key = 12345
    tr.issue("lookup", 0, key)
    # corrupt the truth: pretend the true successor is gone, so the answer must be "wrong"
    sim.truth.discard(sim.truth.successor(key))
    sim.listen(LookupDone, lambda i, e: None)
    sim.run(10.0)
    assert [r["outcome"] for r in recs] == ["wrong"]


def test_a_run_leaves_no_cyclic_garbage_and_restores_the_collector():
    """Simulation.run pauses the cyclic collector: that is only sound if the cores, the
    network and the workloads make no reference cycles. Node 0 issues a lookup and a stanza:
    its first request id and message id are equal numbers, and both must be tracked."""
    import gc

    from simulations.driver import Simulation
    from simulations.oracle import build_static_ring
    from simulations.workload import RequestTracker
    from topology.latency import PairwiseUniform

    from ring.config import RingConfig

    sim = Simulation(RingConfig(expected_nodes=64, stabilize_interval=5.0,
                                fix_fingers_interval=5.0, check_predecessor_interval=5.0),
                     seed=4, latency=PairwiseUniform(5, 50, seed=4), ids="hash")
    build_static_ring(sim, 64, maintain=True)
    recs = []
    tr = RequestTracker(sim, recs.append, deadline=10.0)
    for k in range(50):
        tr.issue("lookup", k % 64, (k * 7919) << 100)
    for k in range(10):
        tr.issue("stanza", k, (k * 104729) << 90)
    sim.crash(63)  # no request starts there; some pass through it
    gc.collect()
    assert gc.isenabled()
    sim.run(60.0)
    assert gc.isenabled()
    assert len(recs) == 60
    assert gc.collect() == 0
