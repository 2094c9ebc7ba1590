"""``ringmesh topology snapshot`` against real live nodes on loopback (their admin channels)."""

import json

import networkx as nx
import trio

from ring.cli import main
from ring.live.cluster import LocalCluster


async def test_snapshot_of_a_live_local_ring(tmp_path):
    cluster = LocalCluster(5, tls=False)
    try:
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            await cluster.wait_converged(60, fingers=False)
            admins = [n.admin_addr for n in cluster.nodes]
            assert all(admins)
            out = tmp_path / "ring.graphml"
            png = tmp_path / "ring.png"
            recs = tmp_path / "recs.json"
            argv = ["topology", "snapshot", *admins, "--out", str(out), "--png", str(png),
                    "--save-records", str(recs), "--timeout", "10"]
            with trio.fail_after(60):
                rc = await trio.to_thread.run_sync(main, argv)
            assert rc == 0
            g = nx.read_graphml(out)
            ids = sorted(c.me.id for c in cluster.cores())
            assert g.number_of_nodes() == 5
            succ = [(int(u), int(v)) for u, v, d in g.edges(data=True)
                    if d["kind"] == "successor" and d["rank"] == 0]
            want = [(ids[k], ids[(k + 1) % 5]) for k in range(5)]
            assert sorted(succ) == sorted(want)
            assert png.stat().st_size > 5000
            assert len(json.loads(recs.read_text())) == 5
            await cluster.shutdown()
            nursery.cancel_scope.cancel()
    finally:
        cluster.close()
