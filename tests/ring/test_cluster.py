"""Rings built by joins: convergence, delivery to the responsible node, path length, failures."""

import math
import random
from collections import Counter

import pytest

from ring.events import Delivered, LookupDone, LookupFailed, Undeliverable
from ring.config import RingConfig
from ring.ids import name_key
from ring.memcluster import InMemoryCluster

from .helpers import build_ring


def _send_everywhere(c, n_keys, tag):
    nodes = c.active()
    sent = {}
    for i in range(n_keys):
        key = name_key(c.space, f"{tag}-{i}")
        origin = nodes[i % len(nodes)]
        sent[(origin.me.id, c.send(origin.me.addr, key, tag.encode()))] = key
    return sent


@pytest.mark.parametrize("n", [2, 3, 5, 17, 64, 256])
def test_rings_built_by_joins_converge_and_deliver_every_key(n):
    c = build_ring(n, seed=n)
    assert c.converged() and c.fingers_correct()
    sent = _send_everywhere(c, 400, "k")
    c.run_for(1)
    delivered = c.events_of(Delivered)
    assert len(delivered) == len(sent)
    for addr, ev in delivered:
        env = ev.envelope
        assert sent[(env.origin, env.msg_id)] == env.dest
        assert c.responsible(env.dest).addr == addr  # the key's successor, and only it


def test_mean_path_length_at_1024_nodes():
    n = 1024
    c = build_ring(n, seed=11)
    _send_everywhere(c, 4000, "h")
    c.run_for(1)
    hops = [e.envelope.hops for _, e in c.events_of(Delivered)]
    assert len(hops) == 4000
    mean = sum(hops) / len(hops)
    # every forwarding step counts, the last one to the successor included
    assert mean <= 0.5 * math.log2(n) + 1.5, mean
    assert max(hops) <= math.log2(n) + 2


def test_half_the_ring_crashing_at_once_loses_no_lookup():
    n = 256
    c = build_ring(n, seed=5, successor_list_length=16)
    rng = random.Random(2)
    victims = set(rng.sample([x.me.addr for x in c.active()], n // 2))
    for v in victims:
        c.crash(v)
    assert c.run_until(c.converged, timeout=120), "ring did not heal"
    c.events.clear()
    sent = _send_everywhere(c, 2000, "after")
    c.run_for(30)
    got = Counter((e.envelope.origin, e.envelope.msg_id) for _, e in c.events_of(Delivered))
    assert set(got) == set(sent)  # every responsible node is alive after healing
    assert max(got.values()) == 1
    assert not c.events_of(Undeliverable)
    for addr, ev in c.events_of(Delivered):
        assert c.responsible(ev.envelope.dest).addr == addr

    # and once the fingers have been fixed too, the lookup API answers every key correctly
    assert c.run_until(c.fingers_correct, timeout=300)
    c.events.clear()
    nodes = c.active()
    asked = {}
    for i in range(500):
        node = nodes[i % len(nodes)]
        key = name_key(c.space, f"lookup-{i}")
        asked[(node.me.addr, c.lookup(node.me.addr, key))] = key
    c.run_for(10)
    assert not c.events_of(LookupFailed)
    done = {(a, e.req_id): e for a, e in c.events_of(LookupDone)}
    assert set(done) == set(asked)
    for k, ev in done.items():
        assert ev.successor == c.responsible(asked[k])


def test_a_statically_built_ring_has_the_state_joins_converge_to():
    s = InMemoryCluster(RingConfig(expected_nodes=200), seed=9)
    s.add_stable(200)
    assert len(s.active()) == 200
    assert s.converged() and s.fingers_correct()
    sent = _send_everywhere(s, 300, "static")
    s.run_for(1)
    assert len(s.events_of(Delivered)) == len(sent)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_small_rings_fill_every_finger(n):
    # a finger whose start wraps round to the node itself used to stall the finger cycle
    for seed in range(40):
        c = InMemoryCluster(RingConfig(expected_nodes=8), seed=seed)
        for _ in range(n):
            c.add_node()
            c.run_for(0.05)
        assert c.run_until(lambda: c.converged() and c.fingers_correct(), timeout=30,
                           check_every=0.5), f"seed {seed}"
