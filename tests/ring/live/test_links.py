"""Link management: one agreed link per pair, fast failure detection, the link cap."""

from __future__ import annotations

import logging

import trio

from ring.live.cluster import LocalCluster, fast_config
from ring.live.limits import LiveLimits
from ring.live.link import LinkState
from ring.live.server import LiveNode
from ring.messages import Envelope, NodeRef, Ping
from ring.wire import RelayedFrames

from .livehelp import closed_by_peer


async def test_simultaneous_dials_settle_on_the_link_the_lower_id_dialed():
    cfg = fast_config(2)
    a, b = LiveNode(config=cfg), LiveNode(config=cfg)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(a.serve)
            await nursery.start(b.serve)
            # Both want to talk at once (each answers a ping "from" the other, so each core
            # outputs a Pong to the other): both dial in the same scheduling tick.
            now = trio.current_time()
            a.core.handle_message(b.core.me, Ping(1), now)
            b.core.handle_message(a.core.me, Ping(2), now)
            a._after(now)  # noqa: SLF001 - the shell's own drain step
            b._after(now)  # noqa: SLF001
            while not (len([lk for lk in a.links() if lk.state is LinkState.UP]) == 2
                       and len([lk for lk in b.links() if lk.state is LinkState.UP]) == 2):
                await trio.sleep(0.01)
            low, high = sorted((a, b), key=lambda n: n.node_id)
            # Both sides send on the same connection: the one the lower id dialed.
            assert low.link_to(high.node_id).outbound
            assert not high.link_to(low.node_id).outbound
            assert low.link_to(high.node_id).state is LinkState.UP
            nursery.cancel_scope.cancel()


async def test_a_crashed_peer_is_noticed_by_the_next_message(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ringmesh")
    # Timeouts far longer than the test: only the failed redial can explain a quick verdict.
    cfg = fast_config(2, rpc_timeout=30.0, ack_timeout=30.0, lookup_timeout=30.0)
    cluster = LocalCluster(2, config=cfg, workdir=tmp_path, admin=False)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            await cluster.wait_converged(10)
            a, b = cluster.nodes
            b.stop()  # crash-only: its sockets close, no Leave is sent
            t0 = trio.current_time()
            while not a.core.table.alone:
                await trio.sleep(0.01)
            assert trio.current_time() - t0 < 5.0
            assert any("event=peer_unreachable" in r.getMessage() for r in caplog.records)
            nursery.cancel_scope.cancel()


async def test_links_beyond_the_cap_are_refused(caplog):
    caplog.set_level(logging.INFO, logger="ringmesh")
    node = LiveNode(limits=LiveLimits(max_links=2, handshake_timeout=5.0))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(node.serve)
            host, port = node.addr.rsplit(":", 1)
            held = [await trio.open_tcp_stream(host, int(port)) for _ in range(2)]
            while len(node.links()) < 2:
                await trio.sleep(0.01)
            extra = await trio.open_tcp_stream(host, int(port))
            assert await closed_by_peer(extra)
            assert any("too many links" in r.getMessage() for r in caplog.records)
            for s in held:
                await s.aclose()
            nursery.cancel_scope.cancel()


def test_relayed_frames_addressed_to_the_node_itself_are_read_back_as_messages():
    # A run of relayed frames is views of the read they came in, several frames to a view:
    # to the node itself (no link), they are split and decoded, in order.
    node = LiveNode(node_id=5, seed=1)
    envs = [Envelope(i, 7, 9, 3, 1, 0, b"x" * (i * 200)) for i in range(3)]
    frames = [node.codec.encode_frame(e) for e in envs]
    run = RelayedFrames()
    run.append(memoryview(bytearray(b"".join(frames[:2]))))
    run.append(memoryview(frames[2]))
    run.frames = 3
    assert node._route_outputs([(NodeRef(5, "127.0.0.1:1"), run)]) == envs  # noqa: SLF001
