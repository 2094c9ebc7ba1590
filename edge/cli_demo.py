"""``ringmesh demo``: a live XMPP ring on loopback, federating with a built-in s2s peer, every
stanza followed hop by hop across the ring.

Nothing is simulated: N ring nodes (mutual TLS between them) run in this process on 127.0.0.1,
node 0 is also an s2s edge, and the peer is a second XMPP server (ringmesh's own s2s stack,
for a domain of its own) that connects to the edge over TCP with STARTTLS and XEP-0220
dialback in both directions, exactly as Prosody or ejabberd would. No external server needed.
"""

from __future__ import annotations

import argparse
import logging
import math
import secrets
import signal
from collections import defaultdict
from dataclasses import dataclass

import trio
from lxml import etree

from ring.ids import jid_key
from ring.live.logfmt import setup_logging

from .cluster import EdgeCluster
from .jid import prepare_domain
from .router import RouterEvent, StanzaArrived, StanzaExited
from .s2s_events import S2SConfig, StanzaReceived
from .s2s_shell import S2SNode
from .s2s_tls import S2STLS
from .services.disco import NS_INFO
from .services.ping import NS_PING
from .services.version import NS_VERSION
from .srv import PeerResolver, Target
from .stanza import make_stanza

WAIT = 8.0  # seconds to wait for each answer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="start a live XMPP ring with an s2s edge on loopback and follow "
                                    "stanzas from a federated server across it, hop by hop")
    p.add_argument("--nodes", type=int, default=8, help="ring nodes, the edge included (default 8)")
    p.add_argument("--domain", default="ring.example", help="the ring's XMPP domain")
    p.add_argument("--peer-domain", default="peer.example", help="the built-in federated server's domain")
    p.add_argument("--plain-s2s", action="store_true", help="s2s without STARTTLS (dialback only)")
    p.add_argument("--insecure-plain", action="store_true", help="plain TCP between ring nodes")
    p.add_argument("--s2s-port", type=int, default=0, help="the edge's s2s port (default: any free port)")
    p.add_argument("--keep-running", action="store_true",
                   help="stay up afterwards (until Ctrl-C), e.g. to peer a local Prosody with the edge")
    p.set_defaults(func=run)


@dataclass
class _Seen:
    arrived: dict[str, list[StanzaArrived]]
    exited: dict[str, list[StanzaExited]]
    peer_got: dict[str, list[etree._Element]]
    changed: trio.Event


def run(args: argparse.Namespace) -> int:
    if not 2 <= args.nodes <= 64:
        raise ValueError("--nodes must be between 2 and 64")
    setup_logging(args.log_level if args.log_level != "info" else "warning")
    logging.getLogger("edge").setLevel(logging.WARNING)
    return trio.run(_demo, args)


async def _demo(args: argparse.Namespace) -> int:
    ring_domain, peer_domain = prepare_domain(args.domain), prepare_domain(args.peer_domain)
    if ring_domain == peer_domain:
        raise ValueError("the peer needs a domain of its own")
    tls = not args.plain_s2s
    cluster = EdgeCluster(args.nodes, domains=frozenset({ring_domain}), edges=1, s2s_tls=tls,
                          ring_tls=not args.insecure_plain)
    seen = _Seen(defaultdict(list), defaultdict(list), defaultdict(list), trio.Event())

    def observe(ev: RouterEvent) -> None:
        if isinstance(ev, StanzaArrived):
            seen.arrived[ev.element.get("id", "")].append(ev)
        elif isinstance(ev, StanzaExited):
            seen.exited[ev.element.get("id", "")].append(ev)
        else:
            return
        seen.changed.set()

    def peer_received(ev: object) -> None:
        if isinstance(ev, StanzaReceived):
            seen.peer_got[ev.element.get("id", "")].append(ev.element)
            seen.changed.set()

    peer = S2SNode(S2SConfig(frozenset({peer_domain}), secrets.token_bytes(32), tls=tls),
                   PeerResolver({}, use_dns=False), on_stanza=peer_received,
                   tls=S2STLS.self_signed([peer_domain]) if tls else None)
    failures = 0
    try:
        async with trio.open_nursery() as nursery:
            t0 = trio.current_time()
            await cluster.start(nursery, s2s_ports=[args.s2s_port] if args.s2s_port else None)
            peer_port = await nursery.start(peer.run)
            cluster.add_peer(peer_domain, "127.0.0.1", peer_port)
            edge = cluster.edges[0]
            peer.resolver.overrides[ring_domain] = Target("127.0.0.1", edge.s2s_port)
            for sn in cluster.stanza_nodes:
                sn.observers.append(observe)
            sp = cluster.config.space
            names = cluster.by_name()

            def hop(x: int) -> str:
                return f"{names.get(x, '?')}({sp.short(x)})"

            mode = "STARTTLS + dialback" if tls else "dialback, no TLS"
            print(f"ringmesh demo: a live ring of {args.nodes} nodes on 127.0.0.1 "
                  f"({'mutual TLS' if cluster.tls else 'plain TCP'} between nodes); "
                  f"'edge' federates for {ring_domain}")
            print(f"  {'name':<7} {'id':<9} {'ring address':<22} role")
            for sn in sorted(cluster.stanza_nodes, key=lambda s: s.live.node_id):
                role = f"s2s edge on 127.0.0.1:{sn.s2s_port} ({mode})" if sn.is_edge else "ring node"
                print(f"  {sn.name:<7} {sp.short(sn.live.node_id):<9} {sn.live.addr:<22} {role}")
            await cluster.wait_ready(30)
            with trio.move_on_after(3) as fingers_scope:  # shortest routes once fingers are fixed
                await cluster.wait_converged(3)
            if fingers_scope.cancelled_caught:
                print("(fingers still being fixed: some routes may take an extra hop)")
            reg_key = edge.router.registry_key
            holder = next((sn for sn in cluster.stanza_nodes if len(sn.router.registry)), None)
            print(f"converged and edge registered {trio.current_time() - t0:.2f}s after start; the edge "
                  f"registry (key {sp.short(reg_key)}) is held by {holder.name if holder else '?'}")
            print(f"\nA second XMPP server, {peer_domain} (on 127.0.0.1:{peer_port}), federates with "
                  f"{ring_domain} over real s2s ({mode}, both directions).\n")

            async def wait_for(pred, timeout: float = WAIT) -> bool:
                with trio.move_on_after(timeout):
                    while not pred():
                        seen.changed = trio.Event()
                        await seen.changed.wait()
                    return True
                return False

            def show_path(label: str, ev: StanzaArrived | StanzaExited) -> None:
                path = " -> ".join(hop(x) for x in ev.trace) if ev.trace else hop(ev.origin)
                print(f"     {label:<9} {path}   [{ev.hops} hop{'s' if ev.hops != 1 else ''}]")

            async def exchange(n: int, title: str, stanza: etree._Element, describe) -> None:
                nonlocal failures
                sid = stanza.get("id")
                print(f"{n}. {title}")
                print(f"     {stanza.get('from')} -> {stanza.get('to')}, over s2s to the edge")
                await peer.send(stanza)
                ok = await wait_for(lambda: sid in seen.peer_got)
                for ev in seen.arrived.get(sid, [])[:1]:
                    show_path("in:", ev)
                    print(f"     {'':<9} handled by {ev.element.get('to')} at {names.get(ev.trace[-1] if ev.trace else 0)}")
                for ev in seen.exited.get(sid, [])[:1]:
                    show_path("reply:", ev)
                if not ok:
                    failures += 1
                    print(f"     no answer within {WAIT:g}s")
                else:
                    print(f"     {peer_domain} received: {describe(seen.peer_got[sid][0])}\n")

            alice = f"alice@{peer_domain}/phone"
            msg = make_stanza("message", alice, f"echo@{ring_domain}", "chat", "demo-1")
            etree.SubElement(msg, "{jabber:server}body").text = "Hello, ring!"
            await exchange(1, f"a chat message to echo@{ring_domain}", msg,
                           lambda el: f"message from {el.get('from')}: "
                                      f"\"{el.findtext('{jabber:server}body')}\"")

            ping = make_stanza("iq", alice, ring_domain, "get", "demo-2")
            etree.SubElement(ping, f"{{{NS_PING}}}ping", nsmap={None: NS_PING})
            await exchange(2, f"XEP-0199 ping to {ring_domain}", ping, lambda el: f"iq {el.get('type')}")

            info = make_stanza("iq", alice, ring_domain, "get", "demo-3")
            etree.SubElement(info, f"{{{NS_INFO}}}query", nsmap={None: NS_INFO})

            def features(el: etree._Element) -> str:
                feats = [f.get("var") for f in el.iter(f"{{{NS_INFO}}}feature")]
                return f"disco#info result, features {', '.join(feats)}"

            await exchange(3, f"XEP-0030 disco#info to {ring_domain}", info, features)

            ver = make_stanza("iq", alice, ring_domain, "get", "demo-4")
            etree.SubElement(ver, f"{{{NS_VERSION}}}query", nsmap={None: NS_VERSION})
            await exchange(4, f"XEP-0092 version of {ring_domain}", ver,
                           lambda el: f"{el.findtext(f'.//{{{NS_VERSION}}}name')} "
                                      f"{el.findtext(f'.//{{{NS_VERSION}}}version')}")

            nobody = make_stanza("iq", alice, f"nobody@{ring_domain}", "get", "demo-5")
            etree.SubElement(nobody, f"{{{NS_PING}}}ping", nsmap={None: NS_PING})

            def condition(el: etree._Element) -> str:
                err = el.find("{jabber:server}error")
                cond = [etree.QName(c).localname for c in err] if err is not None else ["?"]
                return (f"{etree.QName(el).localname} {el.get('type')} ({cond[0]}), as RFC 6121 asks for "
                        "an entity that does not exist")

            await exchange(5, f"an iq to nobody@{ring_domain} (no such entity)", nobody, condition)

            # A stanza that needs the most hops this ring has, to show a long path.
            far_jid, far_hops = f"echo@{ring_domain}", -1
            for i in range(64):
                jid = f"user{i}@{ring_domain}"
                with trio.move_on_after(2):
                    res = await edge.live.probe(jid_key(sp, jid), timeout=2)
                    if res.hops > far_hops:
                        far_jid, far_hops = jid, res.hops
            far = make_stanza("message", alice, far_jid, "chat", "demo-6")
            etree.SubElement(far, "{jabber:server}body").text = "are you there?"
            await exchange(6, f"a message to {far_jid} (no such user; its key is far from the edge)", far,
                           condition)

            # Ring-side origination: a client on the node farthest from the edge.
            sender, sender_hops = cluster.stanza_nodes[-1], -1
            for sn in cluster.stanza_nodes:
                if sn.is_edge:
                    continue
                with trio.move_on_after(2):
                    res = await sn.live.probe(edge.live.node_id, timeout=2)
                    if res.hops > sender_hops:
                        sender, sender_hops = sn, res.hops
            out = make_stanza("message", f"news@{ring_domain}", f"bob@{peer_domain}", "chat", "demo-7")
            etree.SubElement(out, "{jabber:server}body").text = "Hello from inside the ring"
            print(f"7. ring-side: a client on {sender.name} (the node farthest from the edge) sends as "
                  f"news@{ring_domain} to bob@{peer_domain}")
            print(f"     {sender.name} learns the live edges from the registry, then routes to one")
            sender.submit(out)
            ok = await wait_for(lambda: "demo-7" in seen.peer_got)
            for ev in seen.exited.get("demo-7", [])[:1]:
                show_path("out:", ev)
            if ok:
                el = seen.peer_got["demo-7"][0]
                print(f"     {peer_domain} received: message from {el.get('from')}: "
                      f"\"{el.findtext('{jabber:server}body')}\"\n")
            else:
                failures += 1
                print(f"     not received within {WAIT:g}s\n")

            st = edge.s2s.stats
            hops = [ev.hops for evs in seen.arrived.values() for ev in evs] + \
                   [ev.hops for evs in seen.exited.values() for ev in evs if ev.hops]
            mean = sum(hops) / len(hops) if hops else 0.0
            auth = ", ".join(f"{k} x{v}" for k, v in sorted(st.authenticated.items()))
            print(f"summary: {st.stanzas_in} stanzas in and {st.stanzas_out} out over s2s; mean "
                  f"{mean:.2f} ring hops per stanza (Chord: about 1/2 log2 N = "
                  f"{0.5 * math.log2(args.nodes):.2f}); s2s authentication: {auth}; "
                  f"TLS sessions: {st.tls_sessions}")
            if failures:
                print(f"{failures} exchange(s) failed")
            if args.keep_running:
                print(f"\nstill running: the edge takes s2s for {ring_domain} on 127.0.0.1:{edge.s2s_port}; "
                      "Ctrl-C to stop", flush=True)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
            with trio.move_on_after(1.5):  # every node leaves the ring; no need to wait long
                await cluster.shutdown(1.0)
            nursery.cancel_scope.cancel()
    finally:
        cluster.close()
    return 1 if failures else 0
