"""Wire format: msgpack messages in length-prefixed frames.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack: an array
``[version, type, field, ...]``. Identifiers travel as fixed-width big-endian bytes (they are
wider than msgpack's 64-bit integers).

The two messages every stanza pays for at every hop carry their fixed fields packed:

- Envelope ``[1, 1, header, payload, trace|nil]``; ``header`` is msg_id (u64), ttl, hops,
  flags (u8 each), origin id, destination id. One struct unpack replaces eight validated
  msgpack fields: about 1 us less per hop in Python.
- Ack ``[1, 2, kind, ids]``; ``ids`` is a run of (origin id, msg_id u64) records: the
  big-endian bytes of each envelope's key (``messages.envelope_key``).

The decoder is sans-IO (bytes in, messages out) and has two failure modes, chosen so that a
caller is never left guessing:

- ``FrameTooLarge``: the length prefix exceeds the limit. Framing cannot be trusted any more,
  so the decoder is **closed**; every later call raises ``DecoderClosed``. Drop the link.
- ``MalformedMessage`` (and ``UnsupportedVersion``): the frame was delimited correctly but its
  content is not a valid message. That frame is consumed and the decoder stays **usable**;
  the caller decides whether one bad message is worth a disconnect.
"""

from __future__ import annotations

import enum
import struct
from typing import Any

import msgpack

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
    FoundSuccessor,
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

HEADER = 4
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB, the stanza limit Prosody uses, plus headroom below it
MAX_FRAME_LIMIT = (1 << 32) - 1
_U64 = 1 << 64
_ENV_FIXED = struct.Struct(">QBBB")  # msg_id, ttl, hops, flags; then origin and dest ids
_MSG_ID = struct.Struct(">Q")
_ACK_KINDS = frozenset(int(k) for k in AckKind)


class WireError(Exception):
    """The peer sent bytes that are not a valid ringmesh frame (a remote error)."""


class FrameTooLarge(WireError):
    pass


class MalformedMessage(WireError):
    pass


class UnsupportedVersion(MalformedMessage):
    pass


class DecoderClosed(RuntimeError):
    """Local misuse: the decoder already failed fatally and must not be fed again."""


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

    # -- encoding -------------------------------------------------------------------------

    def _id(self, x: int) -> bytes:
        return x.to_bytes(self._idb, "big")

    def _ref(self, r: NodeRef | None) -> list[Any] | None:
        return None if r is None else [self._id(r.id), r.addr]

    def encode(self, msg: Message) -> bytes:
        """Encode one message into a frame body (no length prefix)."""
        return self._packer.pack(self._to_list(msg))

    def encode_frame(self, msg: Message) -> bytes:
        body = self._packer.pack(self._to_list(msg))
        return len(body).to_bytes(HEADER, "big") + body

    def _to_list(self, msg: Message) -> list[Any]:
        v = WIRE_VERSION
        i = self._id
        t = type(msg)
        if t is Envelope:  # first: every stanza at every hop comes through here
            idb = self._idb
            header = (_ENV_FIXED.pack(msg.msg_id, msg.ttl, msg.hops, msg.flags)  # type: ignore[union-attr]
                      + msg.origin.to_bytes(idb, "big") + msg.dest.to_bytes(idb, "big"))  # type: ignore[union-attr]
            trace = [i(x) for x in msg.trace] if msg.trace else None  # type: ignore[union-attr]
            return [v, 1, header, msg.payload, trace]  # type: ignore[union-attr]
        if t is Ack:
            rec = self._idb + 8
            return [v, 2, int(msg.kind), b"".join([k.to_bytes(rec, "big") for k in msg.ids])]
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
        raise TypeError(f"not a ring message: {type(msg).__name__}")

    def encode_error_report(self, rep: ErrorReport) -> bytes:
        return self._packer.pack([int(rep.code), rep.msg_id, self._id(rep.dest), self._id(rep.at_node)])

    # -- decoding -------------------------------------------------------------------------

    def decode(self, body: bytes) -> Message:
        """Decode one frame body. Raises MalformedMessage or UnsupportedVersion."""
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
            rec = self._idb + 8
            if type(blob) is not bytes or len(blob) % rec:
                raise MalformedMessage(f"ack ids must be bytes, a whole number of {rec}-byte records")
            if len(blob) // rec > self.max_acks:
                raise MalformedMessage(f"ack carries more than {self.max_acks} ids")
            fb = int.from_bytes
            ids = tuple([fb(blob[i : i + rec], "big") for i in range(0, len(blob), rec)])
            if self._ids_can_overflow and any(k >> 64 >= self.space.modulus for k in ids):
                raise MalformedMessage("ack origin outside the key space")
            return Ack(AckKind(kind), ids)
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
        raise MalformedMessage(f"unknown message type {t!r}")

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

    def feed(self, data: bytes) -> None:
        if self.closed:
            raise DecoderClosed("frame decoder closed after a fatal framing error")
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """The next complete frame body, or None if more bytes are needed."""
        if self.closed:
            raise DecoderClosed("frame decoder closed after a fatal framing error")
        buf, pos = self._buf, self._pos
        if len(buf) - pos < HEADER:
            return None
        n = int.from_bytes(buf[pos : pos + HEADER], "big")
        if n > self.max_frame:
            self.closed = True
            self._buf = bytearray()
            self._pos = 0
            raise FrameTooLarge(f"frame of {n} bytes exceeds the limit of {self.max_frame}")
        end = pos + HEADER + n
        if len(buf) < end:
            return None
        body = bytes(buf[pos + HEADER : end])
        self._pos = end
        return body


class MessageDecoder:
    """Bytes in, messages out: a FrameDecoder and a WireCodec together."""

    def __init__(self, codec: WireCodec, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.codec = codec
        self.frames = FrameDecoder(max_frame)

    @property
    def closed(self) -> bool:
        return self.frames.closed

    def feed(self, data: bytes) -> None:
        self.frames.feed(data)

    def next_message(self) -> Message | None:
        body = self.frames.next_frame()
        if body is None:
            return None
        return self.codec.decode(body)


def frame(body: bytes) -> bytes:
    """Length-prefix a frame body."""
    if len(body) > MAX_FRAME_LIMIT:
        raise ValueError("frame body too large for a 4-byte length")
    return len(body).to_bytes(HEADER, "big") + body
