"""Real Prosody and ejabberd users talk to entities that live on a live ring, through its edges.

The story, told against both servers in each s2s mode (plain + dialback, STARTTLS + dialback,
STARTTLS + SASL EXTERNAL): a user on the peer server writes to echo@ring.test, pings the ring's
domain, asks for its disco#info and items and its version, and queries an entity that does not
exist. Every stanza enters the ring at the edge, crosses it hop by hop to the node where its
recipient's key falls, and the answers come back the same way and leave by s2s. Meanwhile a
ring entity (news@ring.test) writes to the user first: the edge opens an outbound stream,
which the peer verifies (dialback calls the edge back, or SASL EXTERNAL).

Then: a stanza that crosses at least three hops arrives intact (same id, body, from and to),
its path checked against the ring's routing tables; and with two edges for one domain, one is
killed mid-conversation and the conversation carries on through the other.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from edge.cluster import EdgeCluster
from edge.router import StanzaArrived, StanzaExited
from edge.s2s_events import S2SConfig
from edge.s2s_tls import S2STLS
from edge.stanza import make_stanza
from edge.stanza_node import StanzaNode
from ring.ids import jid_key
from ring.live.cluster import expected_path
from lxml import etree

from .interop import RING, federation_script
from .peers import ClientResult, EjabberdPeer, ProsodyPeer, make_ca, make_certificate, run_client
from .test_interop_ejabberd import TrustingEjabberd

SECRET = b"ring-shared-dialback-secret-0002"
MODES = ["plain+dialback", "starttls+dialback", "starttls+sasl-external"]


@dataclass
class RingRun:
    cluster: EdgeCluster
    arrived: list[tuple[StanzaNode, StanzaArrived]] = field(default_factory=list)
    exited: list[tuple[StanzaNode, StanzaExited]] = field(default_factory=list)
    result: ClientResult = field(default_factory=ClientResult)
    log: str = ""
    news_from: StanzaNode | None = None

    def arrivals(self, sid: str) -> list[tuple[StanzaNode, StanzaArrived]]:
        return [(sn, ev) for sn, ev in self.arrived if ev.element.get("id") == sid]

    def exits(self, sid: str) -> list[tuple[StanzaNode, StanzaExited]]:
        return [(sn, ev) for sn, ev in self.exited if ev.element.get("id") == sid]


def edge_side(tmp_path: Path, mode: str, ca) -> tuple[S2STLS | None, S2SConfig]:  # noqa: ANN001
    if mode == "plain+dialback":
        return None, S2SConfig(frozenset({RING}), SECRET, tls=False)
    if mode == "starttls+dialback":
        return S2STLS.self_signed([RING]), S2SConfig(frozenset({RING}), SECRET, tls=True)
    cert, key = make_certificate(RING, tmp_path / "edge-certs", ca=ca[:2])
    return S2STLS.from_files(cert, key, cafile=ca[2]), S2SConfig(frozenset({RING}), SECRET, tls=True)


async def run_ring_story(tmp_path: Path, make_peer, script, *, mode: str, user: str, password: str,  # noqa: ANN001
                         nodes: int = 6, edges: int = 1, ca=None, news: bool = True,  # noqa: ANN001
                         prepare=None) -> RingRun:  # noqa: ANN001
    """Start a ring whose first ``edges`` nodes are edges, then the peer (``make_peer(ports)``),
    then run ``script(client, result, run, token)`` as ``user`` on the peer."""
    s2s_tls, s2s_config = edge_side(tmp_path, mode, ca)
    cluster = EdgeCluster(nodes, domains=frozenset({RING}), edges=edges, s2s_tls=s2s_tls or False,
                          s2s_config=s2s_config)
    run = RingRun(cluster)
    try:
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            await cluster.wait_ready(30)
            # The ring side writes first once the user's first message has arrived: from the
            # node farthest (in ring order) from the edge, so it must find an edge itself.
            edge_ids = {sn.live.node_id for sn in cluster.edges}
            others = [sn for sn in cluster.stanza_nodes if sn.live.node_id not in edge_ids]
            run.news_from = others[len(others) // 2]

            def watch(sn: StanzaNode):  # noqa: ANN202
                def observer(ev) -> None:  # noqa: ANN001
                    if isinstance(ev, StanzaArrived):
                        run.arrived.append((sn, ev))
                        if news and ev.element.get("id") == "m-1" and not run.exits("news-1"):
                            # To the user's full JID: the client sends no presence, so
                            # the server has no "available" resource for the bare JID.
                            out = make_stanza("message", f"news@{RING}", ev.element.get("from"), "chat", "news-1")
                            etree.SubElement(out, "{jabber:server}body").text = "the ring writes first"
                            run.news_from.submit(out)
                    elif isinstance(ev, StanzaExited):
                        run.exited.append((sn, ev))
                return observer

            for sn in cluster.stanza_nodes:
                sn.observers.append(watch(sn))
            ports = [sn.s2s_port for sn in cluster.edges]
            peer = make_peer(ports if edges > 1 else ports[0])
            cluster.add_peer(peer.domain, "127.0.0.1", peer.s2s_port)
            await trio.to_thread.run_sync(peer.start)
            token = trio.lowlevel.current_trio_token()
            try:
                if prepare is not None:
                    await prepare(run)

                async def bound(client, result):  # noqa: ANN001, ANN202
                    await script(client, result, run, token)

                with trio.fail_after(120):
                    run.result = await trio.to_thread.run_sync(
                        run_client, f"{user}@{peer.domain}", password, peer.c2s_port, bound, 60.0)
            finally:
                run.log = peer.log_text()[-4000:]
                await trio.to_thread.run_sync(peer.stop)
                if isinstance(peer, EjabberdPeer):
                    peer.cleanup()
                nursery.cancel_scope.cancel()
    finally:
        cluster.close()
    return run


async def conversation(client, result, run, token) -> None:  # noqa: ANN001
    """What the user does: the same for every server and mode."""
    await federation_script(client, result, timeout=15)
    result.iq_results["news"] = await client.wait_for(
        lambda r: any(m[1] == f"news@{RING}" for m in r.received), 30)


def check_conversation(run: RingRun, user_jid: str, method: str, out_method: str | None = None) -> None:
    result = run.result
    assert result.error is None, f"{result.error}\n{run.log}"
    echo = [m for m in result.received if m[1].startswith(f"echo@{RING}")]
    assert echo and echo[0][2] == "hello ring ✓" and echo[0][3] == "m-1"
    assert result.iq_results["ping"] == "ok"
    assert {"urn:xmpp:ping", "http://jabber.org/protocol/disco#info", "jabber:iq:version"} <= set(
        result.iq_results["features"])
    assert result.iq_results["items"] == [f"echo@{RING}"]
    assert result.iq_results["version"] == "ringmesh"
    assert result.iq_results["nobody"] == "service-unavailable"
    assert result.iq_results["news"], f"the ring entity's message never reached the user\n{run.log}"
    news = [m for m in result.received if m[1] == f"news@{RING}"]
    assert news[0][2] == "the ring writes first" and news[0][3] == "news-1"

    # The request crossed the ring to the node where echo@ring.test's key falls, entering at
    # the edge; the reply left by the edge.
    cluster, sp = run.cluster, run.cluster.config.space
    edge = cluster.edges[0]
    [(at, arrived)] = run.arrivals("m-1")
    owner = cluster.stanza_node(max(run.cluster.cores(), key=lambda c: c.table.is_responsible(
        jid_key(sp, f"echo@{RING}")) or False).me.id)
    assert at is owner
    assert arrived.edge == edge.live.node_id and arrived.trace[0] == edge.live.node_id
    assert arrived.trace[-1] == at.live.node_id and len(arrived.trace) == arrived.hops + 1
    assert str(arrived.element.get("from")).startswith(f"{user_jid}/")
    [(out_at, exited)] = run.exits("m-1")
    assert out_at is edge and exited.trace[0] == at.live.node_id
    # The ring-side message found the edge through the registry and left by s2s.
    [(news_at, news_exit)] = run.exits("news-1")
    assert news_at is edge and news_exit.origin == run.news_from.live.node_id
    assert run.news_from.router.stats.sent_to_edge >= 1

    stats = edge.s2s.stats
    assert stats.stream_errors_sent == 0, stats.errors
    assert stats.authenticated.get(f"in/{method}", 0) >= 1, stats.authenticated
    assert stats.authenticated.get(f"out/{out_method or method}", 0) >= 1, stats.authenticated


def prosody_maker(tmp_path: Path, mode: str, ca):  # noqa: ANN001, ANN201
    def make(edge_ports):  # noqa: ANN001, ANN202
        tls = mode != "plain+dialback"
        cert = None
        if tls:
            cert = make_certificate("peer.test", tmp_path / "peer-certs",
                                    ca=ca[:2] if mode == "starttls+sasl-external" else None)
        return ProsodyPeer("peer.test", tmp_path / "prosody", routes={RING: edge_ports}, users={"alice": "alicepass"},
                           require_encryption=tls, certificate=cert,
                           cafile=ca[2] if mode == "starttls+sasl-external" else None)
    return make


def ejabberd_maker(tmp_path: Path, mode: str, ca):  # noqa: ANN001, ANN201
    def make(edge_port):  # noqa: ANN001, ANN202
        if mode == "plain+dialback":
            return EjabberdPeer("peer2.test", routes={RING: edge_port}, users={"bob": "bobpass"})
        if mode == "starttls+dialback":
            return EjabberdPeer("peer2.test", routes={RING: edge_port}, users={"bob": "bobpass"},
                                certificate=make_certificate("peer2.test", tmp_path / "peer-certs"))
        return TrustingEjabberd("peer2.test", routes={RING: edge_port}, users={"bob": "bobpass"}, cafile=ca[2],
                                certificate=make_certificate("peer2.test", tmp_path / "peer-certs", ca=ca[:2]))
    return make


def method_of(mode: str) -> str:
    return "sasl-external" if mode == "starttls+sasl-external" else "dialback"


@pytest.mark.parametrize("mode", MODES)
async def test_prosody_user_and_ring_entities_converse_across_the_ring(tmp_path, mode):
    ca = make_ca(tmp_path / "ca") if mode == "starttls+sasl-external" else None
    run = await run_ring_story(tmp_path, prosody_maker(tmp_path, mode, ca), conversation, mode=mode,
                               user="alice", password="alicepass", ca=ca)
    check_conversation(run, "alice@peer.test", method_of(mode))


@pytest.mark.parametrize("mode", MODES)
async def test_ejabberd_user_and_ring_entities_converse_across_the_ring(tmp_path, mode):
    ca = make_ca(tmp_path / "ca") if mode == "starttls+sasl-external" else None
    run = await run_ring_story(tmp_path, ejabberd_maker(tmp_path, mode, ca), conversation, mode=mode,
                               user="bob", password="bobpass", ca=ca)
    check_conversation(run, "bob@peer2.test", method_of(mode))


async def test_a_stanza_crossing_three_hops_arrives_intact(tmp_path):
    """From the edge to a key at least three hops away in a 16-node ring, and back."""
    target: dict[str, object] = {}

    async def prepare(run: RingRun) -> None:
        cluster, sp = run.cluster, run.cluster.config.space
        edge = cluster.edges[0]
        await cluster.wait_stable(1.0, 30)  # the path probed now is the path taken next
        for i in range(400):
            jid = f"far{i}@{RING}"
            res = await edge.live.probe(jid_key(sp, jid), timeout=5)
            if res.hops >= 3:
                target.update(jid=jid, probe=res)
                return
        raise AssertionError("no key three hops from the edge in a 16-node ring")

    async def script(client, result, run, token) -> None:  # noqa: ANN001
        msg = client.make_message(mto=target["jid"], mbody="across the ring <&> ✓", mtype="chat")
        msg["id"] = "far-1"
        msg.send()
        result.iq_results["bounced"] = await client.wait_for(
            lambda r: any(m[3] == "far-1" for m in r.received), 30)

    run = await run_ring_story(tmp_path, prosody_maker(tmp_path, "plain+dialback", None), script,
                               mode="plain+dialback", user="alice", password="alicepass", nodes=16, news=False,
                               prepare=prepare)
    assert run.result.error is None, f"{run.result.error}\n{run.log}"
    cluster = run.cluster
    edge = cluster.edges[0]
    [(at, arrived)] = run.arrivals("far-1")
    el = arrived.element
    assert el.get("to") == target["jid"] and el.get("from").startswith("alice@peer.test/")
    assert el.findtext("{jabber:server}body") == "across the ring <&> ✓" and el.get("type") == "chat"
    assert arrived.hops >= 3 and arrived.trace == target["probe"].trace
    assert arrived.trace[0] == edge.live.node_id and arrived.trace[-1] == at.live.node_id
    key = jid_key(cluster.config.space, target["jid"])
    assert list(arrived.trace) == expected_path(cluster.cores(), edge.live.core, key)
    # There is no such user: the error reply crossed the ring back and reached Alice.
    bounce = [m for m in run.result.received if m[3] == "far-1"]
    assert run.result.iq_results["bounced"] and "service-unavailable" in bounce[0][4]


async def test_two_edges_for_one_domain_one_dies_traffic_continues(tmp_path):
    """Prosody knows both edges (two SRV targets). The first carries the conversation until it is
    killed; the next message reaches the ring through the second, whose dialback key Prosody
    verifies through it (the edges share the secret), and the answers leave by it."""
    async def script(client, result, run, token) -> None:  # noqa: ANN001
        first, second = run.cluster.edges
        for n in (1, 2):
            msg = client.make_message(mto=f"echo@{RING}", mbody=f"before {n}", mtype="chat")
            msg["id"] = f"before-{n}"
            msg.send()
            assert await client.wait_for(lambda r, n=n: any(m[3] == f"before-{n}" for m in r.received), 30)
        trio.from_thread.run_sync(first.kill, trio_token=token)
        await asyncio.sleep(0.2)
        for n in (1, 2, 3):
            msg = client.make_message(mto=f"echo@{RING}", mbody=f"after {n}", mtype="chat")
            msg["id"] = f"after-{n}"
            msg.send()
            result.iq_results[f"after-{n}"] = await client.wait_for(
                lambda r, n=n: any(m[3] == f"after-{n}" for m in r.received), 30)

    run = await run_ring_story(tmp_path, prosody_maker(tmp_path, "plain+dialback", None), script,
                               mode="plain+dialback", user="alice", password="alicepass", nodes=6, edges=2,
                               news=False)
    assert run.result.error is None, f"{run.result.error}\n{run.log}"
    first, second = run.cluster.edges
    assert all(run.result.iq_results[f"after-{n}"] for n in (1, 2, 3)), run.log
    replies = {m[3]: m[2] for m in run.result.received}
    assert replies["after-3"] == "after 3"
    # Before the kill the first edge carried everything; after it, the second did. (Unless
    # echo lives on the second edge's node: an edge sends what it answers out itself.)
    [(home, arrived)] = run.arrivals("before-1")
    assert arrived.edge == first.live.node_id
    assert {sn for sn, _ in run.exits("before-1")} == {second if home is second else first}
    for n in (1, 2, 3):
        assert {sn for sn, _ in run.exits(f"after-{n}")} == {second}
        [(_, arrived)] = run.arrivals(f"after-{n}")
        assert arrived.edge == second.live.node_id
    assert second.s2s.stats.authenticated.get("in/dialback", 0) >= 1
    assert second.s2s.stats.authenticated.get("out/dialback", 0) >= 1
