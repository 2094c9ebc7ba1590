"""Real processes dying: kill -9 a quarter of a 16-node ring while envelopes flow (none lost,
none duplicated), and SIGTERM (the node leaves gracefully and exits 0)."""

from __future__ import annotations

import random
import signal
from collections import Counter
from pathlib import Path

import trio

from ring.ca import init_ca, issue_node
from ring.config import RingConfig
from ring.events import Undeliverable
from ring.live.cluster import converged, fast_config, responsible
from ring.live.limits import LiveLimits
from ring.live.server import LiveNode
from ring.live.tls import RingTls, TlsFiles
from ring.messages import NodeRef

from .livehelp import NodeProcess

LIMITS = LiveLimits(join_timeout=20.0)


def write_config(path: Path, ca: Path, name: str, bootstrap: str, cfg: RingConfig) -> Path:
    ring = "\n".join(f"{k} = {getattr(cfg, k)}" for k in (
        "expected_nodes", "stabilize_interval", "fix_fingers_interval",
        "check_predecessor_interval", "rpc_timeout", "lookup_timeout", "ack_timeout",
        "custody_timeout", "max_retries"))
    path.write_text(f"""name = "{name}"
[node]
listen = "127.0.0.1:0"
bootstrap = ["{bootstrap}"]
log_level = "info"
[tls]
ca = "{ca / 'ca.pem'}"
cert = "{ca / 'nodes' / (name + '.pem')}"
key = "{ca / 'nodes' / (name + '.key')}"
[ring]
{ring}
""")
    return path


async def test_kill9_a_quarter_while_traffic_flows_exactly_once(tmp_path):
    n_local, n_doomed = 12, 4
    # Timeouts with room for a busy shared machine: a starved process must not look dead.
    cfg = fast_config(n_local + n_doomed, ack_timeout=1.0, rpc_timeout=1.0, max_retries=10)
    sp = cfg.space
    ca = tmp_path / "ca"
    init_ca(ca)
    delivered: Counter = Counter()
    failed: list = []
    where: dict = {}

    def on_event(origin_id: int):  # noqa: ANN202
        def hook(ev):  # noqa: ANN001, ANN202
            if isinstance(ev, Undeliverable):
                failed.append(ev)
        return hook

    def make_local(i: int, bootstrap: list[str]) -> LiveNode:
        cred = issue_node(ca, f"local{i}", space=sp)
        tls = RingTls.load(TlsFiles(ca / "ca.pem", cred.cert_path, cred.key_path), sp)
        node = LiveNode(config=cfg, tls=tls, bootstrap=bootstrap, limits=LIMITS,
                        name=f"local{i}")
        def on_deliver(env, name=f"local{i}"):  # noqa: ANN001, ANN202
            delivered.update([(env.origin, env.msg_id)])
            where.setdefault((env.origin, env.msg_id), []).append((name, env.hops, env.dest))
        node.on_deliver = on_deliver
        node.on_event = on_event(node.node_id)
        return node

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            first = make_local(0, [])
            await nursery.start(first.serve)
            boot = first.addr
            locals_ = [first] + [make_local(i, [boot]) for i in range(1, n_local)]
            doomed_ids = {}
            procs = []
            for i in range(n_doomed):
                name = f"doomed{i}"
                doomed_ids[name] = issue_node(ca, name, space=sp).node_id
                procs.append(NodeProcess(write_config(tmp_path / f"{name}.toml", ca, name,
                                                      boot, cfg), name))
            async with trio.open_nursery() as starting:
                for node in locals_[1:]:
                    starting.start_soon(nursery.start, node.serve)
                for p in procs:
                    starting.start_soon(nursery.start, p.run)
            for p in procs:
                await p.wait_for("event=joined", 30)

            all_ids = sorted([n.node_id for n in locals_] + list(doomed_ids.values()))
            order = [NodeRef(i, "") for i in all_ids]
            local_ids = {n.node_id for n in locals_}
            # Wait until the local nodes' view of the whole 16-node ring is right.
            with trio.fail_after(40):
                while True:
                    ok = all(
                        n.core.table.successor is not None
                        and n.core.table.successor.id == all_ids[(all_ids.index(n.node_id) + 1) % 16]
                        and n.core.table.predecessor is not None
                        and n.core.table.predecessor.id == all_ids[all_ids.index(n.node_id) - 1]
                        for n in locals_)
                    if ok:
                        break
                    await trio.sleep(0.05)

            # Keys a surviving (local) node is responsible for, now and after the kills.
            rng = random.Random(3)
            keys = []
            while len(keys) < 64:
                k = rng.getrandbits(sp.bits)
                if responsible(order, k).id in local_ids:
                    keys.append(k)
            accepted: set = set()
            origins = locals_[:6]

            async def traffic(node: LiveNode, stop: trio.Event) -> None:
                r = random.Random(node.node_id)
                for _ in range(10_000):
                    if stop.is_set():
                        return
                    batch = [(r.choice(keys), b"stanza %d" % r.getrandbits(32)) for _ in range(10)]
                    for msg_id in await node.send_batch(batch):
                        accepted.add((node.node_id, msg_id))
                    await trio.sleep(0.01)

            stop = trio.Event()
            async with trio.open_nursery() as load:
                for node in origins:
                    load.start_soon(traffic, node, stop)
                await trio.sleep(1.0)
                before = len(accepted)
                for p in procs:
                    p.proc.kill()  # SIGKILL: no goodbye, sockets reset by the kernel
                for p in procs:
                    with trio.fail_after(10):
                        await p.proc.wait()
                    assert p.proc.returncode == -signal.SIGKILL
                await trio.sleep(2.0)
                stop.set()
            assert before > 300 and len(accepted) > before + 300

            survivors = [n.core for n in locals_]

            def settled() -> bool:
                return (converged(survivors) and accepted <= set(delivered)
                        and not any(c.custody_count for c in survivors))

            with trio.move_on_after(30):
                while not settled():
                    await trio.sleep(0.1)
            assert settled(), (
                f"converged={converged(survivors)} "
                f"undelivered={len(accepted - set(delivered))} failed={len(failed)} "
                f"codes={Counter(ev.report.code.name for ev in failed)} "
                f"custody={[c.custody_count for c in survivors]}")
            await trio.sleep(1.0)  # let any late duplicate show itself
            assert not failed, Counter(ev.report.code.name for ev in failed)
            assert set(delivered) == accepted  # nothing lost, nothing invented
            dupes = {k: c for k, c in delivered.items() if c != 1}
            assert not dupes, [(where[k], sp.short(k[0])) for k in list(dupes)[:5]]  # nothing delivered twice
            assert sum(n.core.stats.rerouted + n.core.stats.retransmitted
                       for n in locals_) > 0  # the kills really hit envelopes in flight
            nursery.cancel_scope.cancel()


async def test_sigterm_leaves_gracefully_and_exits_zero(tmp_path):
    cfg = fast_config(3)
    sp = cfg.space
    ca = tmp_path / "ca"
    init_ca(ca)
    nodes = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(2):
                cred = issue_node(ca, f"n{i}", space=sp)
                tls = RingTls.load(TlsFiles(ca / "ca.pem", cred.cert_path, cred.key_path), sp)
                node = LiveNode(config=cfg, tls=tls, bootstrap=[nodes[0].addr] if nodes else [],
                                name=f"n{i}")
                await nursery.start(node.serve)
                nodes.append(node)
            leaver_id = issue_node(ca, "leaver", space=sp).node_id
            p = NodeProcess(write_config(tmp_path / "leaver.toml", ca, "leaver", nodes[0].addr,
                                         cfg), "leaver")
            await nursery.start(p.run)
            await p.wait_for("event=joined", 30)
            with trio.fail_after(20):
                while not any(n.core.table.predecessor is not None
                              and n.core.table.predecessor.id == leaver_id for n in nodes):
                    await trio.sleep(0.05)
            p.proc.send_signal(signal.SIGTERM)
            with trio.fail_after(15):
                await p.proc.wait()
            assert p.proc.returncode == 0
            line = await p.wait_for("event=left", 1)
            assert "drained=True" in line
            # Its neighbours were told: the two remaining nodes point at each other.
            with trio.fail_after(10):
                while not converged([n.core for n in nodes]):
                    await trio.sleep(0.05)
            assert nodes[0].core.table.successor.id == nodes[1].node_id
            nursery.cancel_scope.cancel()
