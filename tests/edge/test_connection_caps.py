"""Caps on inbound s2s connections: per remote address and unauthenticated in total.

First the sans-IO gate (counting, the stream error each cap names, log suppression), then an
edge's real listeners on 127.0.0.1: a connection over a cap reads our header, the RFC 6120
stream error and the end of the stream, over plain TCP and over direct TLS alike.
"""

import logging
import ssl

import pytest
import trio
from lxml import etree

from edge.conn_limits import MAX_LOG_KEYS, PER_ADDRESS, UNAUTHENTICATED, ConnectionGate
from edge.errors import StreamCondition
from edge.s2s_tls import S2STLS

from .edgepair import PEER, RING, config, edge_pair, message, wait_until
from .transcript import Reader, peer_header

NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"


# -- the gate -------------------------------------------------------------------------------

def test_the_per_address_cap_is_a_policy_violation_and_frees_on_release():
    gate = ConnectionGate(2, 100)
    assert gate.admit("a", "192.0.2.1", 0.0) is None and gate.admit("b", "192.0.2.1", 0.0) is None
    assert gate.admit("c", "192.0.2.2", 0.0) is None  # another address has its own count
    refusal = gate.admit("d", "192.0.2.1", 0.0)
    assert refusal.reason == PER_ADDRESS and refusal.condition is StreamCondition.POLICY_VIOLATION
    assert refusal.limit == 2 and "192.0.2.1" in refusal.text
    gate.release("a")
    gate.release("a")  # idempotent
    assert gate.streams_from("192.0.2.1") == 1 and gate.admit("e", "192.0.2.1", 0.0) is None
    with pytest.raises(ValueError):
        gate.admit("e", "192.0.2.1", 0.0)


def test_the_unauthenticated_cap_is_a_resource_constraint_and_authentication_frees_it():
    gate = ConnectionGate(100, 2)
    gate.admit("a", "192.0.2.1", 0.0)
    gate.admit("b", "192.0.2.2", 0.0)
    refusal = gate.admit("c", "192.0.2.3", 0.0)
    assert refusal.reason == UNAUTHENTICATED and refusal.condition is StreamCondition.RESOURCE_CONSTRAINT
    gate.authenticated("a")
    assert gate.unauthenticated == 1 and gate.open == 2
    assert gate.admit("c", "192.0.2.3", 0.0) is None
    gate.release("a")  # an authenticated one leaving does not free an unauthenticated slot twice
    assert gate.unauthenticated == 2 and gate.admit("d", "192.0.2.4", 0.0).reason == UNAUTHENTICATED


def test_refusals_are_logged_once_per_interval_with_the_count_suppressed():
    gate = ConnectionGate(1, 100, log_interval=60.0)
    gate.admit("held", "192.0.2.1", 0.0)
    first, second, third = (gate.admit(f"x{i}", "192.0.2.1", t) for i, t in enumerate((0.0, 1.0, 2.0)))
    assert first.log and not second.log and not third.log and third.suppressed == 2
    later = gate.admit("y", "192.0.2.1", 61.0)
    assert later.log and later.suppressed == 2  # the next line says how many were not logged


def test_the_log_suppression_memory_is_bounded():
    gate = ConnectionGate(1, 10 * MAX_LOG_KEYS)
    for i in range(MAX_LOG_KEYS + 10):
        address = f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"
        gate.admit(("held", i), address, 0.0)
        assert gate.admit(("over", i), address, 0.0).log
    assert len(gate._logged) <= MAX_LOG_KEYS


def test_caps_below_one_are_refused():
    with pytest.raises(ValueError):
        ConnectionGate(0, 10)
    with pytest.raises(ValueError):
        config(RING, max_streams_per_ip=0)


# -- an edge's listeners --------------------------------------------------------------------

async def open_stream(port: int, tls_context: ssl.SSLContext | None = None):
    """Connect as peer.test, send our header, read until features or the end of the stream.
    Returns (stream, reader, elements)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    if tls_context is not None:
        stream = trio.SSLStream(stream, tls_context, server_hostname=RING)
    await stream.send_all(peer_header(**{"from": PEER, "to": RING}))
    reader, elements = Reader(), []
    with trio.fail_after(5):
        while not reader.ended and not any(etree.QName(e).localname == "features" for e in elements):
            data = await stream.receive_some(4096)
            if not data:
                break
            elements += reader.read(data)
    return stream, reader, elements


def stream_error(elements) -> str | None:
    for el in elements:
        if etree.QName(el).localname == "error":
            return next(etree.QName(c).localname for c in el if etree.QName(c).namespace == NS_STREAM_ERRORS
                        and etree.QName(c).localname != "text")
    return None


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["xmpp-server"])
    return ctx


async def test_a_connection_over_the_per_address_cap_gets_policy_violation(caplog):
    caplog.set_level(logging.WARNING, logger="ringmesh.edge.s2s")
    tls = S2STLS.self_signed([RING])
    async with edge_pair(tls, None, ring_config=config(RING, max_streams_per_ip=2)) as (ring, _):
        node = ring.node
        held = [await open_stream(node.listen_port), await open_stream(node.direct_tls_port, client_context())]
        assert all(stream_error(els) is None and reader.header is not None for _, reader, els in held)
        refused = []
        for port, ctx in ((node.listen_port, None), (node.direct_tls_port, client_context()), (node.listen_port, None)):
            stream, reader, elements = await open_stream(port, ctx)
            refused.append((reader.header is not None, stream_error(elements), reader.ended))
            await stream.aclose()
        # Plain TCP and direct TLS alike: our header, the error, the end of the stream.
        assert refused == [(True, "policy-violation", True)] * 3
        assert node.stats.refused == {PER_ADDRESS: 3} and node.stats.inbound_connections == 2
        lines = [r.getMessage() for r in caplog.records if "s2s_connection_refused" in r.getMessage()]
        assert lines == ["event=s2s_connection_refused peer=127.0.0.1 cap=per-address limit=2 error=policy-violation"]
        await held[0][0].aclose()  # one of the held streams leaves: room for another
        await wait_until(lambda: node.gate.streams_from("127.0.0.1") == 1)
        _, reader, elements = await open_stream(node.listen_port)
        assert stream_error(elements) is None and node.stats.refused == {PER_ADDRESS: 3}


async def test_authenticated_streams_leave_room_under_the_unauthenticated_cap():
    ring_tls, peer_tls = S2STLS.self_signed([RING]), S2STLS.self_signed([PEER])
    ring_cfg = config(RING, max_unauthenticated_streams=1)
    async with edge_pair(ring_tls, peer_tls, ring_config=ring_cfg) as (ring, peer):
        peer.route(RING, f"127.0.0.1:{ring.node.listen_port}")
        ring.route(PEER, f"127.0.0.1:{peer.node.listen_port}")
        await peer.node.send(message(f"alice@{PEER}/a", f"echo@{RING}", "m1"))
        await wait_until(lambda: ring.received)  # peer.test's stream authenticated by dialback
        await wait_until(lambda: ring.node.gate.unauthenticated == 0)
        _, _, first = await open_stream(ring.node.listen_port)  # takes the one unauthenticated slot
        assert stream_error(first) is None
        _, reader, second = await open_stream(ring.node.listen_port)
        assert stream_error(second) == "resource-constraint" and reader.ended
        assert ring.node.stats.refused == {UNAUTHENTICATED: 1}
        # The authenticated stream still carries stanzas.
        await peer.node.send(message(f"alice@{PEER}/a", f"echo@{RING}", "m2"))
        await wait_until(lambda: len(ring.received) == 2)
