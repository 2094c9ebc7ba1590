"""Sixteen live TLS nodes on loopback: they converge, route every key, and ``route`` agrees
with the cores' own routing tables hop for hop."""

from __future__ import annotations

import random
import re

import trio

from ring.ids import jid_key
from ring.live.cluster import LocalCluster, expected_path, responsible, ring_order

from .livehelp import run_cli


async def test_sixteen_nodes_converge_and_route_every_key(tmp_path):
    cluster = LocalCluster(16, workdir=tmp_path)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            took = await cluster.wait_converged(45)  # successors, predecessors, fingers
            assert took < 45
            cores = cluster.cores()
            sp = cluster.config.space
            order = ring_order(cores)
            assert len(order) == 16
            rng = random.Random(7)
            keys = [rng.getrandbits(sp.bits) for _ in range(12)] + [r.id for r in order[:4]]
            keys.append(jid_key(sp, "juliet@ring.example"))

            async def probe_all(node):  # noqa: ANN001, ANN202
                for key in keys:
                    res = await node.probe(key, timeout=5)
                    want = expected_path(cores, node.core, key)
                    assert res.trace[-1] == responsible(order, key).id
                    assert list(res.trace) == want
                    assert res.hops == len(want) - 1

            async with trio.open_nursery() as probes:
                for node in cluster.nodes:
                    probes.start_soon(probe_all, node)

            # Stanzas cross the ring relayed (a hop sends on the frame it read behind a new
            # header; a payload over 64 KiB is encoded afresh): whole, in as many hops.
            got: dict = {}
            for node in cluster.nodes:
                node.on_deliver = lambda env, node=node: got.__setitem__(
                    env.payload, (node.node_id, env.hops))
            sender, want_at = cluster.nodes[2], {}
            for i, size in enumerate([0, 1, 255, 256, 70_000]):
                payload = b"%d:" % i + b"x" * size
                await sender.send(keys[i], payload)
                path = expected_path(cores, sender.core, keys[i])
                want_at[payload] = (path[-1], len(path) - 1)
            assert max(hops for _, hops in want_at.values()) >= 2
            with trio.fail_after(10):
                while len(got) < len(want_at):
                    await trio.sleep(0.02)
            assert got == want_at

            # The operator's view: `ringmesh route` over the admin channel prints the same
            # hop count as the core's tables give, and `status` names the right successor.
            for node, jid in ((cluster.nodes[3], "juliet@ring.example"),
                              (cluster.nodes[9], "romeo@ring.example/orchard"),
                              (cluster.nodes[14], "0x" + "ab" * 20)):
                out = await run_cli("route", node.admin_addr, jid)
                m = re.search(r"hops=(\d+)", out)
                assert m, out
                key = jid_key(sp, jid) if not jid.startswith("0x") else int(jid, 16)
                want = expected_path(cores, node.core, key)
                assert int(m.group(1)) == len(want) - 1
                trace = [ln.split() for ln in out.splitlines()[1:] if ln.strip()]
                assert [t[1] for t in trace] == [sp.short(x) for x in want]
                addrs = {n.node_id: n.addr for n in cluster.nodes}
                assert [t[2] for t in trace] == [addrs[x] for x in want]  # every hop's address
            node = cluster.nodes[5]
            out = await run_cli("status", node.admin_addr)
            assert sp.short(node.core.table.successor.id) in out.split("successor 0")[1]
            assert "state       active" in out

            await cluster.shutdown()
            nursery.cancel_scope.cancel()
    cluster.close()
