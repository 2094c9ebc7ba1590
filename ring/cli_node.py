"""Live ring commands: ``ca``, ``node run``, ``cluster up``, ``status``, ``route``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

import trio

from .ca import KEY_KINDS, CAError, init_ca, issue_node, node_id_of_pem_file
from .cli_demo import describe_mean_hops, describe_route
from .ids import parse_key
from .keyspace import KeySpace
from .live.admin import admin_call
from .live.cluster import LocalCluster, fast_config
from .live.logfmt import log_event, setup_logging
from .live.server import JoinError, LiveNode
from .collector import tune_for_routing
from .live.signals import hold_until_interrupted, serve_until_signalled
from .live.tls import RingTls
from .nodeconfig import load_node_config

live_log = logging.getLogger("ringmesh.live")
DEMO_JIDS = ["juliet@ring.example", "romeo@ring.example/orchard", "chat.ring.example",
             "pubsub.ring.example", "nurse@ring.example"]


def register(sub: argparse._SubParsersAction) -> None:
    ca = sub.add_parser("ca", help="the ring's certificate authority")
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="CA_COMMAND", required=True)
    p = ca_sub.add_parser("init", help="create a ring CA in DIR")
    p.add_argument("dir")
    p.add_argument("--kind", choices=KEY_KINDS, default="ed25519")
    p.add_argument("--name", default="ringmesh ring CA", help="the CA's common name")
    p.add_argument("--force", action="store_true", help="overwrite an existing CA")
    p.set_defaults(func=cmd_ca_init)
    p = ca_sub.add_parser("issue", help="issue a node certificate (DIR/nodes/NAME.pem, .key)")
    p.add_argument("dir")
    p.add_argument("name")
    p.add_argument("--kind", choices=KEY_KINDS, default="ed25519")
    p.add_argument("--host", action="append", default=[], help="host name or IP to record")
    p.add_argument("--bits", type=int, default=160, help="key space size, to print the id")
    p.add_argument("--force", action="store_true", help="overwrite an existing node")
    p.set_defaults(func=cmd_ca_issue)

    node = sub.add_parser("node", help="run a live ring node")
    node_sub = node.add_subparsers(dest="node_command", metavar="NODE_COMMAND", required=True)
    p = node_sub.add_parser("run", help="run a node until SIGINT/SIGTERM (then leave gracefully)")
    p.add_argument("--config", required=True, help="TOML configuration file")
    p.add_argument("--listen", help="override [node] listen (host:port)")
    p.add_argument("--advertise", help="override [node] advertise (host:port)")
    p.add_argument("--bootstrap", action="append", help="override [node] bootstrap (repeat)")
    p.add_argument("--admin", help="override [node] admin (host:port on loopback, unix:PATH)")
    p.add_argument("--insecure-plain", action="store_true",
                   help="plain TCP without authentication (labs only)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any configuration value, e.g. ring.stabilize_interval=0.5")
    p.add_argument("--log-level", dest="node_log_level",
                   choices=["debug", "info", "warning", "error"], help="override [node] log_level")
    p.set_defaults(func=cmd_node_run)

    cl = sub.add_parser("cluster", help="a local live ring on loopback")
    cl_sub = cl.add_subparsers(dest="cluster_command", metavar="CLUSTER_COMMAND", required=True)
    p = cl_sub.add_parser("up", help="start N nodes with their own CA, route a few JIDs, "
                                     "run until interrupted")
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--insecure-plain", action="store_true", help="plain TCP instead of TLS")
    p.add_argument("--workdir", help="keep the CA and certificates here (default: a temp dir)")
    p.add_argument("--jids", nargs="*", default=None, help="JIDs to route once converged")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: until interrupted)")
    _xmpp_cluster_options(p)
    p.set_defaults(func=cmd_cluster_up)

    p = sub.add_parser("status", help="a node's id, predecessor, successors and fingers")
    p.add_argument("addr", help="the node's admin address (host:port or unix:PATH)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("route", help="send a probe and print the hops it took")
    p.add_argument("addr", help="the node's admin address (host:port or unix:PATH)")
    p.add_argument("key", help="a JID, 0xHEX key or decimal key")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_route)


# == ca ======================================================================================

def cmd_ca_init(args: argparse.Namespace) -> int:
    try:
        path = init_ca(args.dir, name=args.name, kind=args.kind, force=args.force)
    except CAError as exc:
        raise ValueError(str(exc)) from None
    print(f"ring CA created: {path} (key {Path(args.dir) / 'ca.key'}, keep it private)")
    return 0


def cmd_ca_issue(args: argparse.Namespace) -> int:
    space = KeySpace(args.bits)
    cred = issue_node(args.dir, args.name, kind=args.kind, hosts=args.host, space=space,
                      force=args.force)
    print(f"node {cred.name}: id {cred.node_id:0{(space.bits + 3) // 4}x} "
          f"({space.short(cred.node_id)})")
    print(f"  cert {cred.cert_path}")
    print(f"  key  {cred.key_path}")
    return 0


# == node run ================================================================================

async def run_until_signalled(live: LiveNode) -> None:
    """Serve ``live``; the first SIGINT/SIGTERM leaves gracefully, a second stops at once."""
    await serve_until_signalled(live.serve, live.shutdown, live.stop, live_log)


def cmd_node_run(args: argparse.Namespace) -> int:
    cfg = load_node_config(args.config, overrides=args.set, listen=args.listen,
                           advertise=args.advertise, bootstrap=args.bootstrap, admin=args.admin,
                           insecure_plain=args.insecure_plain)
    setup_logging(args.node_log_level or cfg.log_level or args.log_level)
    tls, node_id = None, None
    if not cfg.insecure_plain:
        tls = RingTls.load(cfg.tls, cfg.ring.space)
    elif cfg.tls is not None:
        node_id = node_id_of_pem_file(cfg.ring.space, cfg.tls.cert)  # plain, but a stable id
    live = LiveNode(config=cfg.ring, tls=tls, node_id=node_id, listen=cfg.listen,
                    advertise=cfg.advertise, bootstrap=cfg.bootstrap, admin=cfg.admin,
                    limits=cfg.limits, name=cfg.name)
    failed: list[str] = []
    tune_for_routing()
    try:
        trio.run(run_until_signalled, live)
    except* JoinError as eg:
        failed.append(str(eg.exceptions[0]))
    except* (OSError, ValueError) as eg:  # e.g. the listen or admin address is taken
        leaf: BaseException = eg
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        failed.append(str(leaf) or leaf.__class__.__name__)
    if failed:
        log_event(live_log, logging.ERROR, "exit", reason=failed[0])
        return 1
    return 0


# == cluster up ==============================================================================

def _xmpp_cluster_options(p: argparse.ArgumentParser) -> None:
    """``--domain`` and friends make the cluster an XMPP ring with an s2s edge (edge package)."""
    try:
        from edge.cli_edge import add_cluster_options
    except ImportError:  # the edge package is not installed: a plain ring only
        return
    add_cluster_options(p)


def cmd_cluster_up(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 256:
        raise ValueError("--nodes must be between 1 and 256")
    if getattr(args, "domain", None):
        from edge.cli_edge import cmd_cluster_up_xmpp

        return cmd_cluster_up_xmpp(args)
    setup_logging(args.log_level if args.log_level != "info" else "warning")
    tune_for_routing()
    return trio.run(_cluster_up, args)


async def _cluster_up(args: argparse.Namespace) -> int:
    n = args.nodes
    cluster = LocalCluster(n, config=fast_config(n), tls=not args.insecure_plain,
                           workdir=args.workdir)
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                t0 = trio.current_time()
                await cluster.start(nursery)
                sp = cluster.config.space
                print(f"{n} live nodes on loopback "
                      f"({'mutual TLS, CA in ' + str(cluster.ca_dir) if cluster.tls else 'plain TCP'})")
                print(f"  {'name':<7} {'id':<9} {'ring address':<22} admin")
                for node in sorted(cluster.nodes, key=lambda x: x.node_id):
                    print(f"  {node.name:<7} {sp.short(node.node_id):<9} {node.addr:<22} "
                          f"{node.admin_addr}")
                try:
                    await cluster.wait_converged(60)
                    print(f"converged (successors, predecessors, fingers) "
                          f"{trio.current_time() - t0:.2f}s after start")
                except trio.TooSlowError:
                    print("not converged after 60s; routes below may be longer than needed")
                await _demo_routes(cluster, args.jids or DEMO_JIDS)
                first = cluster.nodes[0]
                print(f"\ntry: ringmesh status {first.admin_addr}")
                print(f"     ringmesh route {first.admin_addr} juliet@ring.example")
                await hold_until_interrupted(signals, args.duration, cluster.shutdown)
                nursery.cancel_scope.cancel()
    finally:
        cluster.close()
    return 0


async def _demo_routes(cluster: LocalCluster, jids: list[str]) -> None:
    sp = cluster.config.space
    names = {node.node_id: node.name for node in cluster.nodes}
    origin = cluster.nodes[0]
    hops = []
    for jid in jids:
        key = parse_key(sp, jid)
        try:
            res = await origin.probe(key, timeout=5)
        except trio.TooSlowError:
            print(f"  {jid}: no answer")
            continue
        hops.append(res.hops)
        print(describe_route(sp, names, jid, key, res))
    if hops:
        print(describe_mean_hops(hops, len(cluster.nodes)))


# == status, route ===========================================================================

def _ref_line(r: dict | None) -> str:
    if r is None:
        return "-"
    extra = ""
    if "heard_s" in r:
        extra = f" heard={r['heard_s']:.1f}s queued={r['queued']}"
    return f"{r['short']}  {r['addr']:<22} link={r['link']}{extra}"


def cmd_status(args: argparse.Namespace) -> int:
    ans = trio.run(admin_call, args.addr, {"op": "status"})
    st = ans["status"]
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    me = st["node"]
    print(f"node        {me['id']}  {me['addr']}  {st['name']}")
    print(f"state       {st['state']}  tls={'on' if st['tls'] else 'OFF'}  "
          f"uptime={st['uptime_s']}s  links={st['links']}  custody={st['custody']}  "
          f"delivered={st['delivered']}  refused={st['refused']}")
    print(f"predecessor {_ref_line(st['predecessor'])}")
    for i, s in enumerate(st["successors"]):
        print(f"successor {i:<2}{_ref_line(s)}")
    for f in st["fingers"]:
        print(f"finger {f['index']:<4} {_ref_line(f)}")
    s = st["stats"]
    print("stats       " + " ".join(f"{k}={v}" for k, v in s.items() if v))
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    ans = trio.run(admin_call, args.addr, {"op": "route", "key": args.key,
                                           "timeout": args.timeout}, args.timeout + 5)
    if args.json:
        print(json.dumps(ans, indent=2))
        return 0
    print(f"route to {args.key} (key {ans['short']}): hops={ans['hops']}")
    for i, h in enumerate(ans["trace"]):
        print(f"  {i:>3}  {h['short']}  {h['addr']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main())
