import random

import pytest

from simulations.kernel import Kernel
from simulations.network import SimNetwork
from topology.latency import ConstantLatency, PairwiseUniform


def make(loss=0.0, model=None):
    k = Kernel()
    got = []
    net = SimNetwork(k, model or PairwiseUniform(10, 90, seed=3), loss=loss,
                     rng=random.Random(1), deliver=lambda j, s, m: got.append((k.now, j, s, m)))
    for _ in range(4):
        net.add_node()
    return k, net, got


def test_message_arrives_after_the_pairs_fixed_latency():
    k, net, got = make()
    lat = net.model.latency(0, 2)
    net.send(0, 2, "n0", "hello")
    net.send(0, 2, "n0", "again")
    k.run(1.0)
    assert [(round(t, 9), j, m) for t, j, _, m in got] == [
        (round(lat, 9), 2, "hello"), (round(lat, 9), 2, "again")]
    assert net.model.latency(2, 0) == lat  # symmetric and fixed


def test_down_node_loses_messages_and_reports_dead_letters():
    k, net, got = make()
    dead = []
    net.on_dead_letter = lambda s, d, m: dead.append((d, m))
    net.send(0, 1, "n0", "in flight")
    net.down(1)  # dies while the message travels
    net.send(0, 1, "n0", "too late")
    k.run(1.0)
    assert got == []
    assert dead == [(1, "too late"), (1, "in flight")]
    assert net.lost_down == 2


def test_partition_drops_across_sides_until_heal():
    k, net, got = make(model=ConstantLatency(5))
    net.partition([0, 0, 1, 1])
    net.send(0, 1, "a", "same side")
    net.send(0, 2, "a", "across")
    k.run(1.0)
    assert [m for *_, m in got] == ["same side"] and net.lost_partition == 1
    net.heal()
    net.send(0, 2, "a", "healed")
    k.run(2.0)
    assert [m for *_, m in got] == ["same side", "healed"]


def test_loss_rate_close_to_configured():
    k, net, got = make(loss=0.2, model=ConstantLatency(1))
    for _ in range(5000):
        net.send(0, 1, "a", "x")
    k.run(1.0)
    assert 0.17 < net.lost_random / 5000 < 0.23
    assert len(got) + net.lost_random == 5000


def test_bad_loss_rejected():
    with pytest.raises(ValueError):
        make(loss=1.0)


def test_node_refs_are_carried_to_their_slot_or_else_by_address():
    from ring.messages import NodeRef

    k, net, got = make()
    by_addr = {"s1": 1, "s3": 3}
    out = [(NodeRef(7, "s2", 2), "to the slot"), (NodeRef(9, "s3"), "by address"),
           (NodeRef(5, "gone"), "nowhere")]
    net.carry(0, "n0", out, by_addr)
    k.run(1.0)
    assert sorted((j, m) for _, j, _, m in got) == [(2, "to the slot"), (3, "by address")]
    # The slot is the driver's bookkeeping, not part of the reference.
    assert NodeRef(7, "s2", 2) == NodeRef(7, "s2") and hash(NodeRef(7, "s2", 2)) == hash(NodeRef(7, "s2"))
    assert "slot" not in repr(NodeRef(7, "s2", 2))
