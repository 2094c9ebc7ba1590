"""The admin channel (status, route, send), plain-TCP rings, log lines and the ca commands."""

from __future__ import annotations

import stat

import pytest
import trio

from ring.cli import main as cli_main
from ring.live.admin import AdminError, admin_call, serve_admin
from ring.live.cluster import LocalCluster, expected_path
from ring.live.logfmt import format_fields
from ring.live.server import LiveNode


async def test_admin_channel_over_a_plain_ring(tmp_path):
    cluster = LocalCluster(3, workdir=tmp_path, tls=False)
    got = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            await cluster.wait_converged(20)
            for node in cluster.nodes:
                node.on_deliver = got.append
            node = cluster.nodes[0]
            st = (await admin_call(node.admin_addr, {"op": "status"}))["status"]
            assert st["state"] == "active" and st["tls"] is False
            assert st["node"]["addr"] == node.addr
            assert st["successors"][0]["addr"] == node.core.table.successor.addr
            assert st["successors"][0]["link"] in ("up", "none")
            assert st["predecessor"]["short"] == cluster.config.space.short(
                node.core.table.predecessor.id)

            key = cluster.nodes[2].node_id
            ans = await admin_call(node.admin_addr, {"op": "route", "key": hex(key)})
            want = expected_path(cluster.cores(), node.core, key)
            assert ans["hops"] == len(want) - 1
            assert [int(h["id"], 16) for h in ans["trace"]] == want
            assert ans["trace"][-1]["addr"] == cluster.nodes[2].addr

            ans = await admin_call(node.admin_addr, {"op": "send", "key": "juliet@ring.example",
                                                     "payload": "<message/>"})
            with trio.fail_after(5):
                while not got:
                    await trio.sleep(0.02)
            assert got[0].payload == b"<message/>" and got[0].msg_id == ans["msg_id"]

            with pytest.raises(AdminError, match="unknown op"):
                await admin_call(node.admin_addr, {"op": "reboot"})
            with pytest.raises(AdminError, match="bad hex key"):
                await admin_call(node.admin_addr, {"op": "route", "key": "0xzz"})
            with pytest.raises(AdminError, match="cannot reach"):
                await admin_call("127.0.0.1:1", {"op": "status"}, timeout=2)
            await cluster.shutdown()
            nursery.cancel_scope.cancel()
    cluster.close()


async def test_admin_listens_only_on_loopback_or_a_private_unix_socket(tmp_path):
    node = LiveNode()
    with pytest.raises(ValueError, match="not loopback"):
        await serve_admin(node, "0.0.0.0:0")
    sock = tmp_path / "admin.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(node.serve)
            addr = await nursery.start(serve_admin, node, f"unix:{sock}")
            assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0
            ans = await admin_call(addr, {"op": "status"})
            assert ans["status"]["state"] == "active"
            nursery.cancel_scope.cancel()


def test_log_lines_are_one_token_per_value():
    line = format_fields("peer_refused", {"remote": "127.0.0.1:5", "reason": "claims id x",
                                          "n": 3, "skip": None})
    assert line == 'event=peer_refused remote=127.0.0.1:5 reason="claims id x" n=3'


def test_ca_commands(tmp_path, capsys):
    assert cli_main(["ca", "init", str(tmp_path / "ca")]) == 0
    assert cli_main(["ca", "issue", str(tmp_path / "ca"), "ring1", "--kind", "ecdsa"]) == 0
    out = capsys.readouterr().out
    assert "node ring1: id " in out and (tmp_path / "ca/nodes/ring1.pem").exists()
    assert cli_main(["ca", "init", str(tmp_path / "ca")]) == 1  # refuses to overwrite
    assert "already holds a CA" in capsys.readouterr().err
