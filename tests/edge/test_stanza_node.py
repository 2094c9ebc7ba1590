"""Stanza nodes on a live ring (real sockets on 127.0.0.1) with ringmesh's own s2s stack as the
federated peer: the glue between ring node, router and s2s, without an external server."""

from __future__ import annotations

import secrets

import trio
from lxml import etree

from edge.cluster import EdgeCluster
from edge.router import StanzaArrived, StanzaExited
from edge.s2s_events import S2SConfig, StanzaReceived
from edge.s2s_shell import S2SNode
from edge.srv import PeerResolver, Target
from edge.stanza import make_stanza

RING, PEER = "ring.test", "peer.test"


def message(sender: str, to: str, sid: str, body: str = "hi") -> etree._Element:
    el = make_stanza("message", sender, to, "chat", sid)
    etree.SubElement(el, "{jabber:server}body").text = body
    return el


async def wait_until(pred, timeout: float = 10.0) -> None:  # noqa: ANN001
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.02)


async def test_a_federated_peer_talks_to_the_ring_and_the_ring_writes_back():
    cluster = EdgeCluster(6, domains=frozenset({RING}), s2s_tls=False, admin=False)
    got: dict[str, etree._Element] = {}
    events: list = []
    peer = S2SNode(S2SConfig(frozenset({PEER}), secrets.token_bytes(32)), PeerResolver({}, use_dns=False),
                   on_stanza=lambda ev: got.__setitem__(ev.element.get("id"), ev.element)
                   if isinstance(ev, StanzaReceived) else None)
    try:
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            port = await nursery.start(peer.run)
            cluster.add_peer(PEER, "127.0.0.1", port)
            edge = cluster.edges[0]
            peer.resolver.overrides[RING] = Target("127.0.0.1", edge.s2s_port)
            for sn in cluster.stanza_nodes:
                sn.observers.append(events.append)
            await cluster.wait_ready(20)

            await peer.send(message(f"alice@{PEER}/r", f"echo@{RING}", "e1", "ping pong"))
            await wait_until(lambda: "e1" in got)
            assert got["e1"].get("from") == f"echo@{RING}" and got["e1"].findtext("{*}body") == "ping pong"

            # The ring writes from the node farthest from the edge; it asks the registry first.
            sender = max((sn for sn in cluster.stanza_nodes if not sn.is_edge),
                         key=lambda sn: (sn.live.node_id - edge.live.node_id) % cluster.config.space.modulus)
            sender.submit(message(f"news@{RING}", f"bob@{PEER}", "n1"))
            await wait_until(lambda: "n1" in got)
            exits = [ev for ev in events if isinstance(ev, StanzaExited) and ev.element.get("id") == "n1"]
            assert exits[0].origin == sender.live.node_id and exits[0].trace[-1] == edge.live.node_id
            assert sender.router.stats.queries >= 1

            arrivals = [ev for ev in events if isinstance(ev, StanzaArrived) and ev.element.get("id") == "e1"]
            assert arrivals[0].edge == edge.live.node_id and arrivals[0].trace[0] == edge.live.node_id
            assert edge.s2s.stats.authenticated == {"in/dialback": 1, "out/dialback": 1}
            # Every stanza envelope was confirmed: nothing is left in flight anywhere.
            await wait_until(lambda: all(sn.router.in_flight == 0 for sn in cluster.stanza_nodes))
            await cluster.shutdown(3)
            nursery.cancel_scope.cancel()
    finally:
        cluster.close()


async def test_stanzas_to_an_unreachable_server_bounce_to_the_ring_entity():
    cluster = EdgeCluster(3, domains=frozenset({RING}), s2s_tls=False, admin=False)
    events: list = []
    try:
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            cluster.add_peer("gone.test", "127.0.0.1", 9)  # nothing listens there
            for sn in cluster.stanza_nodes:
                sn.observers.append(events.append)
            await cluster.wait_ready(20)
            cluster.stanza_nodes[1].submit(message(f"echo@{RING}", "x@gone.test", "g1"))
            await wait_until(lambda: any(getattr(ev, "condition", "") == "remote-server-not-found"
                                         for ev in events), 15)
            nursery.cancel_scope.cancel()
    finally:
        cluster.close()


async def test_a_flood_from_a_peer_is_paced_by_the_ring_and_all_of_it_arrives():
    """More stanzas than the in-flight window and the backlog: the s2s reader waits (TCP pushes
    back on the peer) and nothing is lost."""
    cluster = EdgeCluster(4, domains=frozenset({RING}), s2s_tls=False, admin=False)
    arrived: list = []
    peer = S2SNode(S2SConfig(frozenset({PEER}), secrets.token_bytes(32)), PeerResolver({}, use_dns=False))
    try:
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            for sn in cluster.stanza_nodes:
                sn.max_in_flight, sn.max_backlog = 64, 32
                sn.observers.append(lambda ev: arrived.append(ev) if isinstance(ev, StanzaArrived) else None)
            port = await nursery.start(peer.run)
            cluster.add_peer(PEER, "127.0.0.1", port)
            peer.resolver.overrides[RING] = Target("127.0.0.1", cluster.edges[0].s2s_port)
            await cluster.wait_ready(20)
            for i in range(600):
                el = make_stanza("message", f"alice@{PEER}/r", f"user{i % 50}@{RING}", "headline", f"f{i}")
                await peer.send(el)
            await wait_until(lambda: len(arrived) >= 600, 60)
            assert sorted(int(ev.element.get("id")[1:]) for ev in arrived) == list(range(600))
            nursery.cancel_scope.cancel()
    finally:
        cluster.close()
