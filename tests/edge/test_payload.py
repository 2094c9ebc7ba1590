"""The stanza envelope payload format: round trips, and every malformed payload refused by name."""

import msgpack
import pytest

from edge.payload import (
    PAYLOAD_VERSION,
    EdgeAnnounce,
    EdgeEntry,
    EdgeList,
    EdgeQuery,
    MalformedPayload,
    OutboundPayload,
    PayloadCodec,
    PayloadKind,
    PayloadLimits,
    StanzaPayload,
)
from ring.keyspace import KeySpace

SP = KeySpace()
CODEC = PayloadCodec(SP)
STANZA = b"<message to='echo@ring.test' from='a@peer.test/r' id='1'><body>hi</body></message>"
ID = SP.hash_bytes(b"edge")


@pytest.mark.parametrize("payload", [
    StanzaPayload(STANZA),
    StanzaPayload(STANZA, ID),
    OutboundPayload(STANZA),
    OutboundPayload(STANZA, 2, (ID, ID - 1)),
    EdgeAnnounce(EdgeEntry(ID, ("ring.test", "other.test"), 30.0)),
    EdgeQuery(),
    EdgeList(()),
    EdgeList((EdgeEntry(ID, ("ring.test",), 12.5), EdgeEntry(ID + 1, ("ring.test",), 1.0))),
])
def test_payloads_round_trip(payload):
    assert CODEC.decode(CODEC.encode(payload)) == payload


def test_the_fast_paths_write_what_encode_writes():
    assert CODEC.encode_stanza(STANZA, ID) == CODEC.encode(StanzaPayload(STANZA, ID))
    assert CODEC.encode_outbound(STANZA, 1, (ID,)) == CODEC.encode(OutboundPayload(STANZA, 1, (ID,)))


def raw(*items):
    return msgpack.packb(list(items), use_bin_type=True)


IDB = SP.to_bytes(ID)


@pytest.mark.parametrize(("data", "message"), [
    (b"\xc1", "not a msgpack payload"),
    (raw(1, 1, STANZA), "4-element array"),
    (msgpack.packb({"a": 1}), "4-element array"),
    (raw(2, 1, STANZA, {}), "unsupported payload version 2"),
    (raw(PAYLOAD_VERSION, 9, STANZA, {}), "unknown payload kind 9"),
    (raw(PAYLOAD_VERSION, 1, "text", {}), "body must be bytes"),
    (raw(PAYLOAD_VERSION, 1, STANZA, []), "body must be bytes and meta a map"),
    (raw(PAYLOAD_VERSION, 1, b"", {}), "empty stanza"),
    (raw(PAYLOAD_VERSION, 1, STANZA, {"e": b"short"}), "edge id must be 20 bytes"),
    (raw(PAYLOAD_VERSION, 2, STANZA, {"r": 99}), "bad redirect count"),
    (raw(PAYLOAD_VERSION, 2, STANZA, {"r": True}), "bad redirect count"),
    (raw(PAYLOAD_VERSION, 2, STANZA, {"a": [IDB] * 17}), "bad avoid list"),
    (raw(PAYLOAD_VERSION, 3, b"", {"i": IDB, "d": [], "t": 5.0}), "1 to 64 domains"),
    (raw(PAYLOAD_VERSION, 3, b"", {"i": IDB, "d": ["x" * 2000], "t": 5.0}), "bad domain"),
    (raw(PAYLOAD_VERSION, 3, b"", {"i": IDB, "d": ["ring.test"], "t": -1}), "bad ttl"),
    (raw(PAYLOAD_VERSION, 3, b"", {"i": IDB, "d": ["ring.test"], "t": 10 ** 6}), "bad ttl"),
    (raw(PAYLOAD_VERSION, 5, b"", {"l": "x"}), "bad edge list"),
    (raw(PAYLOAD_VERSION, 5, b"", {"l": [[IDB, ["ring.test"]]]}), "[id, domains, ttl]"),
])
def test_malformed_payloads_are_refused_with_a_reason(data, message):
    with pytest.raises(MalformedPayload, match=message.replace("[", r"\[").replace("]", r"\]")):
        CODEC.decode(data)


def test_oversized_stanzas_are_refused():
    small = PayloadCodec(SP, PayloadLimits(max_stanza_bytes=64))
    with pytest.raises(MalformedPayload):
        small.decode(CODEC.encode(StanzaPayload(b"<message>" + b"x" * 100 + b"</message>")))


def test_kinds_are_stable_on_the_wire():
    # Nodes of two releases share a ring: the numbers may never change meaning.
    assert [int(k) for k in PayloadKind] == [1, 2, 3, 4, 5]
