"""RingNode.handle_messages (a read's worth at once) does exactly what handle_message does
one message at a time: same outputs, events, custody and counters, whatever the batch holds."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ring.config import RingConfig
from ring.messages import (Ack, AckKind, Envelope, Flags, Leave, Neighbours, NodeRef, Notify,
                           Ping, envelope_key)
from ring.node import RingNode
from ring.wire import FrameDecoder, MessageDecoder, RelayedFrames, frame, shared_codec

CFG = RingConfig(expected_nodes=8, max_custody=6)
M = CFG.space.modulus
# Four nodes spread round the ring; the node under test is B, between A and C.
A, B, C, D = (NodeRef(k * M // 4 + 12345, f"n{k}") for k in range(4))
NEW = NodeRef(B.id - M // 16, "new")  # between A and B: becomes B's predecessor if it notifies


def _node(cfg: RingConfig = CFG) -> RingNode:
    n = RingNode(B, cfg, rng=random.Random(1), msg_id_base=100)
    n.create(0.0)
    n.table.set_successors([C, D])
    n.table.set_predecessor(A)
    n.table.set_finger(CFG.space.bits - 1, D)
    n.take_outputs()
    n.take_events()
    return n


# Destinations: B's own span (delivered here), C's and D's spans (forwarded), B itself.
dests = st.sampled_from([A.id + 5, B.id - 1, B.id, B.id + 1, C.id + 7, D.id - 3, D.id + 9])
origins = st.sampled_from([A.id, C.id, D.id, B.id])
msg_ids = st.integers(0, 7) | st.just((1 << 64) - 1)
envelopes = st.builds(
    Envelope, msg_ids, origins, dests, st.sampled_from([0, 1, 9]), st.integers(0, 3) | st.just(255),
    st.sampled_from([0, 0, 0, int(Flags.FINAL), int(Flags.TRACE), int(Flags.PROBE)]),
    st.just(b"<message/>"), st.just(()))
acks = st.builds(Ack, st.sampled_from(AckKind),
                 st.lists(st.builds(envelope_key, origins, msg_ids), max_size=4).map(tuple))
# Messages that change B's routing state in the middle of a batch.
# (Notify from NEW narrows B's span, NEW's Leave naming A widens it again, a Leave from C
# changes B's successors.)
others = st.sampled_from([Notify(), Ping(3), Leave(NEW, (B, C)), Leave(A, (B, C)),
                          Leave(B, (D,)), Neighbours(1, A, (B, C, D))])
senders = st.sampled_from([A, C, D, NEW])
batches = st.lists(st.tuples(senders, st.lists(envelopes | acks | others, max_size=12)),
                   max_size=5)


def _state(n: RingNode):
    custody = n._custody
    held = {}
    for key in {envelope_key(o, i) for o in (A.id, B.id, C.id, D.id)
                for i in [*range(8), (1 << 64) - 1]}:
        h = custody.get(key)
        if h is not None:
            held[key] = (h.envelope, tuple(h.upstreams), h.hop, h.deadline, h.attempts)
    return (list(n.take_outputs()), list(n.take_events()), held, len(custody),
            n.stats, n.table.predecessor, n.table.successors)


@settings(max_examples=500, deadline=None)
@given(batches)
def test_a_batch_has_the_effect_of_its_messages_one_by_one(batches):
    one, many = _node(), _node()
    now = 1.0
    for sender, msgs in batches:
        for msg in msgs:
            one.handle_message(sender, msg, now)
        many.handle_messages(sender, msgs, now)
        assert _state(many) == _state(one)
        now += 0.5


def _read(msgs):
    """``msgs`` as a live link reads them: encoded, then decoded with where their frames
    start, and the bytes they were read from (handle_messages' last two arguments)."""
    dec = MessageDecoder(shared_codec(CFG.space))
    dec.feed(b"".join(dec.codec.encode_frame(m) for m in msgs))
    starts: list = []
    got, errors = dec.messages(starts)
    assert got == msgs and not errors and len(starts) == len(msgs)
    return starts, dec.last_read


def _split(run):
    """The frames of a RelayedFrames, one by one (as bytes), checking its frame count."""
    dec = FrameDecoder()
    for part in run:
        dec.feed(part)
    frames = []
    while (body := dec.next_frame()) is not None:
        frames.append(frame(body))
    assert dec.buffered == 0 and len(frames) == run.frames
    return frames


def _encoded(outs, codec):
    """Outputs as frames, one per message (a run of relayed frames holds several)."""
    return [(dest, f) for dest, m in outs
            for f in (_split(m) if type(m) is RelayedFrames else [codec.encode_frame(m)])]


@settings(max_examples=300, deadline=None)
@given(batches)
def test_relayed_frames_are_the_encoded_forwarded_envelopes(batches):
    def plain(n, sender, msgs, now):
        n.handle_messages(sender, msgs, now)

    def relay(n, sender, msgs, now):
        n.handle_messages(sender, msgs, now, *_read(msgs))

    _assert_alike(_node(), plain, _node(), relay, batches)


def _assert_alike(a, feed_a, b, feed_b, batches):
    """Nodes a and b, fed each batch their own way, send the same bytes and end alike."""
    now = 1.0
    for sender, msgs in batches:
        feed_a(a, sender, msgs, now)
        feed_b(b, sender, msgs, now)
        out_a, *rest_a = _state(a)
        out_b, *rest_b = _state(b)
        assert _encoded(out_b, b.codec) == _encoded(out_a, a.codec)
        assert rest_b == rest_a
        now += 0.5


def test_the_short_path_forwards_and_acks_like_the_long_one():
    cfg = RingConfig(expected_nodes=8)
    one, many = _node(cfg), _node(cfg)
    envs = [Envelope(i, A.id, C.id + 7, 9, 1, 0, b"x") for i in range(50)]
    for e in envs:
        one.handle_message(A, e, 1.0)
    many.handle_messages(A, envs, 1.0)
    out = list(many.take_outputs())
    assert out == list(one.take_outputs())
    assert [m.ttl for _, m in out[:50]] == [8] * 50
    assert out[-1] == (A, Ack(AckKind.RECEIVED, tuple(envelope_key(A.id, i) for i in range(50))))
    assert many.stats.forwarded == 50 and many.custody_count == 50


def test_a_span_widened_in_the_middle_of_a_batch_is_seen_by_the_envelopes_after_it():
    # B's predecessor is NEW; NEW leaves, naming A: keys in (A, NEW] become B's, and an
    # envelope for one of them later in the same batch is delivered, not forwarded.
    one, many = _node(), _node()
    for n in (one, many):
        n.handle_message(NEW, Notify(), 0.5)
        assert n.table.predecessor == NEW
        n.take_outputs()
        n.take_events()
    batch = [Leave(A, (B, C)), Envelope(1, C.id, A.id + 5, 9, 1, 0, b"x")]
    for msg in batch:
        one.handle_message(NEW, msg, 1.0)
    many.handle_messages(NEW, batch, 1.0)
    assert _state(many) == _state(one)
    assert many.stats.delivered == 1 and many.stats.forwarded == 0


def test_the_short_path_relays_frames_and_custody_keeps_the_envelopes():
    cfg = RingConfig(expected_nodes=8)
    plain, relay = _node(cfg), _node(cfg)
    envs = [Envelope(i, A.id, C.id + 7, 9, 1, 0, b"x" * i) for i in range(300)]
    plain.handle_messages(A, envs, 1.0)
    relay.handle_messages(A, envs, 1.0, *_read(envs))
    out = list(relay.take_outputs())
    # One run of relayed frames to C, all in one stretch of the read.
    assert out[0][0] == C and out[0][1].frames == 300 and len(out[0][1]) == 1
    assert _encoded(out, relay.codec) == _encoded(plain.take_outputs(), plain.codec)
    assert relay.codec.decode(_split(out[0][1])[299][4:]) == envs[299]._replace(ttl=8, hops=2)
    assert relay._custody.get(envelope_key(A.id, 5)).envelope is envs[5]
    # No receipt from C: the envelopes are re-routed (to D), encoded afresh from custody.
    relay.handle_timer(1.0 + cfg.ack_timeout)
    again = {m.msg_id: (dest, m) for dest, m in relay.take_outputs() if type(m) is Envelope}
    assert len(again) == 300
    assert again[5] == (D, envs[5]._replace(ttl=8, hops=2, flags=int(Flags.FINAL)))


def test_a_hop_count_at_its_limit_stays_there():
    # 255 is the most a frame can say: forwarding must not make an unencodable 256.
    one, many = _node(), _node()
    env = Envelope(1, A.id, C.id + 7, 9, 255, 0, b"x")
    one.handle_message(A, env, 1.0)
    many.handle_messages(A, [env], 1.0, *_read([env]))
    outs = list(many.take_outputs())
    assert outs == list(one.take_outputs())
    fwd = outs[0][1]
    assert fwd.hops == 255 and many.codec.decode(many.codec.encode(fwd)) == fwd


RING = (A, B, C, D)


def _node_at(i: int) -> RingNode:
    """The node at RING[i], its neighbours the next two and the one before (for A and D the
    spans they are responsible for or route to at once wrap past 0)."""
    me = RING[i]
    n = RingNode(me, CFG, rng=random.Random(1), msg_id_base=100)
    n.create(0.0)
    n.table.set_successors([RING[(i + 1) % 4], RING[(i + 2) % 4]])
    n.table.set_predecessor(RING[i - 1])
    n.take_outputs()
    n.take_events()
    return n


wrap_dests = st.sampled_from([0, 1, M - 1, A.id - 1, A.id, A.id + 1, D.id - 1, D.id, D.id + 1,
                              B.id + 1, C.id])
wrap_envelopes = st.builds(
    Envelope, msg_ids, origins, wrap_dests, st.just(9), st.integers(0, 3),
    st.sampled_from([0, 0, int(Flags.FINAL)]), st.just(b"<message/>"), st.just(()))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0, 3]), st.lists(st.tuples(senders, st.lists(wrap_envelopes | acks,
                                                                    max_size=8)), max_size=4))
def test_spans_that_wrap_past_zero_are_told_alike(i, batches):
    def one_by_one(n, sender, msgs, now):
        for msg in msgs:
            n.handle_message(sender, msg, now)

    def batched(n, sender, msgs, now):
        n.handle_messages(sender, msgs, now, *_read(msgs))

    _assert_alike(_node_at(i), one_by_one, _node_at(i), batched, batches)


def test_the_short_path_across_zero():
    d, a = _node_at(3), _node_at(0)
    # D's successor span (D, A] wraps: key 1 goes to A as the final hop, on the short path.
    env = Envelope(1, C.id, 1, 9, 1, 0, b"x")
    d.handle_messages(C, [env], 1.0, *_read([env]))
    (to, run), _ = d.take_outputs()
    assert to == A and d.codec.decode(_split(run)[0][4:]) == env._replace(
        ttl=8, hops=2, flags=int(Flags.FINAL))
    # A's own span (D, A] wraps too: key M - 1 is delivered there, not forwarded.
    env = Envelope(2, C.id, M - 1, 9, 1, 0, b"y")
    a.handle_messages(C, [env], 1.0, *_read([env]))
    assert a.stats.delivered == 1 and a.stats.forwarded == 0
