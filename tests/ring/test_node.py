"""Behaviour of single cores and small rings: joins, forwarding, custody, failures."""

from collections import Counter

import pytest

from ring.config import RingConfig
from ring.events import (Confirmed, Delivered, JoinFailed, LookupDone, LookupFailed,
                         PredecessorChanged,
                         ProbeResult, Undeliverable)
from ring.ids import name_key
from ring.keyspace import KeySpace
from ring.memcluster import InMemoryCluster
from ring.messages import Ack, AckKind, Envelope, envelope_key, ErrorCode, FindSuccessor, Flags, NodeRef
from ring.node import NodeState, RingNode
from ring.routing import RoutingTable

from .helpers import build_ring


def test_two_nodes_become_each_others_successor_and_predecessor():
    c = build_ring(2)
    a, b = c.active()
    assert a.table.successor == b.me and a.table.predecessor == b.me
    assert b.table.successor == a.me and b.table.predecessor == a.me


def test_a_lone_node_delivers_everything_to_itself():
    c = InMemoryCluster(seed=3)
    n = c.add_node()
    c.send(n.me.addr, 12345, b"hi")
    assert [e.envelope.payload for _, e in c.events_of(Delivered)] == [b"hi"]
    assert c.events_of(Confirmed)


def test_sending_or_joining_in_the_wrong_state_is_a_local_error():
    node = RingNode(NodeRef(1, "a"))
    with pytest.raises(RuntimeError, match="cannot send while idle"):
        node.send(5, b"x", 0.0)
    node.create(0.0)
    with pytest.raises(RuntimeError, match="cannot join while active"):
        node.join(NodeRef(2, "b"), 0.0)
    with pytest.raises(ValueError, match="over"):
        node.send(5, b"x" * (2 << 20), 0.0)


def test_join_through_a_dead_bootstrap_fails_after_bounded_attempts():
    cfg = RingConfig(lookup_timeout=1.0, join_attempts=3)
    node = RingNode(NodeRef(1, "a"), cfg)
    node.join(NodeRef(99, "nobody"), 0.0)
    sent = node.take_outputs()
    assert len(sent) == 1 and isinstance(sent[0][1], FindSuccessor)
    now, attempts = 0.0, 1
    for _ in range(10):
        t = node.get_timer()
        if t is None:
            break
        now = t
        node.handle_timer(now)
        attempts += sum(isinstance(m, FindSuccessor) for _, m in node.take_outputs())
    assert attempts == 3
    assert node.state is NodeState.IDLE
    assert [type(e) for e in node.take_events()] == [JoinFailed]
    assert node.get_timer() is None


def test_probe_reports_the_path_hop_by_hop():
    c = build_ring(32)
    origin = c.active()[0]
    key = name_key(c.space, "juliet")
    c.probe(origin.me.addr, key)
    c.run_for(0.1)
    [(addr, res)] = c.events_of(ProbeResult)
    assert addr == origin.me.addr
    assert res.trace[0] == origin.me.id
    assert res.trace[-1] == c.responsible(key).id
    assert res.hops == len(res.trace) - 1
    assert len(set(res.trace)) == len(res.trace)  # no node twice


def test_lookup_finds_the_responsible_node():
    c = build_ring(16)
    node = c.active()[3]
    key = name_key(c.space, "some-room")
    c.lookup(node.me.addr, key)
    c.run_for(0.1)
    [(_, done)] = c.events_of(LookupDone)
    assert done.successor == c.responsible(key)


def _far_key(c, origin, min_hops):
    for i in range(1000):
        key = name_key(c.space, f"far-{i}")
        c.events.clear()
        c.probe(origin.me.addr, key)
        c.run_for(0.1)
        [(_, res)] = c.events_of(ProbeResult)
        if res.hops >= min_hops:
            c.events.clear()
            return key, res.trace
    raise AssertionError("no key far enough")


def test_ttl_exhaustion_is_reported_to_the_origin():
    c = build_ring(32)
    origin = c.active()[0]
    key, _ = _far_key(c, origin, 3)
    msg_id = c.send(origin.me.addr, key, b"x", ttl=1)
    c.run_for(1)
    assert not c.events_of(Delivered)
    [(addr, ev)] = c.events_of(Undeliverable)
    assert addr == origin.me.addr
    assert ev.report.code is ErrorCode.TTL_EXPIRED and ev.report.msg_id == msg_id
    assert sum(n.stats.ttl_expired for n in c.active()) == 1


def test_a_duplicate_is_delivered_once_and_still_acknowledged():
    c = build_ring(4)
    a, b = c.active()[:2]
    env = Envelope(77, a.me.id, b.me.id, 10, 1, Flags.FINAL, b"dup")
    b.handle_message(a.me, env, c.now)
    b.handle_message(a.me, env, c.now)
    delivered = [e for e in b.take_events() if isinstance(e, Delivered)]
    assert len(delivered) == 1
    acks = [m for _, m in b.take_outputs() if isinstance(m, Ack)]
    assert sum(len(m.ids) for m in acks if m.kind is AckKind.DELIVERED) == 2  # both senders are released
    assert b.stats.duplicates == 1


def test_an_envelope_that_comes_round_again_is_a_loop_and_is_not_forwarded_twice():
    c = build_ring(8)
    a, b, x = c.active()[:3]
    # a key x is not responsible for, so x forwards it and keeps it in custody
    dest = next(k for k in (name_key(c.space, str(i)) for i in range(100))
                if c.responsible(k) != x.me)
    env = Envelope(5, a.me.id, dest, 10, 2, Flags.NONE, b"l")
    x.handle_message(a.me, env, c.now)
    assert sum(isinstance(m, Envelope) for _, m in x.take_outputs()) == 1
    assert x.custody_count == 1
    x.handle_message(b.me, env._replace(hops=5, ttl=7), c.now)  # the same envelope, later
    outs = x.take_outputs()
    assert x.stats.loops == 1
    assert not any(isinstance(m, Envelope) for _, m in outs)
    assert [m.kind for _, m in outs] == [AckKind.RECEIVED]  # b waits for the outcome too


def test_accepted_envelopes_survive_the_death_of_nodes_on_their_path():
    c = build_ring(64, successor_list_length=8)
    nodes = c.active()
    origin = nodes[0]
    sent = {}
    for i in range(300):
        key = name_key(c.space, f"k{i}")
        sent[c.send(origin.me.addr, key, f"m{i}".encode())] = key
    # The envelopes are now queued on the wire: kill a quarter of the ring before any arrives.
    victims = [n.me.addr for n in nodes[1:] if n.me.addr != origin.me.addr][::4]
    for v in victims:
        c.crash(v)
    c.run_for(60)
    got = Counter((e.envelope.origin, e.envelope.msg_id) for _, e in c.events_of(Delivered))
    live_dest = {m for m, k in sent.items() if c.responsible(k).addr not in victims}
    delivered_ids = {mid for (_, mid) in got}
    assert live_dest <= delivered_ids
    assert max(got.values()) == 1  # exactly once
    confirmed = {e.msg_id for a, e in c.events_of(Confirmed) if a == origin.me.addr}
    assert live_dest <= confirmed
    assert confirmed <= delivered_ids  # never confirmed without being delivered


def test_graceful_leave_hands_neighbours_over_at_once():
    c = build_ring(16)
    nodes = c.ring_order()
    leaver = c.nodes[nodes[5].addr]
    pred, succ = c.nodes[nodes[4].addr], c.nodes[nodes[6].addr]
    c.leave(leaver.me.addr)
    c.pump()  # only the Leave messages: no stabilization round has run
    assert pred.table.successor == succ.me
    assert succ.table.predecessor == pred.me
    assert leaver.drained
    assert c.events_of(PredecessorChanged, [succ.me.addr])


def test_custody_is_capped():
    c = build_ring(8, max_custody=0)
    origin = c.active()[0]
    # a key two hops away at least: origin's first hop is not the responsible node
    dest = next(k for k in (name_key(c.space, str(i)) for i in range(500))
                if not origin.table.next_hop(k)[1])
    msg_id = c.send(origin.me.addr, dest, b"x")
    c.run_for(1)
    [(addr, ev)] = c.events_of(Undeliverable)
    assert addr == origin.me.addr
    assert ev.report.code is ErrorCode.CONGESTED and ev.report.msg_id == msg_id
    assert sum(n.stats.congested for n in c.active()) == 1
    assert not c.events_of(Confirmed)


def test_same_seed_same_run():
    def run(seed):
        c = build_ring(24, seed=seed, fingers=False)
        for i in range(50):
            c.send(c.active()[i % 24].me.addr, name_key(c.space, str(i)), b"p")
        c.run_for(5)
        return [(a, repr(e)) for a, e in c.events], c.messages_delivered

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_an_origin_whose_envelope_came_round_a_loop_still_gets_its_confirmation():
    c = build_ring(8)
    origin, x = c.active()[:2]
    dest = next(k for k in (name_key(c.space, str(i)) for i in range(100))
                if c.responsible(k) != origin.me)
    msg_id = origin.send(dest, b"round", c.now)
    [(hop, env)] = [(d, m) for d, m in origin.take_outputs() if isinstance(m, Envelope)]
    origin.handle_message(x.me, env._replace(hops=4), c.now)  # back at the origin
    origin.take_outputs()
    origin.handle_message(hop, Ack(AckKind.DELIVERED, (envelope_key(origin.me.id, msg_id),)), c.now)
    assert [e for e in origin.take_events() if isinstance(e, Confirmed)] == [Confirmed(msg_id, dest)]
    acks = [m for d, m in origin.take_outputs() if isinstance(m, Ack) and d == x.me]
    assert acks and acks[0].kind is AckKind.DELIVERED  # the loop's sender is released too


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lookups_are_rerouted_around_nodes_that_died_on_their_path(seed):
    # A time limit that leaves room for the re-routes: each dead hop met costs an ack
    # time-out (1 s), and a quarter of the ring dying at once puts several on some paths.
    c = build_ring(96, seed=seed, successor_list_length=12, lookup_timeout=30.0)
    nodes = c.active()
    victims = {n.me.addr for n in nodes[1::4]}
    asked = {}
    for i, node in enumerate(n for n in nodes if n.me.addr not in victims):
        key = name_key(c.space, f"survive-{i}")
        asked[(node.me.addr, c.lookup(node.me.addr, key))] = key
    # Those its asker's own successor list answered are done already, right then.
    at_once = {(a, e.req_id): e for a, e in c.events_of(LookupDone)}
    for k, ev in at_once.items():
        assert ev.hops == 0 and ev.successor == c.responsible(asked[k])
    for v in victims:  # before any of the others has moved a single hop
        c.crash(v)
    c.run_for(40)
    assert not c.events_of(LookupFailed)
    done = {(a, e.req_id): e for a, e in c.events_of(LookupDone)}
    assert set(done) == set(asked)
    travelled = {k: ev for k, ev in done.items() if k not in at_once}
    assert len(travelled) > len(asked) // 2
    for k, ev in travelled.items():
        assert ev.successor == c.responsible(asked[k])


def test_nodes_holding_nothing_share_one_empty_store_that_nothing_writes():
    from ring.custody import NOTHING_HELD

    c = build_ring(32, seed=5, successor_list_length=6)
    nodes = c.active()
    for i, node in enumerate(nodes[:12]):
        c.send(node.me.addr, name_key(c.space, f"held-{i}"), b"x")
    c.crash(nodes[20].me.addr)  # some of them meet a dead hop: held, re-sent, re-routed
    c.run_for(30)
    assert RingNode(NodeRef(7, "fresh")).custody_count == 0
    assert RingNode(NodeRef(7, "fresh"))._custody is NOTHING_HELD
    assert any(n._custody is not NOTHING_HELD for n in c.active())  # forwarders got their own
    assert all(n.custody_count == 0 for n in c.active())
    assert NOTHING_HELD.count == 0 and NOTHING_HELD._sent is None
    assert NOTHING_HELD._received is None


def test_custody_counts_what_it_holds_through_resends_and_outcomes():
    from ring.custody import CustodyStore, Held
    from ring.messages import envelope_key

    k1, k2 = envelope_key(9, 1), envelope_key(9, 2)

    store, a, b = CustodyStore(), NodeRef(1, "a"), NodeRef(2, "b")
    h1 = Held(Envelope(1, 9, 5, 9, 0, 0, b""), ())
    h2 = Held(Envelope(2, 9, 5, 9, 0, 0, b""), ())
    store.put_sent(k1, h1, a, 1.0)
    store.put_sent(k2, h2, a, 1.0)
    store.mark_received(k1, a.id, 5.0)
    store.put_sent(k1, h1, b, 2.0)  # re-routed: still one envelope
    assert len(store) == 2
    assert store.pop_done(k1, a.id) is None  # a no longer holds it
    assert store.pop_done(k1, b.id) is h1
    assert store.remove(k2) is h2 and store.remove(k2) is None
    assert len(store) == 0 and store.next_deadline() is None


class _CountingCluster(InMemoryCluster):
    """Counts every message the cores send, by kind (notify-carrying questions apart)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sent = Counter()

    def _after(self, node):
        before = len(self._queue)
        super()._after(node)
        for _, _, msg in list(self._queue)[before:]:
            name = type(msg).__name__
            if getattr(msg, "notify", False):
                name += "+notify"
            self.sent[name] += 1


def test_one_maintenance_tick_runs_each_task_at_its_configured_rate():
    # (A successor list of one: every finger past the successor is checked by a message.)
    cfg = RingConfig(expected_nodes=16, stabilize_interval=1.0, fix_fingers_interval=0.5,
                     check_predecessor_interval=2.0, successor_list_length=1)
    assert cfg.maintenance_plan == (0.5, 2, 1, 4)
    assert RingConfig(stabilize_interval=30, fix_fingers_interval=30,
                      check_predecessor_interval=30).maintenance_plan == (30, 1, 1, 1)
    assert RingConfig(stabilize_interval=1.0, fix_fingers_interval=0.7,
                      check_predecessor_interval=5.0).maintenance_plan == (0.7, 1, 1, 7)
    c = _CountingCluster(cfg, seed=5)
    c.add_stable(16, maintenance=True)
    c.run_for(5.0)
    c.sent.clear()
    c.run_for(60.0)
    stabilize = c.sent["GetNeighbours+notify"]
    checks = c.sent["GetNeighbours"]
    # 16 nodes, one stabilize a second, one finger check every half second.
    assert 16 * 60 * 0.85 <= stabilize <= 16 * 60 * 1.15
    assert abs(checks - 2 * stabilize) <= 16 * 2
    # The question carried the notify, so a settled ring sends no Notify of its own.
    assert c.sent["Notify"] == 0
    assert c.converged() and c.fingers_correct()


def test_fingers_the_successor_list_settles_cost_no_message():
    # 9 nodes, r = 8: every other node is in each successor list, so is every finger.
    c = _CountingCluster(RingConfig(expected_nodes=9, successor_list_length=8), seed=4)
    c.add_stable(9, maintenance=True)
    for n in c.active():  # forget the fingers the cluster was built with
        for i in list(n.table.fingers):
            n.table.set_finger(i, n.me)
    c.sent.clear()
    c.run_for(20.0)
    assert c.sent["GetNeighbours+notify"] > 9 * 15  # stabilization ran all along
    assert c.sent["GetNeighbours"] == 0 and c.sent["Envelope"] == 0  # no check, no lookup
    assert c.converged() and c.fingers_correct()


def test_listed_successor_settles_only_keys_up_to_the_last_listed_node():
    space = KeySpace(bits=8)
    t = RoutingTable(space, NodeRef(100, "me"), 3)
    assert t.listed_successor(120) is None  # nothing listed yet
    t.set_successors([NodeRef(110, "a"), NodeRef(130, "b"), NodeRef(5, "c")])
    assert t.listed_successor(101).addr == "a" and t.listed_successor(110).addr == "a"
    assert t.listed_successor(111).addr == "b" and t.listed_successor(250).addr == "c"
    assert t.listed_successor(5).addr == "c"  # wraps past zero
    assert t.listed_successor(6) is None and t.listed_successor(99) is None  # beyond the list
    assert t.listed_successor(100) is None  # our own id


def test_the_stabilize_question_carries_notify_to_a_successor_that_lost_its_predecessor():
    c = _CountingCluster(RingConfig(expected_nodes=8), seed=2)
    c.add_stable(8, maintenance=True)
    a = c.active()[0]
    succ = c.nodes[a.table.successor.addr]
    succ.table.set_predecessor(None)
    c.run_for(3.0)  # one stabilize round of a, no Notify message needed
    assert succ.table.predecessor == a.me
    assert c.sent["Notify"] == 0 and c.converged()


def test_a_finger_gone_stale_by_one_join_is_corrected_by_asking_back_not_by_a_lookup():
    from ring.messages import F_LOOKUP

    cfg = RingConfig(expected_nodes=32, stabilize_interval=1.0, fix_fingers_interval=1.0,
                     check_predecessor_interval=1.0)
    c = _CountingCluster(cfg, seed=11)
    c.add_stable(32, maintenance=True)
    c.run_for(2.0)
    a = c.active()[0]
    space, i = c.space, c.space.bits - 1
    start = space.finger_start(a.me.id, i)
    f = a.table.finger(i)
    assert f is not None and f.id != start
    newcomer = NodeRef((start + space.distance(start, f.id) // 2) % space.modulus, "newcomer")
    assert space.in_open(newcomer.id, start, f.id)
    lookups = []
    after = c._after

    def watch(node):
        before = len(c._queue)
        after(node)
        if node is a:
            lookups.extend(m for _, _, m in list(c._queue)[before:]
                           if isinstance(m, Envelope) and m.flags & F_LOOKUP)

    c._after = watch
    c.add_node(ref=newcomer)
    assert c.run_until(lambda: a.table.finger(i) == newcomer, timeout=120)
    assert lookups == []  # the finger's predecessor was asked instead


def test_a_joining_node_takes_its_successors_fingers_as_hints_instead_of_looking_each_up():
    from ring.messages import F_LOOKUP, Fingers

    c = _CountingCluster(RingConfig(expected_nodes=64), seed=12)
    c.add_stable(64, maintenance=True)
    c.run_for(2.0)
    newcomer = c.new_ref()
    lookups = []
    after = c._after

    def watch(node):
        before = len(c._queue)
        after(node)
        if node.me.id == newcomer.id:
            lookups.extend(m for _, _, m in list(c._queue)[before:]
                           if isinstance(m, Envelope) and m.flags & F_LOOKUP)

    c._after = watch
    node = c.add_node(ref=newcomer)
    assert c.run_until(lambda: node.state is NodeState.ACTIVE, timeout=10)
    c.run_for(1.0)
    assert c.sent["Fingers"] == 1
    known = len(node.table.fingers)
    assert known >= 3  # seeded at once from the successor's table
    assert c.run_until(c.fingers_correct, timeout=120)
    # Checks (and the odd walk back) corrected the hints; lookups were the exception.
    assert len(lookups) < known


def test_custody_queues_taken_for_many_envelopes_and_tidied():
    # handle_messages holds a read's envelopes through the queues themselves: what it puts
    # there is held like what add holds, and queues taken for nothing are dropped again.
    from ring.custody import CustodyStore, Held

    store, hop = CustodyStore(), NodeRef(1, "a")
    sent, acked = store.queues()
    assert sent == {} and acked == {}
    store.tidy()
    assert store.next_deadline() is None and store.queues()[0] is not sent
    sent, acked = store.queues()
    sent[7] = Held(Envelope(7, 9, 5, 9, 0, 0, b""), (), hop, 3.0)
    store.count += 1
    store.tidy()
    assert store.next_deadline() == 3.0 and store.held_by(1) == [7]
    assert not store.add(7, Held(Envelope(7, 9, 5, 9, 0, 0, b""), ()))
    assert store.pop_done(7, 1) is not None and len(store) == 0
