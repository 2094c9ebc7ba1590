"""What rides inside a ring envelope when the ring carries XMPP: a small versioned format.

The ring core treats an envelope's payload as opaque bytes. Every node that handles stanzas
must read the same thing out of them, a ring may run two releases side by side during an
upgrade, and a payload from a buggy or compromised ring peer must never crash a node: so the
format has a version, one kind per message, and every field is checked on the way in.

    [version, kind, body, meta]          (a msgpack array)

- ``version``: :data:`PAYLOAD_VERSION`. Unknown versions are refused, not guessed at.
- ``kind``: a :class:`PayloadKind`.
- ``body``: bytes: a serialised stanza for the stanza kinds, empty for the registry kinds.
- ``meta``: a map with short keys, per kind (below). Node ids travel as big-endian bytes of
  the key space's width.

==================  ==================================  =====================================
kind                dest key of the envelope            meta
==================  ==================================  =====================================
STANZA              the key of the entity (``to``)      ``e``: id of the edge it came in by
OUTBOUND            the node id of the chosen edge      ``r``: redirects, ``a``: edges to avoid
EDGE_ANNOUNCE       the registry key                    ``i``: edge id, ``d``: domains, ``t``: ttl
EDGE_QUERY          the registry key                    (none: the answer goes to the origin)
EDGE_LIST           the node id of the asker            ``l``: [[edge id, domains, ttl], ...]
==================  ==================================  =====================================
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from ring.keyspace import KeySpace

PAYLOAD_VERSION = 1


class PayloadKind(enum.IntEnum):
    STANZA = 1  # a stanza for the ring entity whose key is the envelope's destination
    OUTBOUND = 2  # a stanza for a remote domain, to be sent over s2s by the edge at dest
    EDGE_ANNOUNCE = 3  # an edge says it is alive and serves these domains
    EDGE_QUERY = 4  # which edges are alive?
    EDGE_LIST = 5  # the registry's answer


class MalformedPayload(ValueError):
    """A payload that is not in this format (or not in this version of it)."""


@dataclass(frozen=True, slots=True)
class PayloadLimits:
    """Caps on what one payload may make a node hold."""

    max_stanza_bytes: int = 512 * 1024  # as the s2s parser's stanza limit
    max_domains: int = 64  # per edge
    max_domain_chars: int = 1023  # RFC 7622 domainpart
    max_edges: int = 256  # per registry answer
    max_avoid: int = 16  # edges an outbound stanza was steered away from
    max_redirects: int = 8
    max_ttl: float = 3600.0


class StanzaPayload(NamedTuple):
    """A stanza for the entity at the destination key. ``edge``: the edge it entered by.

    A NamedTuple (immutable, and three times cheaper to make than a frozen dataclass): one
    is decoded for every stanza a node delivers."""

    stanza: bytes
    edge: int | None = None


@dataclass(frozen=True, slots=True)
class OutboundPayload:
    """A stanza for a remote domain. ``avoid``: edges known dead on the way here."""

    stanza: bytes
    redirects: int = 0
    avoid: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class EdgeEntry:
    """One live edge: its node id, the domains it federates for, seconds left to live."""

    edge: int
    domains: tuple[str, ...]
    ttl: float


@dataclass(frozen=True, slots=True)
class EdgeAnnounce:
    entry: EdgeEntry


@dataclass(frozen=True, slots=True)
class EdgeQuery:
    pass


@dataclass(frozen=True, slots=True)
class EdgeList:
    entries: tuple[EdgeEntry, ...]


Payload = StanzaPayload | OutboundPayload | EdgeAnnounce | EdgeQuery | EdgeList


class PayloadCodec:
    """Encodes and checks payloads for one key space."""

    def __init__(self, space: KeySpace, limits: PayloadLimits | None = None) -> None:
        self.space = space
        self.limits = limits or PayloadLimits()
        self._idb = space.id_bytes
        self._packer = msgpack.Packer(use_bin_type=True)
        self._last_edge: int | None = None  # an edge encodes its own id into every payload
        self._last_meta: dict[str, bytes] = {}
        self._last_raw_id: object = None  # the last id read, as bytes and as a number
        self._last_read_id = 0

    # -- encoding -------------------------------------------------------------------------

    def _id(self, x: int) -> bytes:
        return x.to_bytes(self._idb, "big")

    def encode(self, payload: Payload) -> bytes:
        t = type(payload)
        if t is StanzaPayload:
            return self.encode_stanza(payload.stanza, payload.edge)
        if t is OutboundPayload:
            return self.encode_outbound(payload.stanza, payload.redirects, payload.avoid)
        if t is EdgeAnnounce:
            return self._packer.pack([PAYLOAD_VERSION, PayloadKind.EDGE_ANNOUNCE, b"",
                                      self._entry_meta(payload.entry)])
        if t is EdgeQuery:
            return self._packer.pack([PAYLOAD_VERSION, PayloadKind.EDGE_QUERY, b"", {}])
        if t is EdgeList:
            entries = [[self._id(e.edge), list(e.domains), float(e.ttl)] for e in payload.entries]
            return self._packer.pack([PAYLOAD_VERSION, PayloadKind.EDGE_LIST, b"", {"l": entries}])
        raise TypeError(f"not a payload: {payload!r}")

    def encode_stanza(self, stanza: bytes, edge: int | None = None) -> bytes:
        """The hot path (one call per inbound stanza)."""
        if edge is None:
            meta = {}
        elif edge == self._last_edge:
            meta = self._last_meta
        else:
            meta = {"e": edge.to_bytes(self._idb, "big")}
            self._last_edge, self._last_meta = edge, meta
        return self._packer.pack([PAYLOAD_VERSION, 1, stanza, meta])

    def encode_outbound(self, stanza: bytes, redirects: int = 0, avoid: tuple[int, ...] = ()) -> bytes:
        meta: dict[str, Any] = {"r": redirects} if redirects else {}
        if avoid:
            meta["a"] = [self._id(x) for x in avoid[-self.limits.max_avoid:]]
        return self._packer.pack([PAYLOAD_VERSION, 2, stanza, meta])

    def _entry_meta(self, e: EdgeEntry) -> dict[str, Any]:
        return {"i": self._id(e.edge), "d": list(e.domains), "t": float(e.ttl)}

    # -- decoding -------------------------------------------------------------------------

    def decode(self, data: bytes) -> Payload:
        """Read a payload; raises :class:`MalformedPayload` saying what is wrong."""
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True,
                                  max_bin_len=self.limits.max_stanza_bytes,
                                  max_str_len=64 * 1024, max_array_len=4096, max_map_len=16)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise MalformedPayload(f"not a msgpack payload: {exc}") from None
        if not isinstance(obj, list) or len(obj) != 4:
            raise MalformedPayload("a payload is a 4-element array")
        version, kind, body, meta = obj
        if version != PAYLOAD_VERSION:
            raise MalformedPayload(f"unsupported payload version {version!r}")
        if not isinstance(body, bytes) or not isinstance(meta, dict):
            raise MalformedPayload("payload body must be bytes and meta a map")
        if kind == 1 and type(kind) is int:  # STANZA, the hot path: no enum lookup
            if not body or len(body) > self.limits.max_stanza_bytes:
                self._check_stanza(body)  # raises, saying why
            edge = meta.get("e")
            return StanzaPayload(body, self._read_id(edge, "edge") if edge is not None else None)
        try:
            kind = PayloadKind(kind)
        except ValueError:
            raise MalformedPayload(f"unknown payload kind {kind!r}") from None
        if kind is PayloadKind.STANZA:
            self._check_stanza(body)
            edge = meta.get("e")
            return StanzaPayload(body, self._read_id(edge, "edge") if edge is not None else None)
        if kind is PayloadKind.OUTBOUND:
            self._check_stanza(body)
            redirects = meta.get("r", 0)
            if type(redirects) is not int or not 0 <= redirects <= self.limits.max_redirects:
                raise MalformedPayload(f"bad redirect count {redirects!r}")
            avoid = meta.get("a", [])
            if not isinstance(avoid, list) or len(avoid) > self.limits.max_avoid:
                raise MalformedPayload("bad avoid list")
            return OutboundPayload(body, redirects, tuple(self._read_id(x, "avoided edge") for x in avoid))
        if kind is PayloadKind.EDGE_ANNOUNCE:
            return EdgeAnnounce(self._read_entry(meta.get("i"), meta.get("d"), meta.get("t")))
        if kind is PayloadKind.EDGE_QUERY:
            return EdgeQuery()
        entries = meta.get("l")
        if not isinstance(entries, list) or len(entries) > self.limits.max_edges:
            raise MalformedPayload("bad edge list")
        out = []
        for item in entries:
            if not isinstance(item, list) or len(item) != 3:
                raise MalformedPayload("an edge list entry is [id, domains, ttl]")
            out.append(self._read_entry(*item))
        return EdgeList(tuple(out))

    def _check_stanza(self, body: bytes) -> None:
        if not body:
            raise MalformedPayload("empty stanza")
        if len(body) > self.limits.max_stanza_bytes:
            raise MalformedPayload(f"stanza of {len(body)} bytes over {self.limits.max_stanza_bytes}")

    def _read_id(self, raw: object, what: str) -> int:
        if raw == self._last_raw_id:  # most payloads name the same few edges
            return self._last_read_id
        if not isinstance(raw, bytes) or len(raw) != self._idb:
            raise MalformedPayload(f"{what} id must be {self._idb} bytes")
        self._last_raw_id, self._last_read_id = raw, int.from_bytes(raw, "big")
        return self._last_read_id

    def _read_entry(self, raw_id: object, domains: object, ttl: object) -> EdgeEntry:
        lim = self.limits
        edge = self._read_id(raw_id, "edge")
        if not isinstance(domains, list) or not 1 <= len(domains) <= lim.max_domains:
            raise MalformedPayload(f"an edge serves 1 to {lim.max_domains} domains")
        for d in domains:
            if not isinstance(d, str) or not 0 < len(d) <= lim.max_domain_chars:
                raise MalformedPayload(f"bad domain {d!r}")
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= lim.max_ttl:
            raise MalformedPayload(f"bad ttl {ttl!r}")
        return EdgeEntry(edge, tuple(domains), float(ttl))
