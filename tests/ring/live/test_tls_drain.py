"""take_decrypted: the TLS records a socket read brought, all at once and without I/O."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ring.ca import init_ca
from ring.keyspace import KeySpace
from ring.live.tls import RingTls, take_decrypted

from .livehelp import tls_files

SPACE = KeySpace()


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    ca = tmp_path_factory.mktemp("ca")
    init_ca(ca)
    return (RingTls.load(tls_files(ca, "a", SPACE), SPACE),
            RingTls.load(tls_files(ca, "b", SPACE), SPACE))


async def _connected(tls_pair):  # noqa: ANN001
    """A client and a server SSLStream over in-memory streams, handshake done. What one
    send_all writes reaches the other side as one chunk (one transport read)."""
    a, b = tls_pair
    left, right = trio.testing.memory_stream_pair()
    client = trio.SSLStream(left, a.client)
    server = trio.SSLStream(right, b.server, server_side=True)
    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(client.do_handshake)
            n.start_soon(server.do_handshake)
    return client, server


async def test_the_records_of_one_read_come_out_at_once(tls_pair):
    client, server = await _connected(tls_pair)
    payload = bytes(range(256)) * 200  # 51200 bytes: four TLS records
    await client.send_all(payload)
    first = await server.receive_some(1 << 20)
    assert len(first) == 16384  # one record per receive_some
    rest = take_decrypted(server, 1 << 20)
    assert len(rest) == 3
    assert first + b"".join(rest) == payload
    assert take_decrypted(server, 1 << 20) == []  # nothing more without I/O
    with trio.move_on_after(0.05) as scope:
        await server.receive_some(1)
    assert scope.cancelled_caught  # and the stream still waits for more as usual
    await client.send_all(b"more")
    assert await server.receive_some(100) == b"more"


async def test_take_decrypted_stops_at_its_byte_budget(tls_pair):
    client, server = await _connected(tls_pair)
    await client.send_all(b"x" * 65536)
    first = await server.receive_some(1 << 20)
    rest = take_decrypted(server, 20000)
    assert sum(map(len, rest)) == 20000
    rest += take_decrypted(server, 1 << 20)
    assert len(first) + sum(map(len, rest)) == 65536


async def test_a_corrupted_record_breaks_the_stream(tls_pair):
    client, server = await _connected(tls_pair)
    await client.send_all(b"y" * 40000)
    # Corrupt the second record: receive_some decrypts the first one, the drain meets it.
    recv = server.transport_stream.receive_stream
    data = bytearray(await recv.receive_some())
    data[16384 + 200] ^= 0xFF
    recv.put_data(bytes(data))
    first = await server.receive_some(1 << 20)
    assert first == b"y" * 16384
    with pytest.raises(trio.BrokenResourceError):
        take_decrypted(server, 1 << 20)


async def test_a_plain_stream_has_nothing_to_take():
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"abc")
    assert take_decrypted(right, 100) == []
    assert await right.receive_some(10) == b"abc"
