from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ring.keyspace import KeySpace
from ring.messages import NodeRef
from ring.routing import RoutingTable, default_successor_list_length

KS = KeySpace(16)
ids = st.integers(0, KS.modulus - 1)


def table_from(me, succs, fingers, *, ordered=True):
    """A table; ``ordered`` fingers grow in distance with their index, as in a settled ring."""
    t = RoutingTable(KS, NodeRef(me, "me"), r=8)
    t.set_successors(NodeRef(s, f"s{s}") for s in succs)
    if ordered:
        fingers = sorted(fingers, key=lambda f: KS.distance(me, f))
    for i, f in enumerate(fingers):
        t.set_finger(i, NodeRef(f, f"f{f}"))
    return t


@given(ids, st.lists(ids, min_size=1, max_size=10, unique=True),
       st.lists(ids, max_size=16), ids)
def test_next_hop_always_makes_progress(me, succs, fingers, key):
    assume(me not in succs)
    t = table_from(me, succs, [f for f in fingers if f != me])
    assume(key != me)
    hop, final = t.next_hop(key)
    succ = t.successor.id
    assert final == KS.in_half_open(key, me, succ)
    if final:
        # the last step: to the successor, which is responsible for the key
        assert hop.id == succ
    else:
        # otherwise the hop lies in (me, key): strictly closer to the key than we are
        assert KS.in_open(hop.id, me, key)
        assert KS.distance(hop.id, key) < KS.distance(me, key)
        # closest preceding: no known node lies strictly between the hop and the key
        for n in t.known_nodes():
            assert not KS.in_open(n.id, hop.id, key)


@given(ids, st.lists(ids, min_size=1, max_size=10, unique=True),
       st.lists(ids, max_size=16), ids)
def test_a_finger_table_out_of_order_still_makes_progress(me, succs, fingers, key):
    # churn can leave fingers whose distances do not grow with their index
    assume(me not in succs and key != me)
    t = table_from(me, succs, [f for f in fingers if f != me], ordered=False)
    hop, final = t.next_hop(key)
    if final:
        assert hop.id == t.successor.id
    else:
        assert KS.in_open(hop.id, me, key)


@given(ids, st.lists(ids, min_size=2, max_size=10, unique=True), ids)
def test_excluded_nodes_are_never_chosen(me, succs, key):
    assume(me not in succs and key != me)
    t = table_from(me, succs, [])
    first = t.next_hop(key)[0]
    nxt = t.next_hop(key, frozenset({first.id}))
    if nxt is not None:
        hop, final = nxt
        assert hop.id != first.id
        if final:  # the first live successor at or past the key takes over
            assert KS.in_half_open(key, me, hop.id)
        else:
            assert KS.in_open(hop.id, me, key)


def test_alone_means_responsible_for_everything():
    t = RoutingTable(KS, NodeRef(5, "me"), r=8)
    assert t.alone and t.is_responsible(12345)
    assert t.next_hop(77) is None


def test_responsibility_follows_the_predecessor():
    t = table_from(100, [200], [])
    assert t.is_responsible(50) is None  # predecessor unknown
    t.set_predecessor(NodeRef(40, "p"))
    assert t.is_responsible(50) and t.is_responsible(100)
    assert not t.is_responsible(40) and not t.is_responsible(150)


def test_remove_forgets_a_node_everywhere():
    t = table_from(100, [200, 300], [300, 400])
    t.set_predecessor(NodeRef(300, "s300"))
    assert t.remove(200)  # successor changed
    assert t.successor.id == 300
    assert t.remove(300)
    assert t.predecessor is None and t.successor is None
    assert [n.id for n in t.known_nodes()] == [400]
    assert t.closest_known_after_me().id == 400


def test_successor_list_is_capped_deduplicated_and_excludes_self():
    t = RoutingTable(KS, NodeRef(1, "me"), r=3)
    t.set_successors(NodeRef(i, str(i)) for i in [2, 2, 1, 3, 4, 5])
    assert [s.id for s in t.successors] == [2, 3, 4]


def test_default_successor_list_length():
    assert default_successor_list_length(10) == 8
    assert default_successor_list_length(1024) == 20
    assert default_successor_list_length(10**6) == 40


WIDE = KeySpace(80)  # 16 bits below the 64 the index keeps: clustered ids tie in the top bits
base = st.integers(0, WIDE.modulus - 1)
near = st.integers(0, 1 << 18)


@given(base, st.lists(near, min_size=2, max_size=24, unique=True), near)
def test_next_hop_is_exact_when_distances_tie_in_their_top_bits(b, offsets, key_off):
    me, *others = [(b + o) % WIDE.modulus for o in offsets]
    key = (b + key_off) % WIDE.modulus
    assume(key != me)
    t = RoutingTable(WIDE, NodeRef(me, "me"), r=4)
    by_dist = sorted(others, key=lambda x: WIDE.distance(me, x))
    t.set_successors(NodeRef(x, str(x)) for x in by_dist[:4])
    for i, x in enumerate(by_dist[4:]):
        t.set_finger(i, NodeRef(x, str(x)))
    hop, final = t.next_hop(key)
    d = WIDE.distance(me, key)
    if final:
        assert hop.id == by_dist[0] and d <= WIDE.distance(me, by_dist[0])
    else:
        want = max((x for x in others if 0 < WIDE.distance(me, x) < d),
                   key=lambda x: WIDE.distance(me, x))
        assert hop.id == want


@given(ids, st.lists(st.lists(ids, max_size=12), min_size=1, max_size=3), st.booleans())
def test_set_successors_keeps_the_nearest_r_distinct_nodes(me, lists, presort):
    """Whatever it is given (in ring order, as a successor's answer usually is, or not,
    with repeats and this node itself), the list is the r nearest distinct nodes, nearest
    first, the first given of any repeated id kept; and the result says whether the
    immediate successor changed."""
    t = RoutingTable(KS, NodeRef(me, "me"), r=4)
    for raw in lists:
        if presort:
            raw = sorted(raw, key=lambda x: KS.distance(me, x))
        given_refs = [NodeRef(x, f"n{x}.{k}") for k, x in enumerate(raw)]
        seen, want = set(), []
        for n in given_refs:
            if n.id != me and n.id not in seen:
                seen.add(n.id)
                want.append(n)
        want.sort(key=lambda n: KS.distance(me, n.id))
        before = t.successor
        changed = t.set_successors(given_refs)
        assert t.successors == tuple(want[:4])
        assert t.successor == (want[0] if want else None)
        assert changed == (t.successor != before)


@settings(max_examples=400)
@example(0, [("from", 1, [0, 0]), ("from", 0, [0, 0])])  # head 1 not the nearest: 0 leads
@given(ids, st.lists(st.tuples(st.sampled_from(["from", "set", "remove"]),
                               st.integers(0, 11), st.lists(st.integers(0, 11), max_size=6)),
                     min_size=1, max_size=30))
def test_set_successors_from_is_set_successors_of_head_and_tail(me, steps):
    """The shortcut for an answer that settled the list before gives what building the
    list would, whatever else changed the table in between."""
    pool = [NodeRef((me + 1 + 997 * k) % KS.modulus, f"p{k}") for k in range(12)]
    tails = {}  # one tuple object per list of indices: answers repeat by identity, as in a ring
    fast = RoutingTable(KS, NodeRef(me, "me"), r=4)
    slow = RoutingTable(KS, NodeRef(me, "me"), r=4)
    for op, h, rest in steps:
        head = pool[h]
        tail = tails.setdefault(tuple(rest), tuple(pool[k] for k in rest))
        if op == "from":
            assert fast.set_successors_from(head, tail) == slow.set_successors((head, *tail))
        elif op == "set":
            assert fast.set_successors(tail) == slow.set_successors(tail)
        else:
            assert fast.remove(head.id) == slow.remove(head.id)
        assert fast.successors == slow.successors and fast.successor == slow.successor
