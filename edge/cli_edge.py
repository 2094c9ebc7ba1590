"""``ringmesh edge run``: an XMPP ring node (an edge when it listens for s2s); and the XMPP half
of ``ringmesh cluster up --domain``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal

import trio

from ring.ca import node_id_of_pem_file
from ring.ids import jid_key
from ring.live.addr import parse_hostport
from ring.live.logfmt import log_event, setup_logging
from ring.live.signals import hold_until_interrupted
from ring.live.signals import serve_until_signalled as _serve_until_signalled
from ring.live.server import JoinError, LiveNode
from ring.live.tls import RingTls

from .cert_trust import PeerCertificateVerifier, TrustError
from .cluster import EdgeCluster
from ring.collector import tune_for_routing
from .edgeconfig import EdgeNodeConfig, load_edge_config, with_direct_tls_port
from .s2s_events import S2SConfig
from .s2s_shell import S2SNode
from .s2s_tls import S2STLS, TLSConfigError
from .srv import PeerResolver, parse_overrides
from .stanza_node import StanzaNode

log = logging.getLogger("ringmesh.edge")


def register(sub: argparse._SubParsersAction) -> None:
    edge = sub.add_parser("edge", help="XMPP ring nodes: s2s federation into and out of the ring")
    edge_sub = edge.add_subparsers(dest="edge_command", metavar="EDGE_COMMAND", required=True)
    p = edge_sub.add_parser("run", help="run an XMPP ring node (an edge if [edge] s2s_listen is set) "
                                        "until SIGINT/SIGTERM")
    p.add_argument("--config", required=True, help="TOML configuration file (node sections plus [edge])")
    p.add_argument("--listen", help="override [node] listen (host:port)")
    p.add_argument("--advertise", help="override [node] advertise (host:port)")
    p.add_argument("--bootstrap", action="append", help="override [node] bootstrap (repeat)")
    p.add_argument("--admin", help="override [node] admin")
    p.add_argument("--s2s-listen", help="override [edge] s2s_listen (host:port)")
    p.add_argument("--s2s-tls-port", type=int, metavar="PORT",
                   help="also listen for direct TLS s2s (XEP-0368) on PORT, same host as s2s_listen")
    p.add_argument("--peer", action="append", default=[], metavar="DOMAIN=HOST:PORT",
                   help="add a static s2s route (repeat); tls:HOST:PORT for direct TLS, "
                        "comma-separated addresses are tried in order")
    p.add_argument("--insecure-plain", action="store_true", help="plain ring links (labs only)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any configuration value, e.g. edge.announce_interval=2")
    p.add_argument("--log-level", dest="node_log_level", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_edge_run)


# == building a node from its configuration ==================================================

def make_s2s_tls(cfg: EdgeNodeConfig) -> S2STLS | None:
    e = cfg.edge
    if not e.tls:
        return None
    try:
        if e.certificate is not None and e.key is not None:
            return S2STLS.from_files(e.certificate, e.key, cafile=e.cafile, capath=e.capath,
                                     system_roots=e.system_roots)
        verifier = PeerCertificateVerifier(cafile=e.cafile, capath=e.capath, system_roots=e.system_roots)
        return S2STLS.self_signed(e.domains, verifier=verifier)
    except (TLSConfigError, TrustError) as exc:
        raise ValueError(f"[edge] TLS: {exc}") from None


def build_node(cfg: EdgeNodeConfig, extra_peers: list[str] | None = None) -> StanzaNode:
    n = cfg.node
    tls, node_id = None, None
    if not n.insecure_plain:
        tls = RingTls.load(n.tls, n.ring.space)
    elif n.tls is not None:
        node_id = node_id_of_pem_file(n.ring.space, n.tls.cert)
    live = LiveNode(config=n.ring, tls=tls, node_id=node_id, listen=n.listen, advertise=n.advertise,
                    bootstrap=n.bootstrap, admin=n.admin, limits=n.limits, name=n.name)
    e = cfg.edge
    s2s = None
    if e.is_edge:
        peers = dict(e.peers)
        peers.update(parse_overrides(extra_peers or []))
        s2s_tls = make_s2s_tls(cfg)
        s2s_cfg = S2SConfig(e.domains, e.dialback_secret or b"", subdomains=e.router.subdomains,
                            tls=s2s_tls is not None, require_tls=e.require_tls, sasl_external=e.sasl_external,
                            secure_auth=e.secure_auth, secure_domains=e.secure_domains,
                            insecure_domains=e.insecure_domains, max_streams_per_ip=e.max_streams_per_ip,
                            max_unauthenticated_streams=e.max_unauthenticated_streams)
        direct = None
        if e.s2s_tls_listen is not None:
            tls_host, tls_port = parse_hostport(e.s2s_tls_listen, what="[edge] s2s_tls_listen")
            direct = (tls_host or "0.0.0.0", tls_port)
        s2s = S2SNode(s2s_cfg, PeerResolver(peers, use_dns=e.use_dns), tls=s2s_tls, direct_tls_listen=direct)
    return StanzaNode(live, e.router, s2s=s2s)


async def serve_until_signalled(node: StanzaNode, s2s_host: str, s2s_port: int) -> None:
    """The first SIGINT/SIGTERM leaves the ring gracefully, a second stops at once."""
    await _serve_until_signalled(
        lambda: node.serve(s2s_host=s2s_host, s2s_port=s2s_port), node.shutdown, node.kill, log)


def cmd_edge_run(args: argparse.Namespace) -> int:
    overrides = list(args.set)
    if args.s2s_listen:
        overrides.append(f'edge.s2s_listen="{args.s2s_listen}"')
    cfg = load_edge_config(args.config, overrides=overrides, listen=args.listen, advertise=args.advertise,
                           bootstrap=args.bootstrap, admin=args.admin, insecure_plain=args.insecure_plain)
    if args.s2s_tls_port is not None:
        cfg = dataclasses.replace(cfg, edge=with_direct_tls_port(cfg.edge, args.s2s_tls_port))
    setup_logging(args.node_log_level or cfg.node.log_level or args.log_level)
    node = build_node(cfg, args.peer)
    host, port = ("127.0.0.1", 0)
    if cfg.edge.s2s_listen:
        host, port = parse_hostport(cfg.edge.s2s_listen, what="[edge] s2s_listen")
    failed: list[str] = []
    tune_for_routing()
    try:
        trio.run(serve_until_signalled, node, host or "0.0.0.0", port)
    except* JoinError as eg:
        failed.append(str(eg.exceptions[0]))
    except* OSError as eg:
        failed.append(str(eg.exceptions[0]))
    if failed:
        log_event(log, logging.ERROR, "exit", reason=failed[0])
        return 1
    return 0


# == cluster up --domain =====================================================================

def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """The options ``ringmesh cluster up`` takes for an XMPP ring (see ring/cli_node.py)."""
    p.add_argument("--domain", action="append", default=[],
                   help="an XMPP domain the ring serves (repeat); makes node 0 an s2s edge")
    p.add_argument("--s2s-port", type=int, default=0, help="the edge's s2s port on 127.0.0.1 "
                   "(further edges take the next ports; default: any free port)")
    p.add_argument("--s2s-tls-port", type=int, default=None, metavar="PORT",
                   help="the edge's direct TLS (XEP-0368) s2s port on 127.0.0.1 (further edges take the "
                        "next ports; 0: any free port; default: no direct TLS listener)")
    p.add_argument("--peer", action="append", default=[], metavar="DOMAIN=HOST:PORT",
                   help="map a remote XMPP domain to an s2s address, no DNS (repeat); tls:HOST:PORT "
                        "for direct TLS, comma-separated addresses are tried in order")
    p.add_argument("--edges", type=int, default=1, help="how many nodes are edges (default 1)")
    p.add_argument("--plain-s2s", action="store_true", help="no STARTTLS on s2s (labs only)")
    p.add_argument("--dialback-secret", help="the edges' shared dialback secret (default: random)")


def cmd_cluster_up_xmpp(args: argparse.Namespace) -> int:
    if not 1 <= args.edges <= args.nodes:
        raise ValueError("--edges must be between 1 and --nodes")
    if args.s2s_port and not 0 < args.s2s_port + args.edges - 1 < 65536:
        raise ValueError("--s2s-port out of range")
    if args.s2s_tls_port is not None:
        if args.plain_s2s:
            raise ValueError("--s2s-tls-port (direct TLS) cannot go with --plain-s2s")
        if args.s2s_tls_port and not 0 < args.s2s_tls_port + args.edges - 1 < 65536:
            raise ValueError("--s2s-tls-port out of range")
    setup_logging(args.log_level if args.log_level != "info" else "warning")
    tune_for_routing()
    return trio.run(_cluster_up_xmpp, args)


async def _cluster_up_xmpp(args: argparse.Namespace) -> int:
    from .jid import prepare_domain

    domains = frozenset(prepare_domain(d) for d in args.domain)
    secret = args.dialback_secret.encode() if args.dialback_secret else None
    cluster = EdgeCluster(args.nodes, domains=domains, edges=args.edges, ring_tls=not args.insecure_plain,
                          s2s_tls=not args.plain_s2s, dialback_secret=secret,
                          peers=parse_overrides(args.peer), workdir=args.workdir)
    ports = [args.s2s_port + i for i in range(args.edges)] if args.s2s_port else None
    tls_ports = None
    if args.s2s_tls_port is not None:
        tls_ports = [args.s2s_tls_port + i if args.s2s_tls_port else 0 for i in range(args.edges)]
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                t0 = trio.current_time()
                await cluster.start(nursery, s2s_ports=ports, s2s_tls_ports=tls_ports)
                sp = cluster.config.space
                names = cluster.by_name()
                print(f"{args.nodes} live XMPP ring nodes on loopback for {', '.join(sorted(domains))} "
                      f"({'mutual TLS' if cluster.tls else 'plain TCP'} between nodes)")
                for sn in sorted(cluster.stanza_nodes, key=lambda s: s.live.node_id):
                    role = f"s2s 127.0.0.1:{sn.s2s_port}" if sn.is_edge else ""
                    if sn.is_edge and sn.s2s.direct_tls_port is not None:
                        role += f", direct TLS 127.0.0.1:{sn.s2s.direct_tls_port}"
                    print(f"  {sn.name:<7} {sp.short(sn.live.node_id):<9} {sn.live.addr:<22} "
                          f"admin {sn.live.admin_addr:<22} {role}")
                await cluster.wait_ready(30)
                with trio.move_on_after(5):  # shortest routes once fingers are fixed
                    await cluster.wait_converged(5)
                print(f"ready {trio.current_time() - t0:.2f}s after start; edge registry at key "
                      f"{sp.short(cluster.stanza_nodes[0].router.registry_key)}")
                origin = cluster.stanza_nodes[-1]
                for d in sorted(domains):
                    for jid in (d, f"echo@{d}"):
                        key = jid_key(sp, jid)
                        with trio.move_on_after(5):
                            res = await origin.live.probe(key, timeout=5)
                            path = " -> ".join(names.get(x, sp.short(x)) for x in res.trace)
                            print(f"  {jid:<24} key {sp.short(key)} lives at {names.get(res.trace[-1])}: {path}")
                edge = cluster.edges[0]
                print(f"\npeer a server with it: map {', '.join(sorted(domains))} to 127.0.0.1:{edge.s2s_port} "
                      f"in its resolver (see the README, 'Peering a local Prosody with it')")
                for mapping in args.peer:
                    print(f"  outbound s2s: {mapping}")
                await hold_until_interrupted(signals, args.duration, cluster.shutdown)
                nursery.cancel_scope.cancel()
    finally:
        cluster.close()
    return 0
