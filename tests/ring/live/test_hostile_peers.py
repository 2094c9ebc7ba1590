"""Strangers on the ring port: wrong CA, stolen id, garbage, plain TCP, oversized frames and
slow lorises are all disconnected with a log line, and the node keeps routing."""

from __future__ import annotations

import logging
import os
import ssl

import pytest
import trio

from ring.ca import init_ca
from ring.live.cluster import LocalCluster, fast_config
from ring.live.limits import LiveLimits
from ring.live.server import JoinError, LiveNode
from ring.live.tls import RingTls
from ring.wire import frame

from .livehelp import closed_by_peer, hello_frame, tls_client, tls_files

LIMITS = LiveLimits(handshake_timeout=1.0, frame_timeout=1.0, join_timeout=2.0)


async def _still_routes(cluster: LocalCluster) -> None:
    sp = cluster.config.space
    for node in cluster.nodes:
        res = await node.probe(sp.hash_bytes(os.urandom(8)), timeout=5)
        assert res.trace[0] == node.node_id
    assert cluster.converged()


def _refusals(caplog, reason: str) -> list[str]:  # noqa: ANN001
    return [r.getMessage() for r in caplog.records
            if "event=peer_refused" in r.getMessage() and reason in r.getMessage()]


async def _connect(addr: str) -> trio.SocketStream:
    host, port = addr.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def test_hostile_peers_are_refused_and_the_ring_keeps_working(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ringmesh")
    cluster = LocalCluster(3, workdir=tmp_path, limits=LIMITS)
    sp = cluster.config.space
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            await cluster.wait_converged(20)
            target = cluster.nodes[1]
            victim = cluster.nodes[2]
            addr = target.addr

            # 1. A node whose certificate comes from another CA cannot join.
            other = tmp_path / "other-ca"
            init_ca(other)
            files = tls_files(other, "intruder", sp)
            intruder = LiveNode(config=fast_config(3), tls=RingTls.load(files, sp),
                                bootstrap=[addr], limits=LIMITS, name="intruder")
            with pytest.raises((JoinError, ExceptionGroup)) as info:
                await nursery.start(intruder.serve)
            assert "JoinError" in repr(info.value)
            assert all(intruder.node_id != c.me.id for c in cluster.cores())
            # ... nor can a client that trusts the ring CA but holds a foreign certificate.
            ctx = ssl.create_default_context(cafile=str(cluster.ca_dir / "ca.pem"))
            ctx.check_hostname = False
            ctx.load_cert_chain(files.cert, files.key)
            t = await _connect(addr)
            s = trio.SSLStream(t, ctx)
            with pytest.raises(trio.BrokenResourceError):
                await s.do_handshake()
                await s.send_all(hello_frame(sp, intruder.node_id))
                await closed_by_peer(s)
                await s.send_all(b"x")
            assert _refusals(caplog, "certificate")

            # 2. A genuine ring certificate claiming another node's id: refused.
            thief_files = tls_files(cluster.ca_dir, "thief", sp)
            s = await tls_client(addr, thief_files, sp)
            await s.send_all(hello_frame(sp, victim.node_id, victim.addr))
            assert await closed_by_peer(s)
            assert _refusals(caplog, "claims id")

            # 3. Garbage bytes instead of a TLS handshake.
            t = await _connect(addr)
            await t.send_all(os.urandom(3000))
            assert await closed_by_peer(t)
            # 4. A TLS-less client speaking the ring protocol in the clear.
            t = await _connect(addr)
            await t.send_all(hello_frame(sp, victim.node_id))
            assert await closed_by_peer(t)

            # 5. An authenticated peer sending an oversized frame is dropped.
            honest = tls_files(cluster.ca_dir, "honest", sp)
            s = await tls_client(addr, honest, sp)
            honest_id = RingTls.load(honest, sp).node_id
            await s.send_all(hello_frame(sp, honest_id, "127.0.0.1:9"))
            await s.send_all(b"\xff\xff\xff\xf0" + b"x" * 100)
            assert await closed_by_peer(s)
            assert any("frame too large" in r.getMessage() for r in caplog.records)

            # 5b. ... and so is one that keeps sending undecodable messages.
            s = await tls_client(addr, honest, sp)
            await s.send_all(hello_frame(sp, honest_id, "127.0.0.1:9"))
            await s.send_all(b"".join(frame(b"\xc1garbage") for _ in range(LIMITS.max_malformed)))
            assert await closed_by_peer(s)
            assert any("too many malformed" in r.getMessage() for r in caplog.records)

            # 6. Slow loris before TLS: one byte at a time, never finishing the handshake.
            t = await _connect(addr)
            t0 = trio.current_time()
            try:
                with trio.move_on_after(5):
                    await t.send_all(b"\x16\x03\x01\x02\x00")  # a 512-byte record, never sent
                    for _ in range(40):
                        await t.send_all(b"\x00")
                        await trio.sleep(0.2)
            except trio.BrokenResourceError:
                pass
            assert await closed_by_peer(t)
            # cut while it was still trickling (the sender gives up after 5 s); the log line
            # says it was the handshake timeout (1 s), whatever the machine's load
            assert trio.current_time() - t0 < 5.0
            assert _refusals(caplog, "handshake timeout")

            # 7. Slow loris after TLS: a frame trickled byte by byte.
            s = await tls_client(addr, honest, sp)
            await s.send_all(hello_frame(sp, honest_id, "127.0.0.1:9"))
            t0 = trio.current_time()
            try:
                with trio.move_on_after(5):
                    await s.send_all(b"\x00\x00\x01\x00")
                    for _ in range(40):
                        await s.send_all(b"\x90")
                        await trio.sleep(0.2)
            except trio.BrokenResourceError:
                pass
            assert await closed_by_peer(s)
            assert trio.current_time() - t0 < 5.0  # as above: the frame timeout (1 s) cut it
            assert any("frame timeout" in r.getMessage() for r in caplog.records)

            assert target.refused >= 5
            await _still_routes(cluster)
            await cluster.shutdown()
            nursery.cancel_scope.cancel()
    cluster.close()
