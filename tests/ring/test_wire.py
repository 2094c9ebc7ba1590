import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ring.keyspace import KeySpace
from ring.messages import (WIRE_VERSION, Ack, AckKind, Envelope, ErrorCode, ErrorReport,
                           FindSuccessor, Fingers, Flags, FoundSuccessor, GetFingers,
                           GetNeighbours, Hello, Leave, Neighbours, NodeRef, Notify, Ping, Pong,
                           envelope_key)
from ring.wire import (DecoderClosed, FrameDecoder, FrameTooLarge, MalformedMessage,
                       MessageDecoder, UnsupportedVersion, WireCodec, frame)

V = WIRE_VERSION

KS = KeySpace()
CODEC = WireCodec(KS)

ids = st.integers(0, KS.modulus - 1)
u64 = st.integers(0, (1 << 64) - 1)
u8 = st.integers(0, 255)
refs = st.builds(NodeRef, ids, st.text(max_size=40))
flags = st.sampled_from([Flags(v) for v in range(32)])

messages = st.one_of(
    st.builds(Envelope, u64, ids, ids, u8, u8, flags, st.binary(max_size=300),
              st.lists(ids, max_size=8).map(tuple)),
    st.builds(Ack, st.sampled_from(AckKind),
              st.lists(st.builds(envelope_key, ids, u64), max_size=20).map(tuple)),
    st.builds(FindSuccessor, u64, ids, refs, u8, u8),
    st.builds(FoundSuccessor, u64, ids, refs, u8),
    st.builds(GetNeighbours, u64, st.booleans()),
    st.builds(Neighbours, u64, st.none() | refs, st.lists(refs, max_size=16).map(tuple)),
    st.just(Notify()),
    st.builds(Ping, u64),
    st.builds(Pong, u64),
    st.builds(Leave, st.none() | refs, st.lists(refs, max_size=16).map(tuple)),
    st.builds(Hello, refs),
    st.builds(GetFingers, u64),
    st.builds(Fingers, u64, st.lists(refs, max_size=40).map(tuple)),
)


@given(messages)
def test_every_message_round_trips(msg):
    assert CODEC.decode(CODEC.encode(msg)) == msg


@given(st.lists(messages, min_size=1, max_size=8), st.data())
def test_framing_survives_every_split(msgs, data):
    stream = b"".join(CODEC.encode_frame(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    dec = MessageDecoder(CODEC)
    out, prev = [], 0
    for cut in [*cuts, len(stream)]:
        dec.feed(stream[prev:cut])
        prev = cut
        while (m := dec.next_message()) is not None:
            out.append(m)
    assert out == msgs
    assert dec.frames.buffered == 0


def test_framing_byte_by_byte():
    msgs = [Ping(1), Envelope(7, 1, 2, 9, 0, Flags.TRACE, b"<message/>", (1,)), Notify()]
    stream = b"".join(CODEC.encode_frame(m) for m in msgs)
    dec = MessageDecoder(CODEC)
    out = []
    for i in range(len(stream)):
        dec.feed(stream[i : i + 1])
        while (m := dec.next_message()) is not None:
            out.append(m)
    assert out == msgs


def test_oversized_frame_closes_the_decoder():
    dec = MessageDecoder(CODEC, max_frame=64)
    dec.feed((65).to_bytes(4, "big") + b"x" * 10)
    with pytest.raises(FrameTooLarge, match="65 bytes exceeds the limit of 64"):
        dec.next_message()
    assert dec.closed
    with pytest.raises(DecoderClosed):
        dec.feed(b"more")
    with pytest.raises(DecoderClosed):
        dec.next_message()


def _body(obj):
    return msgpack.packb(obj, use_bin_type=True)


HDR = struct.pack(">QBBB", 1, 5, 0, 0) + b"\0" * 40
HDR_BAD_FLAGS = struct.pack(">QBBB", 1, 5, 0, 64) + b"\0" * 40


@pytest.mark.parametrize("body, match", [
    (b"\xc1", "undecodable"),
    (_body({"a": 1}), "array"),
    (_body([1]), "array"),
    (_body([V + 1, 8, 1]), f"version {V + 1}"),
    (_body([V, 99]), "unknown message type 99"),
    (_body([V, 8]), "2 fields, expected 3"),
    (_body([V, 8, -1]), "unsigned 64-bit"),
    (_body([V, 8, "x"]), "unsigned 64-bit"),
    (_body([V, 1, b"\0" * 50, b"", None]), "header must be 51 bytes"),
    (_body([V, 1, "header", b"", None]), "header must be 51 bytes"),
    (_body([V, 1, HDR, "text", None]), "payload must be bytes"),
    (_body([V, 1, HDR, b""]), "4 fields, expected 5"),
    (_body([V, 1, HDR_BAD_FLAGS, b"", None]), "unknown envelope flags"),
    (_body([V, 1, HDR, b"", [b"\0"]]), "trace entry must be 20 bytes"),
    (_body([V, 2, 7, b""]), "ack kind"),
    (_body([V, 2, True, b""]), "ack kind"),
    (_body([V, 2, 1, b"\0" * 29]), "whole number of 30-byte records"),
    (_body([V, 2, 1, b"\0" * 28 + b"\0\0"]), "ack run empty"),
    (_body([V, 2, 1, b"\0" * 20 + b"\xff" * 8 + b"\0\2"]), "past its origin's last msg_id"),
    (_body([V, 2, 1, (b"\0" * 28 + b"\x10\0") * 3]), "more than 8192 ids"),
    (_body([V, 2, 1, [[b"\0" * 20, 1]]]), "must be bytes"),
    (_body([V, 6, 1, None, [[b"\0" * 20, "a"]] * 300]), "at most 256"),
    (_body([V, 11, [b"\0" * 20, 5]]), "address must be a string"),
    (_body([V, 5, 3, False]), "notify flag must be true"),
    (_body([V, 5, 3, True, True]), "5 fields, expected 3"),
])
def test_malformed_frames_are_rejected_and_decoder_stays_usable(body, match):
    dec = MessageDecoder(CODEC)
    dec.feed(frame(body) + CODEC.encode_frame(Ping(5)))
    with pytest.raises(MalformedMessage, match=match):
        dec.next_message()
    assert dec.next_message() == Ping(5)  # the bad frame was consumed, the next one reads


def test_version_errors_are_a_distinct_kind():
    with pytest.raises(UnsupportedVersion):
        CODEC.decode(_body([7, 8, 1]))


def test_payload_limit_is_enforced():
    small = WireCodec(KS, max_payload=10)
    body = small.encode(Envelope(1, 1, 1, 5, 0, Flags.NONE, b"x" * 11))
    with pytest.raises(MalformedMessage, match="over 10 bytes"):
        small.decode(body)


@given(st.binary(max_size=200))
def test_arbitrary_bodies_never_escape_as_other_errors(body):
    try:
        CODEC.decode(body)
    except MalformedMessage:
        pass


@given(st.binary(max_size=400))
def test_arbitrary_streams_raise_only_wire_errors(stream):
    dec = MessageDecoder(CODEC, max_frame=256)
    dec.feed(stream)
    for _ in range(200):
        try:
            if dec.next_message() is None:
                break
        except FrameTooLarge:
            assert dec.closed
            break
        except MalformedMessage:
            continue


def test_error_reports_and_probe_replies_round_trip():
    rep = ErrorReport(ErrorCode.TTL_EXPIRED, 9, 123, 456)
    assert CODEC.decode_error_report(CODEC.encode_error_report(rep)) == rep
    body = CODEC.encode_probe_reply(3, 77, 2, (1, 2, 77))
    assert CODEC.decode_probe_reply(body) == (3, 77, 2, (1, 2, 77))
    with pytest.raises(MalformedMessage):
        CODEC.decode_error_report(b"\x93\x01\x02\x03")


def test_frame_decoder_limits_are_checked():
    with pytest.raises(ValueError):
        FrameDecoder(0)


def test_ids_beyond_a_narrow_key_space_are_rejected():
    narrow = WireCodec(KeySpace(12))  # two bytes per id, but only 4096 ids
    env = Envelope(1, 5, 4095, 9, 0, 0, b"")
    assert narrow.decode(narrow.encode(env)) == env
    bad = struct.pack(">QBBB", 1, 9, 0, 0) + b"\xff\xff" + b"\x00\x01"
    with pytest.raises(MalformedMessage, match="outside the key space"):
        narrow.decode(_body([V, 1, bad, b"", None]))
    with pytest.raises(MalformedMessage, match="outside the key space"):
        narrow.decode(_body([V, 2, 1, b"\xff\xff" + b"\0" * 8 + b"\0\1"]))
    # The batched reader checks them as well, whatever the flags
    beyond = WireCodec(KeySpace(16)).encode_frame(Envelope(1, 5, 5000, 9, 0, 0, b"x"))
    dec = MessageDecoder(narrow)
    dec.feed(beyond + narrow.encode_frame(env))
    msgs, errors = dec.messages()
    assert msgs == [env] and len(errors) == 1 and "outside the key space" in str(errors[0])


def _slow_envelope_body(env):
    """The envelope as plain msgpack would write it (what the encoder must match)."""
    header = (struct.pack(">QBBB", env.msg_id, env.ttl, env.hops, env.flags)
              + env.origin.to_bytes(20, "big") + env.dest.to_bytes(20, "big"))
    trace = [x.to_bytes(20, "big") for x in env.trace] if env.trace else None
    return _body([V, 1, header, env.payload, trace])


envelopes = st.builds(Envelope, u64, ids, ids, u8, u8, st.integers(0, 63),
                      st.binary(max_size=70_000) | st.binary(max_size=300),
                      st.lists(ids, max_size=3).map(tuple))


@given(envelopes)
def test_envelope_frames_are_canonical_msgpack(env):
    body = CODEC.encode(env)
    assert body == _slow_envelope_body(env)
    assert CODEC.encode_frame(env) == frame(body)
    assert CODEC.decode(body) == env
    assert type(CODEC.decode(body).payload) is bytes


def test_envelopes_in_other_msgpack_forms_decode_the_same():
    env = Envelope(7, 11, 12, 9, 1, 0, b"<message/>")
    header = CODEC.encode(env)[5:56]
    # payload as bin16 although it is short, trace as an empty array instead of nil
    body = (bytes((0x95, V, 1, 0xC4, 0x33)) + header + b"\xc5\x00\x0a<message/>" + b"\x90")
    assert CODEC.decode(body) == env
    assert msgpack.unpackb(body)[3] == b"<message/>"
    with pytest.raises(MalformedMessage):  # trailing bytes after a well-formed envelope
        CODEC.decode(CODEC.encode(env) + b"\x00")
    with pytest.raises(MalformedMessage, match="unknown envelope flags"):
        CODEC.decode(CODEC.encode(env._replace(flags=64)))
    small = WireCodec(KS, max_payload=4)
    with pytest.raises(MalformedMessage, match="over 4 bytes"):
        small.decode(CODEC.encode(env))


keys = st.builds(envelope_key, ids, u64)


@given(st.lists(st.one_of(keys, st.builds(lambda k, n: tuple(range(k, k + n)),
                                          st.builds(envelope_key, ids, u64.map(lambda x: x - x % 4096)),
                                          st.integers(1, 3000))), max_size=6))
def test_ack_keys_round_trip_as_runs(parts):
    flat = tuple(k for p in parts for k in (p if isinstance(p, tuple) else (p,)))
    ack = Ack(AckKind.DELIVERED, flat[:8192])
    assert CODEC.decode(CODEC.encode(ack)) == ack


def test_ack_runs_stop_at_an_origins_last_msg_id_and_at_65535():
    last = envelope_key(5, (1 << 64) - 1)
    ack = Ack(AckKind.RECEIVED, (last - 1, last, last + 1, last + 2))  # origin 5 ends, 6 begins
    body = CODEC.encode(ack)
    assert len(msgpack.unpackb(body)[3]) == 2 * 30
    assert CODEC.decode(body) == ack
    big = WireCodec(KS, max_acks=70_000)
    ack = Ack(AckKind.RECEIVED, tuple(range(envelope_key(1, 0), envelope_key(1, 70_000))))
    body = big.encode(ack)
    assert len(msgpack.unpackb(body)[3]) == 2 * 30
    assert big.decode(body) == ack
    assert len(CODEC.encode(Ack(AckKind.RECEIVED, tuple(range(100, 4196))))) < 50


def _all_messages(dec):
    out = []
    for _ in range(1000):
        try:
            m = dec.next_message()
        except FrameTooLarge:
            out.append("too large")
            break
        except MalformedMessage as exc:
            out.append(str(exc))
            continue
        if m is None:
            break
        out.append(m)
    return out


def _all_batched(dec):
    out = []
    for _ in range(1000):
        try:
            got, errors = dec.messages()
        except FrameTooLarge:
            out.append("too large")
            break
        if not got and not errors:
            break
        out.extend(got)
        out.extend(str(e) for e in errors)
    return out


# Bodies that are never a valid message: a byte msgpack never uses, or an envelope's start
# whose header is cut short.
garbage = st.binary(max_size=60).map(lambda b: b"\xc1" + b) | st.binary(max_size=50).map(
    lambda b: CODEC.encode(Envelope(1, 2, 3, 4, 5, 0, b""))[:5] + b)


@given(st.lists(messages | garbage, max_size=10), st.data())
def test_batched_reading_gives_what_reading_one_by_one_gives(parts, data):
    stream = b"".join(frame(m) if isinstance(m, bytes) else CODEC.encode_frame(m) for m in parts)
    if data.draw(st.booleans()):
        stream += (1 << 20).to_bytes(4, "big") + CODEC.encode_frame(Ping(1))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    one, batched = MessageDecoder(CODEC, max_frame=70_000), MessageDecoder(CODEC, max_frame=70_000)
    got_one, got_batched, prev = [], [], 0
    for cut in [*cuts, len(stream)]:
        for dec, got, read in ((one, got_one, _all_messages), (batched, got_batched, _all_batched)):
            if not dec.closed:
                dec.feed(stream[prev:cut])
                got.extend(read(dec))
        prev = cut
    # The same messages in the same order, and the same errors (listed apart)
    assert [m for m in got_batched if not isinstance(m, str)] == [
        m for m in got_one if not isinstance(m, str)]
    assert sorted(m for m in got_batched if isinstance(m, str)) == sorted(
        m for m in got_one if isinstance(m, str))
    assert [m for m in got_one if not isinstance(m, str)] == [
        m for m in parts if not isinstance(m, bytes)]


def test_a_large_frame_trickling_in_is_not_copied_each_time():
    dec = MessageDecoder(CODEC)
    env = Envelope(1, 2, 3, 4, 0, 0, b"y" * 500_000)
    data = CODEC.encode_frame(env)
    pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    for piece in pieces[:-1]:
        dec.feed(piece)
        assert dec.frames._complete() is None
        assert dec.messages() == ([], [])
    dec.feed(pieces[-1])
    assert dec.messages() == ([env], [])
    assert dec.frames.buffered == 0


def test_a_short_frame_that_starts_like_an_envelope_is_read_safely():
    # The fast reader unpacks a fixed head that may run into the next frame's bytes: here a
    # 5-byte body (an envelope's first bytes) is followed by a frame whose bytes, seen
    # through that head, give known flags and a bin8 tag at the very end of the buffer.
    prefix = CODEC.encode(Envelope(1, 2, 3, 4, 5, 0, b""))[:5]
    second = b"\xc1" * 6 + b"\x00" + b"\xc1" * 40 + b"\xc4"
    stream = frame(prefix) + frame(second)
    assert len(stream) == 61
    dec = MessageDecoder(CODEC)
    dec.feed(stream)
    msgs, errors = dec.messages()
    assert msgs == [] and len(errors) == 2
    assert dec.frames.buffered == 0


@given(st.lists(messages, max_size=8), st.data())
def test_a_relayed_frame_is_the_encoding_of_the_forwarded_envelope(parts, data):
    dec = MessageDecoder(CODEC)
    dec.feed(b"".join(CODEC.encode_frame(m) for m in parts))
    starts: list = []
    msgs, errors = dec.messages(starts)
    assert msgs == parts and errors == [] and len(starts) == len(msgs)
    read = dec.last_read
    for msg, start in zip(msgs, starts):
        if type(msg) is not Envelope or msg.trace:
            assert start is None
            continue
        assert start is not None
        # The frame is where the decoder says, as long as the codec says.
        n = len(msg.payload)
        end = start + CODEC.relay_over + n + (n > 255)
        assert read[start:end] == CODEC.encode_frame(msg)
        ttl, hops, fl = data.draw(u8), data.draw(u8), data.draw(flags)
        fwd = msg._replace(ttl=ttl, hops=hops, flags=int(fl))
        assert CODEC.relay(read[start:end], ttl, hops, int(fl)) == CODEC.encode_frame(fwd)


def test_an_envelope_in_another_form_has_no_start_and_is_encoded_afresh():
    # A valid bin16 length code on a short payload is not the encoder's form: relaying its
    # frame would forward that form, so the decoder marks none.
    env = Envelope(7, 1, 2, 9, 0, 0, b"<message/>")
    body = CODEC.encode(env)
    tag_at = len(body) - len(env.payload) - 3
    assert body[tag_at] == 0xC4
    other = body[:tag_at] + b"\xc5\x00" + body[tag_at + 1 :]
    dec = MessageDecoder(CODEC)
    dec.feed(frame(other) + CODEC.encode_frame(env) + CODEC.encode_frame(Ping(3)))
    starts: list = []
    msgs, errors = dec.messages(starts)
    assert msgs == [env, env, Ping(3)] and errors == []
    assert starts[0] is None and starts[2] is None
    good = CODEC.encode_frame(env)
    assert starts[1] == len(other) + 4
    assert CODEC.relay(dec.last_read[starts[1] : starts[1] + len(good)], 9, 0, 0) == good


@pytest.mark.parametrize("msg_ids, records", [
    ((1, 2, 3, 4), 1),  # one run
    ((1, 3, 2, 4), 4),  # the same keys out of order: as they are
    ((1, 2, 2, 4), 3),  # first to last spans n keys, but one repeats
    ((4, 3, 2, 1), 4),
    (((1 << 64) - 2, (1 << 64) - 1), 1),
])
def test_an_ack_is_one_run_only_when_its_keys_are_one(msg_ids, records):
    ack = Ack(AckKind.DELIVERED, tuple(envelope_key(9, i) for i in msg_ids))
    body = CODEC.encode(ack)
    assert len(msgpack.unpackb(body)[3]) == records * 30
    assert CODEC.decode(body) == ack
