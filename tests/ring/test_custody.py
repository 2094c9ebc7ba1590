"""CustodyStore: envelopes held as pairs with a shared Held are held like the others, and the
ways of taking a whole ack at once do what key by key does."""

from hypothesis import given, settings
from hypothesis import strategies as st

from ring.custody import CustodyStore, Held
from ring.messages import Envelope, NodeRef, envelope_key

HOPS = [NodeRef(1, "h1"), NodeRef(2, "h2")]
UPS = [(NodeRef(5, "u5"),), (NodeRef(6, "u6"),), (NodeRef(5, "u5"), NodeRef(6, "u6")), ()]
ORIGINS = [9, 10]
KEYS = [envelope_key(o, i) for o in ORIGINS for i in range(4)]

# Mostly one upstream, one hop and one phase, so that many acks can be taken at once.
holds = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from([0, 0, 0, 1, 2, 3]),
                           st.sampled_from(HOPS[:1] * 4 + HOPS[1:]),
                           st.sampled_from([False, False, False, True]), st.booleans()),
                 max_size=10)


def _stores(items, shared):
    """Two stores holding alike; ``shared`` makes the envelopes of one upstream share one
    tuple of upstreams (as a read's do), else each has its own (equal) tuple. An item
    ``paired`` is held as handle_messages holds it (a pair, with a Held shared by the
    envelopes of the same upstream and hop), unless held already."""
    out = []
    for _ in range(2):
        store = CustodyStore()
        pairs: dict = {}
        for key, u, hop, received, paired in items:
            ups = UPS[u] if shared else tuple(list(UPS[u]))  # (an equal tuple of its own)
            env = Envelope(key & 0xFF, key >> 64, 3, 9, 0, 0, b"")
            if paired == "add":  # (as a Held, where a pair would be held)
                store.add(key, Held(env, ups, hop, 1.0))
            elif paired:
                sent, acked = store.queues()
                if key not in sent and key not in acked:
                    h = pairs.setdefault((u, hop.id), Held(env, ups, hop, 1.0))
                    sent[key] = (env, h)
                    store.count += 1
            else:
                store.put_sent(key, Held(env, ups), hop, 1.0)
            if received:
                store.mark_received(key, hop.id, 2.0)
        out.append(store)
    return out


def _raw(store):
    """The store's entries as they are (pairs not turned into Helds)."""
    return [(k, e[0], tuple(e[1].upstreams), e[1].hop, e[1].deadline)
            if type(e) is tuple else (k, e.envelope, tuple(e.upstreams), e.hop, e.deadline)
            for q in (store._sent or {}, store._received or {}) for k, e in q.items()]


def _content(store):
    return _raw(store), len(store)


@settings(max_examples=400, deadline=None)
@given(holds, st.data(), st.sampled_from(HOPS[:1] * 4 + HOPS[1:]),
       st.sampled_from([None, None, *ORIGINS]), st.booleans())
def test_pop_run_is_pop_all_done_when_it_takes_the_ack(items, data, sender, origin_not, shared):
    # Acks name held keys in order, mostly (a key may repeat, or not be held at all).
    held = sorted({key for key, *_ in items})
    keys = data.draw(st.lists(st.sampled_from(held), max_size=8).map(sorted) if held else
                     st.just([]))
    keys += data.draw(st.lists(st.sampled_from(KEYS), max_size=1))
    run_store, one_store = _stores(items, shared)
    before = _content(run_store)
    got = run_store.pop_run(tuple(keys), sender.id, origin_not)
    if got is None:
        assert _content(run_store) == before  # nothing changed
        return
    ups, done = got
    pairs = one_store.pop_all_done(tuple(keys), sender.id)
    assert list(done) == [k for k, _ in pairs] and done
    assert all(h.upstreams == ups and h.envelope.origin != origin_not for _, h in pairs)
    assert _content(run_store) == _content(one_store)


def test_pop_run_leaves_a_mixed_ack_to_pop_all_done():
    a, b = (NodeRef(5, "u5"),), (NodeRef(6, "u6"),)
    store = CustodyStore()
    for i, ups in enumerate([a, a, b]):
        store.put_sent(envelope_key(9, i), Held(Envelope(i, 9, 3, 9, 0, 0, b""), ups),
                       HOPS[0], 1.0)
    keys = tuple(envelope_key(9, i) for i in range(3))
    assert store.pop_run(keys, 1, None) is None  # two upstreams
    assert store.pop_run(keys[:2], 2, None) is None  # another hop
    assert store.pop_run(keys[:2], 1, 9) is None  # originated by 9
    assert store.pop_run(keys[:2] + keys[:1], 1, None) == (a, [keys[0], keys[1]])
    assert len(store) == 1 and store.pop_run(keys[2:], 1, None) == (b, keys[2:])
    assert len(store) == 0 and store.next_deadline() is None


@settings(max_examples=300, deadline=None)
@given(holds, st.sampled_from(KEYS), st.sampled_from(HOPS), st.floats(0, 5))
def test_pairs_are_held_like_helds(items, key, hop, now):
    # The same envelopes held as pairs or as Helds: the same answers to every question.
    pairs, = _stores(items, True)[:1]
    helds, = _stores([(*item[:4], "add" if item[4] else False) for item in items], True)[:1]
    assert _raw(pairs) == _raw(helds) and len(pairs) == len(helds)
    assert pairs.next_deadline() == helds.next_deadline()
    assert pairs.expired(now) == helds.expired(now)
    assert pairs.held_by(hop.id) == helds.held_by(hop.id)
    got, want = pairs.get(key), helds.get(key)
    assert (got is None) == (want is None)
    if got is not None:
        assert (got.envelope, got.upstreams, got.hop, got.deadline) == (
            want.envelope, want.upstreams, want.hop, want.deadline)
        got.deadline = 99.0  # its own: no other envelope's deadline moves
        assert [d for k, *_, d in _raw(pairs) if k != key] == [
            d for k, *_, d in _raw(helds) if k != key]
    assert (pairs.remove(key) is None) == (helds.remove(key) is None)
    assert _raw(pairs) == _raw(helds) and len(pairs) == len(helds)
