"""Hostile peers against a live edge over real TCP: each gets the right stream error, and
the edge keeps serving honest peers afterwards.

peer.test is played by a second edge (its authoritative server, with its own secret), so
forged and genuine dialback keys are judged by a real verification round trip.
"""

import pytest
import trio

from edge.dialback import dialback_key
from edge.s2s_events import S2SConfig, StanzaReceived
from edge.s2s_shell import S2SNode
from edge.srv import PeerResolver, Target
from edge.xmlstream import StreamHeader, XMLStreamParser

from .transcript import peer_header, read_until_closed

RING, PEER = "ring.test", "peer.test"
PEER_SECRET = b"peer-test-secret-0123456789abc"
HEADER = peer_header(**{"from": PEER, "to": RING})


async def exchange(port: int, *chunks: bytes, wait_header: bool = False) -> tuple[StreamHeader | None, list]:
    """Send chunks (after our header if wait_header) and read until the edge closes."""
    parser, header, items = XMLStreamParser(), None, []
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            for chunk in chunks:
                try:
                    await stream.send_all(chunk)
                except trio.BrokenResourceError:
                    break
                if wait_header and header is None:
                    while header is None:
                        for it in parser.feed(await stream.receive_some(65536)):
                            header = it if isinstance(it, StreamHeader) else header
                            items += [] if isinstance(it, StreamHeader) else [it]
            last, rest = await read_until_closed(stream, parser)
            header, items = last or header, items + rest
    return header, items


def stream_error(items) -> str:
    errors = [i for i in items if getattr(i, "tag", "") == "{http://etherx.jabber.org/streams}error"]
    assert errors, f"no stream error in {items}"
    return errors[-1][0].tag.split("}")[1]


@pytest.fixture
async def edges(nursery):
    received: list[StanzaReceived] = []
    ring_resolver = PeerResolver({}, use_dns=False)
    ring = S2SNode(S2SConfig(frozenset({RING}), b"ring-secret-0123456789abcdef"), ring_resolver,
                   on_stanza=lambda ev: received.append(ev))
    peer = S2SNode(S2SConfig(frozenset({PEER}), PEER_SECRET), PeerResolver({}, use_dns=False))
    ring_port = await nursery.start(ring.run)
    peer_port = await nursery.start(peer.run)
    ring_resolver.overrides[PEER] = Target("127.0.0.1", peer_port)
    return ring_port, ring, received


BILLION_LAUGHS = (b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]>"
                  + HEADER[len(b"<?xml version='1.0'?>"):] + b"&lol2;")


@pytest.mark.parametrize(
    ("chunks", "condition"),
    [
        ((BILLION_LAUGHS,), "restricted-xml"),
        ((b"<!DOCTYPE stream:stream>",), "restricted-xml"),
        ((HEADER, b"<message><body>" + b"A" * (10 * 1024 * 1024) + b"</body></message>"), "policy-violation"),
        ((HEADER, b"<message>" + b"<a>" * 10_000 + b"</a>" * 10_000 + b"</message>"), "policy-violation"),
        ((HEADER, b"<message><body>\xc3\x28\xa0\xa1</body></message>"), "unsupported-encoding"),
        ((HEADER, b"<message from='a@peer.test' to='b@ring.test'/>"), "not-authorized"),
        ((HEADER, b"<db:result from='peer.test' to='ring.test'>" + b"0" * 64 + b"</db:result>"), "not-authorized"),
    ],
    ids=["billion-laughs", "doctype", "10MB-stanza", "10000-deep", "invalid-utf8", "stanza-before-auth",
         "forged-dialback-key"],
)
async def test_hostile_stream_gets_the_right_error_and_the_edge_survives(edges, chunks, condition):
    port, ring, received = edges
    header, items = await exchange(port, *chunks)
    assert stream_error(items) == condition
    # The edge still serves an honest peer: genuine dialback, stanza delivered.
    await honest_peer_delivers(port, ring, received)


async def honest_peer_delivers(port, ring, received):
    before = len(received)
    parser = XMLStreamParser()
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(HEADER)
            header = None
            while header is None:
                for it in parser.feed(await stream.receive_some(65536)):
                    if isinstance(it, StreamHeader):
                        header = it
            key = dialback_key(PEER_SECRET, RING, PEER, header.get("id"))
            await stream.send_all(f"<db:result from='{PEER}' to='{RING}'>{key}</db:result>".encode())
            valid = False
            while not valid:
                for it in parser.feed(await stream.receive_some(65536)):
                    valid = valid or getattr(it, "get", lambda k: None)("type") == "valid"
            await stream.send_all(b"<message from='alice@peer.test/x' to='echo@ring.test' id='ok'/>")
            while len(received) == before:
                await trio.sleep(0.01)
    assert received[-1].element.get("id") == "ok"


async def test_spoofed_from_after_genuine_dialback_is_invalid_from(edges):
    port, ring, received = edges
    parser = XMLStreamParser()
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(HEADER)
            header = None
            while header is None:
                for it in parser.feed(await stream.receive_some(65536)):
                    header = it if isinstance(it, StreamHeader) else header
            key = dialback_key(PEER_SECRET, RING, PEER, header.get("id"))
            await stream.send_all(f"<db:result from='{PEER}' to='{RING}'>{key}</db:result>".encode())
            items = []
            while not any(getattr(i, "get", lambda k: None)("type") == "valid" for i in items):
                items += parser.feed(await stream.receive_some(65536))
            await stream.send_all(b"<message from='mallory@evil.test' to='echo@ring.test' id='spoof'/>")
            while not parser.closed:
                data = await stream.receive_some(65536)
                if not data:
                    break
                items += parser.feed(data)
    assert stream_error(items) == "invalid-from"
    assert all(ev.element.get("id") != "spoof" for ev in received)
