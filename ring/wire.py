"""Wire format: msgpack messages in length-prefixed frames.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack: an array
``[version, type, field, ...]``. Identifiers travel as fixed-width big-endian bytes (they are
wider than msgpack's 64-bit integers).

The two messages every stanza pays for at every hop carry their fixed fields packed:

- Envelope ``[1, 1, header, payload, trace|nil]``; ``header`` is msg_id (u64), ttl, hops,
  flags (u8 each), origin id, destination id. The encoder writes this array byte by byte
  (it is valid msgpack, in msgpack's own canonical form) and the decoder reads a frame of
  exactly that form with one struct unpack and no msgpack call; any other form of the same
  array (a traced envelope, a longer length code) goes through msgpack and the same checks.
  Decoding and encoding an envelope cost about a third of what they cost through msgpack.
  A node forwarding an envelope it read in that form does not encode it at all: the frame
  goes out again as it came, its ttl, hops and flags bytes changed (``WireCodec.relay``).
- Ack ``[1, 2, kind, runs]``; ``runs`` is a sequence of (key, count u16) records: ``count``
  envelope keys (``messages.envelope_key``: origin id and msg_id u64, big-endian) starting
  at ``key``. A node numbers its envelopes in order, so a batch of acks is usually one or a
  few runs (30 bytes a run instead of 28 bytes an envelope), with no per-envelope work in
  the codec.

The decoder is sans-IO (bytes in, messages out; ``MessageDecoder.messages`` returns all
that one read completed, in one call) and has two failure modes, chosen so that a caller is
never left guessing:

- ``FrameTooLarge``: the length prefix exceeds the limit. Framing cannot be trusted any more,
  so the decoder is **closed**; every later call raises ``DecoderClosed``. Drop the link.
- ``MalformedMessage`` (and ``UnsupportedVersion``): the frame was delimited correctly but its
  content is not a valid message. That frame is consumed and the decoder stays **usable**;
  the caller decides whether one bad message is worth a disconnect.
"""

from __future__ import annotations

import enum
import itertools
import operator
import struct
from typing import Any

import msgpack

from .frames import RelayedFrames as RelayedFrames
from .keyspace import KeySpace
from .messages import (
    WIRE_VERSION,
    Ack,
    AckKind,
    F_KNOWN,
    Envelope,
    ErrorCode,
    ErrorReport,
    FindSuccessor,
    Fingers,
    FoundSuccessor,
    GetFingers,
    GetNeighbours,
    Hello,
    Leave,
    Message,
    Neighbours,
    NodeRef,
    Notify,
    Ping,
    Pong,
)
from .wire_errors import DecoderClosed as DecoderClosed
from .wire_errors import FrameTooLarge as FrameTooLarge
from .wire_errors import MalformedMessage as MalformedMessage
from .wire_errors import UnsupportedVersion as UnsupportedVersion
from .wire_errors import WireError as WireError

HEADER = 4
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB, the stanza limit Prosody uses, plus headroom below it
MAX_FRAME_LIMIT = (1 << 32) - 1
_U64 = 1 << 64
_M64 = _U64 - 1
_ENV_FIXED = struct.Struct(">QBBB")  # msg_id, ttl, hops, flags; then origin and dest ids
_LEN = struct.Struct(">I")
_BIN8 = [bytes((0xC4, n)) for n in range(256)]  # msgpack bin8 tags, by length
_NIL = b"\xc0"
_NO_ERRORS: list = []  # what MessageDecoder.messages returns when a read was clean (never changed)
_new_envelope = tuple.__new__  # Envelope(...) without its Python-level __new__ (80 ns less)
_ACK_KINDS = frozenset(int(k) for k in AckKind)
# Where an envelope frame says its ttl, then hops and flags (one byte each): after the
# length, the body's prefix (5 bytes) and msg_id (8). A relay changes these three bytes
# and nothing else (WireCodec.relay).
RELAY_TTL_AT = HEADER + 5 + 8


class MessageType(enum.IntEnum):
    ENVELOPE = 1
    ACK = 2
    FIND_SUCCESSOR = 3
    FOUND_SUCCESSOR = 4
    GET_NEIGHBOURS = 5
    NEIGHBOURS = 6
    NOTIFY = 7
    PING = 8
    PONG = 9
    LEAVE = 10
    HELLO = 11
    GET_FINGERS = 12
    FINGERS = 13


class WireCodec:
    """Turns messages into frame bodies and back, validating every field on the way in."""

    def __init__(
        self,
        space: KeySpace,
        *,
        max_payload: int = DEFAULT_MAX_FRAME - 4096,
        max_trace: int = 255,
        max_successors: int = 256,
        max_addr: int = 255,
        max_acks: int = 8192,
    ) -> None:
        self.space = space
        self.max_payload = max_payload
        self.max_trace = max_trace
        self.max_successors = max_successors
        self.max_addr = max_addr
        self.max_acks = max_acks
        self._idb = space.id_bytes
        # With whole bytes per id (160 bits: 20 bytes) every received id is in the space.
        self._ids_can_overflow = space.bits % 8 != 0
        self._packer = msgpack.Packer(use_bin_type=True)
        # An envelope frame as the encoder writes it: fixarray of 5, version, type 1, then
        # the header as bin8; after the header, the payload (bin8/16/32) and nil or a trace.
        idb = self._idb
        self._env_prefix = bytes((0x95, WIRE_VERSION, 1, 0xC4, 11 + 2 * idb))
        self._env_start = struct.Struct(">I5sQBBB")  # frame length, prefix, fixed fields
        self._env_fixed = struct.Struct(f">QBBB{idb}s{idb}s")
        self._env_tag = 5 + 11 + 2 * idb  # where the payload's bin tag sits in the body
        # Relaying (see ``relay``): a frame in the encoder's form is this many bytes longer
        # than its payload, one more when the payload is over 255 bytes (its bin16 tag).
        self.relay_over = HEADER + self._env_tag + 3
        # MessageDecoder.messages reads a frame's length, the envelope prefix, the fixed
        # fields, both ids, the payload's tag and the byte after it (a bin8 payload's
        # length) with this one unpack.
        self._env_frame_head = struct.Struct(f">I5sQBBB{idb}s{idb}sBB")

    # -- encoding -------------------------------------------------------------------------

    def _id(self, x: int) -> bytes:
        return x.to_bytes(self._idb, "big")

    def _ref(self, r: NodeRef | None) -> list[Any] | None:
        return None if r is None else [self._id(r.id), r.addr]

    def encode(self, msg: Message) -> bytes:
        """Encode one message into a frame body (no length prefix)."""
        if type(msg) is Envelope:
            return self.encode_frame(msg)[HEADER:]
        return self._packer.pack(self._to_list(msg))

    def encode_frame(self, msg: Message) -> bytes:
        if type(msg) is not Envelope:
            body = self._packer.pack(self._to_list(msg))
            return len(body).to_bytes(HEADER, "big") + body
        # The one place that lays out an envelope (see the module docstring); every stanza
        # at every hop comes through here.
        msg_id, origin, dest, ttl, hops, flags, payload, trace = msg  # type: ignore[misc]
        n = len(payload)
        if n < 256:
            tag = _BIN8[n]
        elif n < 65536:
            tag = b"\xc5" + n.to_bytes(2, "big")
        else:
            tag = b"\xc6" + n.to_bytes(4, "big")
        if trace:
            i = self._id
            tail = self._packer.pack([i(x) for x in trace])
        else:
            tail = _NIL
        idb = self._idb
        return b"".join((
            self._env_start.pack(self._env_tag + len(tag) + n + len(tail), self._env_prefix,
                                 msg_id, ttl, hops, flags),
            origin.to_bytes(idb, "big"), dest.to_bytes(idb, "big"), tag, payload, tail))

    def relay(self, frame: bytes | bytearray | memoryview, ttl: int, hops: int, flags: int
              ) -> bytes:
        """The frame of a forwarded envelope, made from the frame it arrived in.

        ``frame`` is a frame that ``MessageDecoder.messages(starts)`` marks as relayable (an
        envelope in the encoder's form without a trace; ``relay_over + len(payload) + (1 if
        the payload is over 255 bytes)`` long). The result is exactly ``encode_frame`` of
        the envelope with these ttl, hops and flags: no hop changes anything else. The node
        core does this to a whole read's frames in place (see ``RingNode.handle_messages``),
        for a fraction of what encoding them afresh costs.
        """
        out = bytearray(frame)
        out[RELAY_TTL_AT : RELAY_TTL_AT + 3] = bytes((ttl, hops, flags))
        return bytes(out)

    def _to_list(self, msg: Any) -> list[Any]:  # (Any: the type tests below do not narrow)
        v = WIRE_VERSION
        i = self._id
        t = type(msg)
        if t is Ack:
            return [v, 2, int(msg.kind), self._ack_runs(msg.ids)]
        if t is FindSuccessor:
            return [v, 3, msg.req_id, i(msg.key), self._ref(msg.requester), msg.hops, msg.ttl]
        if t is FoundSuccessor:
            return [v, 4, msg.req_id, i(msg.key), self._ref(msg.successor), msg.hops]
        if t is GetNeighbours:
            return [v, 5, msg.req_id, True] if msg.notify else [v, 5, msg.req_id]
        if t is Neighbours:
            return [v, 6, msg.req_id, self._ref(msg.predecessor),
                    [self._ref(s) for s in msg.successors]]
        if t is Notify:
            return [v, 7]
        if t is Ping:
            return [v, 8, msg.req_id]
        if t is Pong:
            return [v, 9, msg.req_id]
        if t is Leave:
            return [v, 10, self._ref(msg.predecessor), [self._ref(s) for s in msg.successors]]
        if t is Hello:
            return [v, 11, self._ref(msg.node)]
        if t is GetFingers:
            return [v, 12, msg.req_id]
        if t is Fingers:
            return [v, 13, msg.req_id, [self._ref(f) for f in msg.fingers]]
        raise TypeError(f"not a ring message: {type(msg).__name__}")

    def _ack_runs(self, keys: tuple[int, ...]) -> bytes:
        """Envelope keys as (first key, count) records; a run never crosses into another
        origin's keys and counts at most 65535."""
        n = len(keys)
        if n > 1:
            # The usual batch, one run (a node numbers its envelopes in order), is told in
            # C: n strictly increasing keys from first to first + n - 1 are exactly that
            # run. About a quarter of the cost of the loop below, which finds runs key by key.
            first = keys[0]
            if (keys[-1] - first == n - 1 and n <= 0xFFFF and (first & _M64) + n <= _U64
                    and all(map(operator.lt, keys, keys[1:]))):
                return first.to_bytes(self._idb + 8, "big") + n.to_bytes(2, "big")
        it = iter(keys)
        for start in it:
            break
        else:
            return b""
        rec = self._idb + 8
        out = []
        prev = start
        for k in it:
            if k == prev + 1 and k & _M64 and k - start < 0xFFFF:
                prev = k
                continue
            out.append(start.to_bytes(rec, "big") + (prev - start + 1).to_bytes(2, "big"))
            start = prev = k
        out.append(start.to_bytes(rec, "big") + (prev - start + 1).to_bytes(2, "big"))
        return out[0] if len(out) == 1 else b"".join(out)

    def encode_error_report(self, rep: ErrorReport) -> bytes:
        return self._packer.pack([int(rep.code), rep.msg_id, self._id(rep.dest), self._id(rep.at_node)])

    # -- decoding -------------------------------------------------------------------------

    def decode(self, body: bytes) -> Message:
        """Decode one frame body. Raises MalformedMessage or UnsupportedVersion."""
        if type(body) is not bytes:
            body = bytes(body)
        if body.startswith(self._env_prefix):
            env = self._envelope_in(body)
            if env is not None:
                return env
        try:
            obj = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated exception types
            raise MalformedMessage(f"undecodable msgpack: {exc.__class__.__name__}") from None
        if not isinstance(obj, list) or len(obj) < 2:
            raise MalformedMessage("a message is an array [version, type, ...]")
        if obj[0] != WIRE_VERSION or type(obj[0]) is not int:
            raise UnsupportedVersion(f"wire version {obj[0]!r} not supported (want {WIRE_VERSION})")
        try:
            return self._from_list(obj)
        except MalformedMessage:
            raise
        except (TypeError, ValueError, IndexError) as exc:
            raise MalformedMessage(f"bad {self._type_name(obj[1])} message: {exc}") from None

    def _envelope_in(self, buf: bytes) -> Envelope | None:
        """The envelope whose frame body is ``buf``, read directly if it has the encoder's
        form and no trace; None to leave any other form to msgpack. The caller checked the
        prefix. Raises MalformedMessage for a bad flag, payload size or id."""
        e = len(buf)
        p = self._env_tag
        if e - p < 3:
            return None
        tag = buf[p]
        if tag == 0xC4:
            q = p + 2
            n = buf[p + 1]
        elif tag == 0xC5:
            q = p + 3
            n = (buf[p + 1] << 8) | buf[p + 2]
        elif tag == 0xC6 and e - p >= 6:
            q = p + 5
            n = _LEN.unpack_from(buf, p + 1)[0]
        else:
            return None
        t = q + n
        if t + 1 != e or buf[t] != 0xC0:
            return None  # a trace follows (or the frame is not what it claims): msgpack decides
        msg_id, ttl, hops, flags, ob, db = self._env_fixed.unpack_from(buf, 5)
        if flags & ~F_KNOWN:
            raise MalformedMessage(f"unknown envelope flags {flags:#x}")
        if n > self.max_payload:
            raise MalformedMessage(f"envelope payload over {self.max_payload} bytes")
        origin = int.from_bytes(ob, "big")
        dest = int.from_bytes(db, "big")
        if self._ids_can_overflow and (origin >= self.space.modulus or dest >= self.space.modulus):
            raise MalformedMessage("envelope origin or destination outside the key space")
        return _new_envelope(Envelope, (msg_id, origin, dest, ttl, hops, flags, buf[q:t], ()))

    @staticmethod
    def _type_name(t: object) -> str:
        try:
            return MessageType(t).name  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return f"type-{t!r}"

    def _arity(self, obj: list[Any], n: int) -> None:
        if len(obj) != n:
            raise MalformedMessage(
                f"{self._type_name(obj[1])} message has {len(obj)} fields, expected {n}"
            )

    def _int(self, x: Any, what: str, bits: int = 64) -> int:
        if type(x) is not int or x < 0 or x >= (1 << bits):
            raise MalformedMessage(f"{what} must be an unsigned {bits}-bit integer")
        return x

    def _rid(self, x: Any, what: str) -> int:
        if type(x) is not bytes or len(x) != self._idb:
            raise MalformedMessage(f"{what} must be {self._idb} bytes")
        v = int.from_bytes(x, "big")
        if v >= self.space.modulus:
            raise MalformedMessage(f"{what} outside the key space")
        return v

    def _rref(self, x: Any, what: str, optional: bool = False) -> NodeRef | None:
        if x is None and optional:
            return None
        if not isinstance(x, list) or len(x) != 2:
            raise MalformedMessage(f"{what} must be [id, address]")
        addr = x[1]
        if type(addr) is not str or len(addr) > self.max_addr:
            raise MalformedMessage(f"{what} address must be a string of at most {self.max_addr}")
        return NodeRef(self._rid(x[0], what), addr)

    def _rrefs(self, x: Any, what: str) -> tuple[NodeRef, ...]:
        if not isinstance(x, list) or len(x) > self.max_successors:
            raise MalformedMessage(f"{what} must be a list of at most {self.max_successors}")
        return tuple(self._rref(r, what) for r in x)  # type: ignore[misc]

    def _from_list(self, obj: list[Any]) -> Message:
        t = obj[1]
        if t == 1:
            if len(obj) != 5:
                self._arity(obj, 5)
            _, _, header, payload, trace_raw = obj
            idb = self._idb
            if type(header) is not bytes or len(header) != 11 + 2 * idb:
                raise MalformedMessage(f"envelope header must be {11 + 2 * idb} bytes")
            if type(payload) is not bytes:
                raise MalformedMessage("envelope payload must be bytes")
            if len(payload) > self.max_payload:
                raise MalformedMessage(f"envelope payload over {self.max_payload} bytes")
            msg_id, ttl, hops, flags = _ENV_FIXED.unpack_from(header)
            if flags & ~F_KNOWN:
                raise MalformedMessage(f"unknown envelope flags {flags:#x}")
            origin = int.from_bytes(header[11 : 11 + idb], "big")
            dest = int.from_bytes(header[11 + idb :], "big")
            if self._ids_can_overflow and (origin >= self.space.modulus or dest >= self.space.modulus):
                raise MalformedMessage("envelope origin or destination outside the key space")
            if trace_raw is None:
                trace: tuple[int, ...] = ()
            elif isinstance(trace_raw, list) and len(trace_raw) <= self.max_trace:
                trace = tuple(self._rid(x, "trace entry") for x in trace_raw)
            else:
                raise MalformedMessage(f"trace must be a list of at most {self.max_trace} ids")
            return Envelope(msg_id, origin, dest, ttl, hops, flags, payload, trace)
        if t == 2:
            self._arity(obj, 4)
            kind, blob = obj[2], obj[3]
            if type(kind) is not int or kind not in _ACK_KINDS:
                raise MalformedMessage(f"ack kind must be one of {sorted(_ACK_KINDS)}")
            return Ack(AckKind(kind), self._ack_keys(blob))
        if t == 3:
            self._arity(obj, 7)
            return FindSuccessor(
                self._int(obj[2], "req_id"),
                self._rid(obj[3], "key"),
                self._rref(obj[4], "requester"),  # type: ignore[arg-type]
                self._int(obj[5], "hops", 8),
                self._int(obj[6], "ttl", 8),
            )
        if t == 4:
            self._arity(obj, 6)
            return FoundSuccessor(
                self._int(obj[2], "req_id"),
                self._rid(obj[3], "key"),
                self._rref(obj[4], "successor"),  # type: ignore[arg-type]
                self._int(obj[5], "hops", 8),
            )
        if t == 5:
            if len(obj) == 4:
                if obj[3] is not True:
                    raise MalformedMessage("get-neighbours notify flag must be true when present")
                return GetNeighbours(self._int(obj[2], "req_id"), True)
            self._arity(obj, 3)
            return GetNeighbours(self._int(obj[2], "req_id"))
        if t == 6:
            self._arity(obj, 5)
            return Neighbours(
                self._int(obj[2], "req_id"),
                self._rref(obj[3], "predecessor", optional=True),
                self._rrefs(obj[4], "successors"),
            )
        if t == 7:
            self._arity(obj, 2)
            return Notify()
        if t == 8:
            self._arity(obj, 3)
            return Ping(self._int(obj[2], "req_id"))
        if t == 9:
            self._arity(obj, 3)
            return Pong(self._int(obj[2], "req_id"))
        if t == 10:
            self._arity(obj, 4)
            return Leave(
                self._rref(obj[2], "predecessor", optional=True),
                self._rrefs(obj[3], "successors"),
            )
        if t == 11:
            self._arity(obj, 3)
            return Hello(self._rref(obj[2], "node"))  # type: ignore[arg-type]
        if t == 12:
            self._arity(obj, 3)
            return GetFingers(self._int(obj[2], "req_id"))
        if t == 13:
            self._arity(obj, 4)
            return Fingers(self._int(obj[2], "req_id"), self._rrefs(obj[3], "fingers"))
        raise MalformedMessage(f"unknown message type {t!r}")

    def _ack_keys(self, blob: Any) -> tuple[int, ...]:
        key_len = self._idb + 8
        rec = key_len + 2
        if type(blob) is not bytes or len(blob) % rec:
            raise MalformedMessage(f"ack runs must be bytes, a whole number of {rec}-byte records")
        if len(blob) // rec > self.max_acks:
            raise MalformedMessage(f"ack carries more than {self.max_acks} ids")
        runs = []
        total = 0
        fb = int.from_bytes
        for i in range(0, len(blob), rec):
            k = fb(blob[i : i + key_len], "big")
            c = (blob[i + key_len] << 8) | blob[i + key_len + 1]
            if not c or (k & _M64) + c > _U64:
                raise MalformedMessage("ack run empty or past its origin's last msg_id")
            if self._ids_can_overflow and k >> 64 >= self.space.modulus:
                raise MalformedMessage("ack origin outside the key space")
            total += c
            runs.append(range(k, k + c))
        if total > self.max_acks:
            raise MalformedMessage(f"ack carries more than {self.max_acks} ids")
        if len(runs) == 1:
            return tuple(runs[0])
        return tuple(itertools.chain.from_iterable(runs))

    def encode_probe_reply(self, msg_id: int, dest: int, hops: int, trace: tuple[int, ...]) -> bytes:
        return self._packer.pack([msg_id, self._id(dest), hops, [self._id(x) for x in trace]])

    def decode_probe_reply(self, payload: bytes) -> tuple[int, int, int, tuple[int, ...]]:
        try:
            obj = msgpack.unpackb(payload, raw=False)
            if not isinstance(obj, list) or len(obj) != 4 or not isinstance(obj[3], list):
                raise MalformedMessage("probe reply must be [msg_id, dest, hops, trace]")
            if len(obj[3]) > self.max_trace:
                raise MalformedMessage("probe trace too long")
            return (self._int(obj[0], "msg_id"), self._rid(obj[1], "dest"),
                    self._int(obj[2], "hops", 8), tuple(self._rid(x, "trace") for x in obj[3]))
        except MalformedMessage:
            raise
        except Exception as exc:
            raise MalformedMessage(f"bad probe reply: {exc}") from None

    def encode_lookup_request(self, req_id: int, addr: str) -> bytes:
        return self._packer.pack([req_id, addr])

    def decode_lookup_request(self, payload: bytes) -> tuple[int, str]:
        try:
            obj = msgpack.unpackb(payload, raw=False)
        except Exception as exc:
            raise MalformedMessage(f"bad lookup request: {exc.__class__.__name__}") from None
        if not isinstance(obj, list) or len(obj) != 2:
            raise MalformedMessage("lookup request must be [req_id, address]")
        addr = obj[1]
        if type(addr) is not str or len(addr) > self.max_addr:
            raise MalformedMessage(f"lookup address must be a string of at most {self.max_addr}")
        return self._int(obj[0], "req_id"), addr

    def decode_error_report(self, payload: bytes) -> ErrorReport:
        try:
            obj = msgpack.unpackb(payload, raw=False)
            if not isinstance(obj, list) or len(obj) != 4:
                raise MalformedMessage("error report must be [code, msg_id, dest, at_node]")
            return ErrorReport(ErrorCode(obj[0]), self._int(obj[1], "msg_id"),
                               self._rid(obj[2], "dest"), self._rid(obj[3], "at_node"))
        except MalformedMessage:
            raise
        except Exception as exc:
            raise MalformedMessage(f"bad error report: {exc}") from None


_shared: dict[KeySpace, WireCodec] = {}


def shared_codec(space: KeySpace) -> WireCodec:
    """One codec per key space with default limits. A codec owns a msgpack Packer and its
    buffer (about 128 KiB); a simulation of 10**6 nodes cannot give each node its own."""
    codec = _shared.get(space)
    if codec is None:
        codec = _shared[space] = WireCodec(space)
    return codec


class FrameDecoder:
    """Splits a byte stream into frame bodies, whatever the read boundaries were."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if not 1 <= max_frame <= MAX_FRAME_LIMIT:
            raise ValueError(f"max_frame must be in 1..{MAX_FRAME_LIMIT}")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._pos = 0
        self.closed = False

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise DecoderClosed("frame decoder closed after a fatal framing error")
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def _first_length(self) -> int | None:
        """The body length of the first buffered frame once all of it is here, else None."""
        if self.closed:
            raise DecoderClosed("frame decoder closed after a fatal framing error")
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER:
            return None
        n = int.from_bytes(buf[pos : pos + HEADER], "big")
        if n > self.max_frame:
            self._too_large(n)
        if len(buf) - pos - HEADER < n:
            return None
        return n

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None if more bytes are needed."""
        n = self._first_length()
        if n is None:
            return None
        start = self._pos + HEADER
        body = bytes(self._buf[start : start + n])
        self._pos = start + n
        return body

    def _too_large(self, n: int) -> None:
        self.closed = True
        self._buf = bytearray()
        self._pos = 0
        raise FrameTooLarge(f"frame of {n} bytes exceeds the limit of {self.max_frame}")

    def _complete(self) -> bytes | None:
        """Every buffered byte, as one bytes object, if at least one frame is complete (one
        copy per read, so frames and payloads are sliced from bytes, not a bytearray).
        None while the first frame is incomplete: a large frame trickling in is never
        copied. ``_consume`` then drops what was read."""
        if self._first_length() is None:
            return None
        with memoryview(self._buf) as view:
            return bytes(view[self._pos :])

    def _consume(self, n: int) -> None:
        pos = self._pos + n
        if pos >= len(self._buf):
            self._buf.clear()
            self._pos = 0
        else:
            self._pos = pos


class MessageDecoder:
    """Bytes in, messages out: a FrameDecoder and a WireCodec together."""

    def __init__(self, codec: WireCodec, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.codec = codec
        self.frames = FrameDecoder(max_frame)
        # The bytes the last call to ``messages`` read its frames from (``starts`` point
        # into them).
        self.last_read = b""

    @property
    def closed(self) -> bool:
        return self.frames.closed

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.frames.feed(data)

    def next_message(self) -> Message | None:
        body = self.frames.next_frame()
        if body is None:
            return None
        return self.codec.decode(body)

    def messages(self, starts: list[int | None] | None = None
                 ) -> tuple[list[Message], list[MalformedMessage]]:
        """Every message the buffered bytes complete, in order, and the errors of the
        malformed frames among them (consumed; the caller decides what they cost the peer):
        the fast way to read.

        ``starts``, if given, gets one item per message returned: for an envelope read in
        the encoder's form without a trace, where its frame starts in ``last_read`` (see
        ``WireCodec.relay``), so that a node forwarding it sends those bytes on instead of
        encoding them again; None for anything else.

        An oversized length prefix ends the list; the call that meets it first raises
        ``FrameTooLarge`` (and the decoder is closed), so the messages before it are never
        lost.
        """
        frames = self.frames
        data = frames._complete()
        if data is None:
            return [], _NO_ERRORS
        self.last_read = data
        codec = self.codec
        decode = codec.decode
        # Narrow key spaces, whose ids need a range check, never match: always through decode.
        # (An impossible flag mask did that only for envelopes with some flag set, so an
        # id beyond such a space came through when the flags were 0.)
        prefix = codec._env_prefix if not codec._ids_can_overflow else None
        head = codec._env_frame_head
        unpack_head = head.unpack_from
        head_size = head.size
        unpack_len = _LEN.unpack_from
        # Payload offsets in the frame after a bin8 or bin16 tag.
        end8 = HEADER + codec._env_tag + 2
        # A frame of the encoder's form is that many bytes longer than its payload (the nil
        # after it included): tested on the small difference, no big offsets computed. (So
        # a frame that passes is long enough to hold the head read with it.)
        over8 = end8 - HEADER + 1
        over16 = over8 + 1
        unknown = ~F_KNOWN
        max_payload = codec.max_payload
        max_frame = frames.max_frame
        new, fb = _new_envelope, int.from_bytes
        out: list[Message] = []
        push = out.append
        keep = starts.append if starts is not None else None
        errors: list[MalformedMessage] = _NO_ERRORS
        size = len(data)
        last_head = size - head_size  # the last offset a whole envelope head fits at
        # The origin of the envelope read last, as read and as a number: consecutive
        # envelopes from one origin share one int (less to make, and to keep in custody).
        last_ob, origin = None, 0
        i = 0
        while True:
            # An envelope in the encoder's form with a payload under 64 KiB and no trace is
            # read right here (as WireCodec._envelope_in would read it); anything else,
            # including every error, goes through decode.
            if i <= last_head:
                n, pre, msg_id, ttl, hops, flags, ob, db, tag, p = unpack_head(data, i)
            elif size - i >= HEADER:
                n = unpack_len(data, i)[0]
                pre = None
            else:
                break
            e = i + HEADER + n
            if e > size or n > max_frame:
                break  # incomplete, or too large: raised by the next call, which starts there
            if pre == prefix and not flags & unknown:
                if tag == 0xC4:  # p: the payload's length
                    q = i + end8
                    ok = n - p == over8 and p <= max_payload
                    start: int | None = i  # (bin8 is the encoder's form for any payload it can hold)
                elif tag == 0xC5:  # p: the high byte of the payload's length
                    q = i + end8 + 1
                    p = (p << 8) | data[q - 1]
                    ok = n - p == over16 and p <= max_payload
                    # (a bin16 tag on a payload under 256 bytes is valid, but not the
                    # encoder's form: such an envelope is encoded afresh when forwarded)
                    start = i if p > 255 else None
                else:
                    ok = False
                if ok and data[e - 1] == 0xC0:
                    if ob != last_ob:  # (a read's envelopes mostly share a few origins)
                        last_ob, origin = ob, fb(ob, "big")
                    push(new(Envelope, (msg_id, origin, fb(db, "big"), ttl, hops, flags,
                                        data[q : e - 1], ())))
                    if keep is not None:
                        keep(start)
                    i = e
                    continue
            s = i + HEADER
            i = e
            try:
                push(decode(data[s:e]))
                if keep is not None:
                    keep(None)
            except MalformedMessage as exc:
                if errors is _NO_ERRORS:
                    errors = []
                errors.append(exc)
        frames._consume(i)
        return out, errors


def frame(body: bytes) -> bytes:
    """Length-prefix a frame body."""
    if len(body) > MAX_FRAME_LIMIT:
        raise ValueError("frame body too large for a 4-byte length")
    return len(body).to_bytes(HEADER, "big") + body
