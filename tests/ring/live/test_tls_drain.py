"""take_decrypted: the TLS records a socket read brought, all at once and without I/O; and
WideReads, the transport that makes that socket read large."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from ring.ca import init_ca
from ring.keyspace import KeySpace
from ring.live.tls import RingTls, WideReads, take_decrypted

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


class _Recorder(trio.abc.Stream):
    def __init__(self):
        self.asked, self.sent, self.closed = [], [], False

    async def receive_some(self, max_bytes=None):
        self.asked.append(max_bytes)
        return b"z"

    async def send_all(self, data):
        self.sent.append(bytes(data))

    async def wait_send_all_might_not_block(self):
        pass

    async def aclose(self):
        self.closed = True


async def test_wide_reads_ask_for_their_size_unless_told_and_pass_the_rest_on():
    inner = _Recorder()
    wide = WideReads(inner, 262144)
    assert await wide.receive_some() == b"z"
    await wide.receive_some(10)
    await wide.send_all(b"abc")
    await wide.wait_send_all_might_not_block()
    await wide.aclose()
    assert inner.asked == [262144, 10] and inner.sent == [b"abc"] and inner.closed


async def test_a_tls_stream_over_wide_reads_takes_a_whole_burst_in_one_wake(tls_pair):
    a, b = tls_pair
    left, right = trio.testing.memory_stream_pair()
    client = trio.SSLStream(left, a.client)
    server = trio.SSLStream(WideReads(right, 1 << 20), b.server, server_side=True)
    async with trio.open_nursery() as n:
        n.start_soon(client.do_handshake)
        n.start_soon(server.do_handshake)
    await client.send_all(b"w" * 200_000)
    got = await server.receive_some(1 << 20)
    got += b"".join(take_decrypted(server, 1 << 20))
    assert got == b"w" * 200_000
