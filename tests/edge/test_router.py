"""The stanza router over an in-memory ring: stanzas reach the node where their recipient lives,
answers and ring-side stanzas leave through a live edge found in the registry, dead edges and a
dead registry node are routed around, and bad payloads never hurt a node."""

import pytest
from lxml import etree

from edge.payload import OutboundPayload
from edge.router import (
    PayloadRefused,
    RingSend,
    RouterConfig,
    StanzaArrived,
    StanzaBounced,
    StanzaExited,
    StanzaRouter,
    parse_stanza,
)
from edge.stanza import make_stanza
from ring.events import Undeliverable
from ring.ids import jid_key
from ring.keyspace import KeySpace
from ring.messages import Envelope, ErrorCode, ErrorReport

from .memring import RING, MemStanzaRing, fast_router_config

NS_PING = "urn:xmpp:ping"


def message(sender, to, sid, body="hi", type="chat"):
    el = make_stanza("message", sender, to, type, sid)
    etree.SubElement(el, "{jabber:server}body").text = body
    return el


def iq(sender, to, sid, child):
    el = make_stanza("iq", sender, to, "get", sid)
    etree.SubElement(el, child, nsmap={None: child[1:].split("}")[0]})
    return el


@pytest.fixture(scope="module")
def ring_of_16():
    return MemStanzaRing(16, edges=1, seed=11)


def test_an_inbound_stanza_reaches_its_entity_and_the_answer_leaves_by_the_edge():
    ring = MemStanzaRing(16, edges=1, seed=11)
    edge = ring.edges[0]
    ring.routers[edge].from_s2s(message("alice@peer.test/phone", f"echo@{RING}", "m1", "hello"), ring.now)
    ring.settle(0.1)
    [(at, arrived)] = ring.events_of(StanzaArrived)
    owner = ring.cluster.responsible(jid_key(ring.space, f"echo@{RING}"))
    assert at == owner.addr and arrived.trace[0] == ring.id_of(edge) and arrived.trace[-1] == owner.id
    assert arrived.hops == len(arrived.trace) - 1 and arrived.edge == ring.id_of(edge)
    [reply] = ring.outbox[edge]
    assert (reply.get("from"), reply.get("to"), reply.get("id")) == (f"echo@{RING}", "alice@peer.test/phone", "m1")
    assert reply.findtext("{jabber:server}body") == "hello"
    [(where, exited)] = ring.events_of(StanzaExited)
    assert where == edge and exited.origin == owner.id and exited.trace[-1] == ring.id_of(edge)


def test_the_domain_answers_ping_disco_and_version_and_nobody_gets_service_unavailable(ring_of_16):
    ring = ring_of_16
    edge = ring.edges[0]
    ring.outbox[edge].clear()
    r = ring.routers[edge]
    r.from_s2s(iq("alice@peer.test/r", RING, "p1", f"{{{NS_PING}}}ping"), ring.now)
    r.from_s2s(iq("alice@peer.test/r", RING, "d1", "{http://jabber.org/protocol/disco#info}query"), ring.now)
    r.from_s2s(iq("alice@peer.test/r", RING, "v1", "{jabber:iq:version}query"), ring.now)
    r.from_s2s(iq("alice@peer.test/r", f"nobody@{RING}", "n1", f"{{{NS_PING}}}ping"), ring.now)
    r.from_s2s(message("alice@peer.test/r", f"nobody@{RING}", "h1", type="headline"), ring.now)
    ring.settle(0.1)
    out = {el.get("id"): el for el in ring.outbox[edge]}
    assert out["p1"].get("type") == "result"
    assert "urn:xmpp:ping" in [f.get("var") for f in out["d1"].iter("{*}feature")]
    assert out["v1"].findtext(".//{jabber:iq:version}name") == "ringmesh"
    assert out["n1"].get("type") == "error" and out["n1"].find(".//{*}service-unavailable") is not None
    assert "h1" not in out  # a headline to nobody is dropped without an answer


def test_a_ring_entity_finds_the_edge_through_the_registry_then_from_its_copy(ring_of_16):
    ring = ring_of_16
    edge = ring.edges[0]
    sender = next(a for a, x in ring.routers.items() if a != edge and not x.directory.edges(ring.now))
    r = ring.routers[sender]
    ring.outbox[edge].clear()
    r.submit(message(f"news@{RING}", "bob@peer.test", "n1"), ring.now)
    ring.settle(0.2)
    assert [el.get("id") for el in ring.outbox[edge]] == ["n1"]
    assert r.stats.queries == 1 and r.stats.queued == 1
    r.submit(message(f"news@{RING}", "bob@peer.test", "n2"), ring.now)
    ring.settle(0.1)
    assert [el.get("id") for el in ring.outbox[edge]] == ["n1", "n2"]
    assert r.stats.queries == 1  # the second one used the copy
    [(_, exited)] = [e for e in ring.events_of(StanzaExited) if e[1].element.get("id") == "n2"]
    assert exited.origin == ring.id_of(sender) and exited.hops >= 1


def test_a_ring_refuses_to_relay_between_foreign_domains_and_checks_what_it_submits(ring_of_16):
    ring = ring_of_16
    r = ring.routers[ring.edges[0]]
    with pytest.raises(ValueError):
        r.submit(message("mallory@evil.test", "bob@peer.test", "x"), ring.now)
    with pytest.raises(ValueError):
        r.submit(etree.Element("{jabber:server}nonsense"), ring.now)


def test_the_two_edges_of_a_domain_share_its_traffic_and_survive_each_others_death():
    ring = MemStanzaRing(12, edge_indexes=[0, 5], seed=5)
    a, b = ring.edges
    sender = next(x for x in ring.routers if x not in ring.edges)
    r = ring.routers[sender]
    for i in range(6):
        r.submit(message(f"news@{RING}", "bob@peer.test", f"before{i}"), ring.now)
    ring.settle(0.2)
    used = [e for e in ring.edges if ring.outbox[e]]
    assert len(used) == 1 and len(ring.outbox[used[0]]) == 6  # one edge per remote domain
    dead, alive = used[0], (b if used[0] == a else a)
    ring.crash(dead)
    for i in range(6):
        r.submit(message(f"news@{RING}", "bob@peer.test", f"after{i}"), ring.now)
    ring.settle(15.0)  # the ring heals (custody retries re-check who is responsible), the
    # dead edge's announcement expires
    ids = [el.get("id") for el in ring.outbox[alive]]
    assert sorted(ids) == sorted(f"after{i}" for i in range(6))
    redirected = sum(x.stats.redirected for x in ring.routers.values())
    assert redirected >= 1 or r.stats.queries >= 2  # steered away, by the ring or the registry
    assert ring.id_of(dead) not in [e.edge for x in ring.routers.values() for e in x.registry.entries(ring.now)]


def test_the_registry_moves_to_the_successor_when_its_node_dies():
    cfg = fast_router_config()
    probe = MemStanzaRing(10, edges=1, seed=3, router_config=cfg)
    holder = probe.cluster.responsible(probe.routers[probe.edges[0]].registry_key).addr
    edge_index = 1 if list(probe.routers).index(holder) == 0 else 0
    ring = MemStanzaRing(10, edge_indexes=[edge_index], seed=3, router_config=cfg)
    edge = ring.edges[0]
    holder = ring.cluster.responsible(ring.routers[edge].registry_key).addr
    assert holder != edge and len(ring.routers[holder].registry) == 1
    ring.crash(holder)
    ring.settle(6.0)
    for _ in range(40):  # the ring heals in a few stabilization rounds (their phases vary)
        if ring.cluster.converged():
            break
        ring.settle(0.25)
    assert ring.cluster.converged()
    successor = ring.cluster.responsible(ring.routers[edge].registry_key).addr
    assert successor != holder and len(ring.routers[successor].registry) == 1
    asker = next(a for a in ring.routers if a not in (edge, holder, successor))
    ring.routers[asker].submit(message(f"news@{RING}", "bob@peer.test", "late"), ring.now)
    ring.settle(0.5)
    assert [el.get("id") for el in ring.outbox[edge]] == ["late"]


def test_without_any_edge_outbound_stanzas_wait_then_bounce():
    ring = MemStanzaRing(6, edges=0, seed=2)
    sender = list(ring.routers)[3]
    r = ring.routers[sender]
    r.submit(message(f"news@{RING}", "bob@peer.test", "w1"), ring.now)
    ring.settle(1.0)
    assert r.pending == 1 and r.stats.queries >= 2  # asked again, bounded by the retry pace
    ring.settle(ring.config.pending_timeout)
    assert r.pending == 0
    [(_, bounced)] = ring.events_of(StanzaBounced)
    assert bounced.condition == "remote-server-timeout" and bounced.element.get("id") == "w1"


def test_the_pending_queue_is_bounded():
    ring = MemStanzaRing(4, edges=0, seed=2, router_config=fast_router_config(max_pending=3))
    r = ring.routers[list(ring.routers)[1]]
    for i in range(5):
        r.submit(message(f"news@{RING}", "bob@peer.test", f"q{i}"), ring.now)
    ring.settle()
    assert r.pending == 3
    assert [e.condition for _, e in ring.events_of(StanzaBounced)] == ["resource-constraint"] * 2


def test_bad_payloads_are_refused_and_the_node_carries_on(ring_of_16):
    ring = ring_of_16
    edge = ring.edges[0]
    target = list(ring.routers)[4]
    dest = ring.id_of(target)
    codec = ring.routers[edge].codec
    for payload in (b"garbage", codec.encode_stanza(b"<!DOCTYPE x [<!ENTITY a 'b'>]><message/>"),
                    codec.encode_stanza(b"<nonsense/>"), codec.encode_stanza(b"<message to='a@ring.test'")):
        ring.cluster.send(edge, dest, payload)
    ring.settle(0.1)
    reasons = [e.reason for a, e in ring.events_of(PayloadRefused) if a == target]
    assert len(reasons) == 4 and any("msgpack" in x for x in reasons) and any("DTD" in x for x in reasons)
    ring.routers[edge].from_s2s(message("alice@peer.test/r", f"echo@{RING}", "still"), ring.now)
    ring.settle(0.1)
    assert "still" in [el.get("id") for el in ring.outbox[edge]]


def test_built_in_entities_do_not_answer_each_other(ring_of_16):
    ring = ring_of_16
    r = ring.routers[list(ring.routers)[2]]
    before = sum(x.stats.replies for x in ring.routers.values())
    r.submit(message(f"echo@{RING}", f"echo@{RING}", "loop"), ring.now)
    ring.settle(0.2)
    assert [e for _, e in ring.events_of(StanzaArrived) if e.element.get("id") == "loop"]
    assert sum(x.stats.replies for x in ring.routers.values()) == before


def test_an_outbound_stanza_for_a_dead_edge_is_redirected_by_its_successor():
    ring = MemStanzaRing(8, edge_indexes=[0, 4], seed=9)
    a, b = ring.edges
    ring.crash(a)
    ring.settle(3.0)  # the ring heals; the registry still lists the dead edge for a while
    sender = next(x for x in ring.routers if x not in ring.edges)
    payload = ring.routers[sender].codec.encode_outbound(
        etree.tostring(message(f"news@{RING}", "bob@peer.test", "redir")))
    ring.cluster.send(sender, ring.id_of(a), payload)  # as if the sender still believed in a
    ring.settle(3.0)
    assert [el.get("id") for el in ring.outbox[b]] == ["redir"]
    heir = ring.cluster.responsible(ring.id_of(a)).addr
    assert sum(x.stats.redirected for x in ring.routers.values()) == (0 if heir == b else 1)


def test_an_undeliverable_envelope_bounces_to_the_remote_sender():
    space = KeySpace()
    me = space.hash_bytes(b"edge")
    r = StanzaRouter(space, me, RouterConfig(frozenset({RING})), edge_domains=frozenset({RING}))
    r.start(0.0)
    r.take_outputs()
    r.from_s2s(message("alice@peer.test/r", f"juliet@{RING}", "u1"), 0.0)
    [send] = r.take_outputs()
    assert isinstance(send, RingSend) and send.stanza is not None
    r.track(77, send, 0.0)
    r.on_undeliverable(ErrorReport(ErrorCode.RETRIES_EXHAUSTED, 77, send.dest, me), 1.0)
    [out] = r.take_outputs()
    assert out.element.get("type") == "error" and out.element.get("to") == "alice@peer.test/r"
    assert out.element.find(".//{*}recipient-unavailable") is not None
    r.on_confirmed(77)  # a late confirmation for a forgotten id is harmless
    assert r.in_flight == 0
    r.track(78, send, 2.0)  # a confirmation that never comes is forgotten after inflight_ttl
    assert r.in_flight == 1 and r.get_timer() <= 2.0 + r.config.inflight_ttl
    r.handle_timer(1.0 + r.config.inflight_ttl)
    assert r.in_flight == 1
    r.handle_timer(2.0 + r.config.inflight_ttl)
    assert r.in_flight == 0


def test_outbound_payloads_steer_clear_of_edges_to_avoid():
    space = KeySpace()
    r = StanzaRouter(space, space.hash_bytes(b"n"), RouterConfig(frozenset({RING})))
    el = message(f"news@{RING}", "bob@peer.test", "x")
    data = etree.tostring(el)
    avoid = (space.hash_bytes(b"a"),)
    assert r.codec.decode(r.codec.encode_outbound(data, 1, avoid)) == OutboundPayload(data, 1, avoid)


def test_parse_stanza_accepts_stanzas_as_edges_forward_them():
    el = parse_stanza(b"<message to='a@ring.test' from='b@peer.test/r'><body>x</body></message>")
    assert el.tag == "{jabber:server}message"
    el = parse_stanza(b'<iq xmlns="jabber:client" to="a@ring.test" from="b@p.test/r" id="1" type="get"/>')
    assert el.tag == "{jabber:client}iq"
    for bad in (b"<?xml version='1.0'?><message/>", b"<!-- x --><message/>", b"<nonsense/>", b"<message>",
                b"", b"text", b"<message/><message/>"):  # exactly one stanza per payload
        with pytest.raises(ValueError):
            parse_stanza(bad)


def test_an_undeliverable_event_from_the_ring_is_what_the_driver_reports():
    # The drivers pass the core's Undeliverable.report to the router unchanged.
    report = ErrorReport(ErrorCode.NO_ROUTE, 1, 2, 3)
    assert Undeliverable(report).report is report


@pytest.mark.parametrize("bad", [False, True])
def test_a_burst_of_deliveries_is_handled_as_the_same_deliveries_one_by_one(bad):
    space = KeySpace()
    edge_id = space.hash_bytes(b"edge")
    one, many = (StanzaRouter(space, space.hash_bytes(b"dest"), fast_router_config()) for _ in range(2))
    codec = one.codec
    stanzas = [
        message("alice@peer.test/r", f"echo@{RING}", "e1"),  # answered
        message("alice@peer.test/r", f"nobody@{RING}", "n1", type="headline"),  # dropped silently
        message("alice@peer.test/r", f"nobody@{RING}", "n2"),  # service-unavailable
        iq("alice@peer.test/r", RING, "p1", f"{{{NS_PING}}}ping"),
    ]
    payloads = [codec.encode_stanza(etree.tostring(s), edge_id) for s in stanzas]
    if bad:
        payloads[2:2] = [b"garbage", codec.encode_stanza(b"<message/><message/>"),
                         codec.encode_stanza(b"<message to='a@ring.test'")]
    envs = [Envelope(i, edge_id, 5, 32, 2, 0, p, ()) for i, p in enumerate(payloads)]
    for env in envs:
        one.on_delivered(env, 1.0)
    many.on_delivered_many(envs, 1.0)

    def seen(r):
        evs = [(type(e).__name__, e.element.get("id") if hasattr(e, "element") else e.reason) for e in r.take_events()]
        return evs, [(o.dest, o.payload) for o in r.take_outputs()], r.stats

    assert seen(one) == seen(many)
    assert many.stats.arrived == 4 and many.stats.refused == (3 if bad else 0) and many.stats.replies == 3
