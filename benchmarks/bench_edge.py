"""Edge node: stanzas/s accepted over s2s and delivered into a live ring, beside Prosody.

    python -m benchmarks.bench_edge [--stanzas 100000] [--rounds 3] [--plain-ring] [--profile edge|nodes|all]
                                    [--spy DIR]

One s2s sender, the same for both targets: a process running ringmesh's own outbound s2s
stream machine, authenticated with XEP-0220 dialback (the target calls the sender's
authoritative listener back to verify the key), which then writes pre-serialised stanzas as
fast as the socket takes them. The stanzas are headline messages with a 100-character body
(RFC 6121 §5.2.2: no reply is expected, so none travels back). In one run it feeds:

1. an edge node of a live ring of ``--nodes`` nodes (default 4), each node its own process,
   mutual TLS between them. The stanzas go to 4096 JIDs of the ring's domain chosen so that
   their keys fall on the *other* nodes in equal shares: every stanza crosses the ring. A
   stanza counts once it reaches the node where its recipient lives and that node's router
   has unwrapped and parsed it (summed over the nodes). Then the same envelopes are
   originated at the edge without s2s, which shows the ring's own share of the edge's cost.
   Each node process tunes its garbage collector as ``ringmesh edge run`` does
   (:mod:`ring.collector`);
2. a private Prosody 0.12 as receiving server (logging at ``warn``): the stanzas go to a user
   connected over c2s, and count when they reach that client (a raw socket counting
   ``</message>``).

Both run plain s2s with dialback, the edge's per-stream byte rate limit off (Prosody's
mod_limits is off too). Rate = N / (time from the sender's first stanza byte to the N-th
delivery), after a warm-up of 2,000 stanzas; medians of ``--rounds`` rounds are compared.
Printed: both delivered rates and their ratio (goal: the edge at least twice Prosody's rate),
and each one's CPU per stanza (the edge process's own, split into ring and s2s shares) with
that ratio too: on a machine with fewer cores than processes, shared with other work, the
delivered rate of a five-process setup measures the scheduler as much as the code, while the
CPU per stanza does not. Beside them, every process's CPU per stanza (sender, edge, each
ring node; sender and Prosody) and their sum: where the cores' time goes when there are
fewer cores than processes, and each ring node's time spent collecting garbage. ``--spy DIR``
samples every process with py-spy (when installed) while the edge rounds measure, and splits
each one's CPU per stanza by layer (s2s streams, stanza routing, ring core, ring links, TLS,
trio) and by function; ``--profile edge`` (or ``nodes``, ``all``) runs cProfile in those ring
node processes instead, which slows them enough to disturb the ring (re-routes, duplicates).
"""

from __future__ import annotations

import argparse
import base64
import gc
import multiprocessing as mp
import os
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

GOAL_RATIO = 2.0
RING = "ring.test"
SENDER = "sender.test"
PROSODY = "prosody.test"
SECRET = b"bench-edge-dialback-secret-0001"
WARMUP = 2000
BODY = "x" * 100


def _stanzas(n: int, start: int, to: str | list[str] | None) -> bytes:
    """``to``: one recipient, a list to cycle through, or None for bench<i>@ring.test."""
    out = []
    for i in range(start, start + n):
        dest = to if isinstance(to, str) else to[i % len(to)] if to else f"bench{i % 4096}@{RING}"
        out.append(f"<message from='u{i % 100}@{SENDER}/r' to='{dest}' type='headline' id='b{i}'>"
                   f"<body>{BODY}</body></message>")
    return "".join(out).encode()


# == the sender ================================================================================

def _sender_proc(conn) -> None:  # noqa: ANN001
    import trio

    from edge.s2s_events import S2SConfig
    from edge.s2s_outbound import OutboundStream
    from edge.s2s_shell import S2SNode
    from edge.srv import PeerResolver, Target

    config = S2SConfig(frozenset({SENDER}), SECRET)

    # The authoritative role: a target verifies our dialback key on a connection of its own,
    # and Prosody first authenticates itself there (so this node must reach it back).
    resolver = PeerResolver({}, use_dns=False)
    node = S2SNode(config, resolver)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(node.run)
            conn.send(port)
            while True:
                cmd = await trio.to_thread.run_sync(conn.recv, abandon_on_cancel=True)
                if cmd[0] == "exit":
                    nursery.cancel_scope.cancel()
                    return
                _, host, tport, remote, to, n = cmd
                resolver.overrides[remote] = Target(host, tport)
                try:
                    await blast(host, tport, remote, to, n)
                except Exception as exc:
                    conn.send(("error", f"{type(exc).__name__}: {exc}"))

    async def blast(host: str, port: int, remote: str, to: str | list[str] | None, n: int) -> None:
        warm, body = _stanzas(WARMUP, 0, to), _stanzas(n, WARMUP, to)
        stream = await trio.open_tcp_stream(host, port)
        machine = OutboundStream(config, SENDER, remote, trio.current_time())
        machine.start(trio.current_time())
        with trio.fail_after(30):
            while not machine.ready:
                out = machine.data_to_send()
                if out:
                    await stream.send_all(out)
                if machine.closed:
                    raise RuntimeError(f"s2s to {remote} failed: {machine.next_events()}")
                data = await stream.receive_some(65536)
                machine.receive_data(data, trio.current_time())
        machine.next_events()

        async def drain() -> None:  # whatever the target says, read it (it says nothing)
            while await stream.receive_some(65536):
                pass

        async with trio.open_nursery() as n2:
            n2.start_soon(drain)
            await stream.send_all(warm)
            conn.send("warm")
            await trio.to_thread.run_sync(conn.recv)  # "go"
            t0 = time.monotonic()
            for i in range(0, len(body), 256 * 1024):
                await stream.send_all(body[i:i + 256 * 1024])
            conn.send((t0, time.monotonic()))
            await trio.to_thread.run_sync(conn.recv)  # "close"
            n2.cancel_scope.cancel()
        await stream.aclose()

    trio.run(main)


# == ring nodes ================================================================================

def _ring_proc(role: str, files: tuple[str, str, str], bootstrap: list[str], sender_port: int,
               conn, profile: bool, plain: bool) -> None:  # noqa: ANN001
    import trio

    from ring.collector import tune_for_routing
    from edge.rate_limit import RateLimits
    from edge.router import RouterConfig
    from edge.s2s_events import S2SConfig
    from edge.s2s_shell import S2SNode
    from edge.srv import PeerResolver, Target
    from edge.stanza_node import StanzaNode
    from ring.config import RingConfig
    from ring.live.server import LiveNode
    from ring.live.tls import RingTls, TlsFiles

    # Maintenance as a small LAN ring would run it: fingers are fixed within a second.
    config = RingConfig(expected_nodes=8, stabilize_interval=0.2, fix_fingers_interval=0.02)
    tls = RingTls.load(TlsFiles(*(Path(f) for f in files)), config.space)
    node_id = None
    if plain:  # plain TCP between ring nodes, ids still from the certificates
        tls, node_id = None, tls.node_id
    live = LiveNode(config=config, tls=tls, node_id=node_id, listen="127.0.0.1:0", bootstrap=bootstrap, name=role)
    s2s = None
    if role == "edge":
        # The per-stream byte rate limit (default 1 MiB/s) is off, as Prosody's mod_limits is.
        s2s = S2SNode(S2SConfig(frozenset({RING}), SECRET, rate=RateLimits(bytes_per_second=None)),
                      PeerResolver({SENDER: Target("127.0.0.1", sender_port)}, use_dns=False))
    node = StanzaNode(live, RouterConfig(frozenset({RING}), announce_interval=1.0, edge_ttl=5.0), s2s=s2s)
    prof = None
    gc_cpu = [0.0, 0.0]  # CPU seconds spent collecting garbage, and when the running collection began

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_cpu[1] = time.process_time()
        else:
            gc_cpu[0] += time.process_time() - gc_cpu[1]

    gc.callbacks.append(on_gc)
    # When the last stanza arrived (the benchmark's clock stops there, however late it asks).
    last_arrival = [0.0]
    deliver_many = node.router.on_delivered_many

    def timed_delivery(envs: list, now: float) -> None:
        deliver_many(envs, now)
        last_arrival[0] = time.monotonic()

    node.router.on_delivered_many = timed_delivery  # type: ignore[method-assign]
    load_items: list = []

    async def originate(items: list) -> None:
        """Ring-only load: the stanzas' envelopes, originated here without s2s."""
        for i in range(0, len(items), 256):
            await live.send_batch(items[i:i + 256])
        items.clear()  # kept no longer than needed: the collector would scan them in every round

    async def main() -> None:
        nonlocal prof, load_items
        async with trio.open_nursery() as nursery:
            await nursery.start(live.serve)
            await node.attach(nursery)
            tune_for_routing()  # as ``ringmesh edge run`` does
            conn.send((live.addr, node.s2s_port, live.node_id))
            while True:
                cmd = await trio.to_thread.run_sync(conn.recv, abandon_on_cancel=True)
                if cmd == "stats":
                    conn.send((node.router.stats.arrived, time.process_time(), live.core.table.successor.id
                               if live.core.table.successor else None, len(node.router.registry), gc_cpu[0],
                               last_arrival[0]))
                elif cmd in ("profile-on", "profile-off"):
                    if profile:
                        import cProfile

                        if cmd == "profile-on":
                            prof = cProfile.Profile(time.process_time)
                            prof.enable()
                        elif prof is not None:
                            prof.disable()
                    conn.send("ok")
                elif isinstance(cmd, tuple) and cmd[0] == "prepare":
                    from ring.ids import jid_key

                    codec = node.router.codec
                    jids = cmd[2]
                    load_items = [(jid_key(live.space, jids[i % len(jids)]),
                                   codec.encode_stanza(_stanzas(1, i, jids), live.node_id)) for i in range(cmd[1])]
                    conn.send("ok")
                elif cmd == "load":
                    nursery.start_soon(originate, load_items)
                    conn.send("ok")
                elif isinstance(cmd, tuple) and cmd[0] == "probe":
                    try:
                        res = await live.probe(cmd[1], timeout=2)
                        conn.send(res.hops)
                    except trio.TooSlowError:
                        conn.send(None)
                elif cmd == "core":
                    import dataclasses

                    conn.send({k: v for k, v in dataclasses.asdict(live.core.stats).items()
                               if v and k in ("rerouted", "retransmitted", "duplicates", "suspected", "undeliverable")})
                elif cmd == "exit":
                    nursery.cancel_scope.cancel()
                    break
        text = ""
        if prof is not None:
            import io
            import pstats

            s = io.StringIO()
            stats = pstats.Stats(prof, stream=s)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(40)
            text = f"\n== {role} ==\n{s.getvalue()}"
        conn.send(text)

    trio.run(main)


# == a raw c2s client that counts deliveries ==================================================

class C2SCounter:
    """Logs in to Prosody (SASL PLAIN, no TLS), binds, becomes available, counts messages."""

    def __init__(self, port: int, user: str, password: str, domain: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.count = 0
        self.last = 0.0
        self._buf = b""
        header = (f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
                  "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").encode()
        self.sock.sendall(header)
        self._until(rb"</stream:features>")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.sock.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
        self._until(rb"<success")
        self.sock.sendall(header)
        self._until(rb"</stream:features>")
        self.sock.sendall(b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                          b"<resource>bench</resource></bind></iq>")
        self._until(rb"id=['\"]bind1['\"]")
        self.sock.sendall(b"<presence><priority>1</priority></presence>")
        self.sock.settimeout(0.5)
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _until(self, pattern: bytes) -> None:
        deadline = time.monotonic() + 10
        while not re.search(pattern, self._buf):
            if time.monotonic() > deadline:
                raise RuntimeError(f"c2s login: no {pattern!r} in {self._buf[-300:]!r}")
            self._buf += self.sock.recv(65536)
        self._buf = b""

    def _read(self) -> None:
        tail = b""
        while not self._stop:
            try:
                data = self.sock.recv(1 << 20)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            if not data:
                return
            chunk = tail + data
            n = chunk.count(b"</message>")
            if n:
                self.last = time.monotonic()  # first: whoever sees the new count sees its time
                self.count += n
            tail = chunk[-9:]

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def _box_busy() -> float:
    """CPU seconds all processes of the machine have used so far (ours and anyone else's)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def _proc_cpu(pid: int) -> float:
    """User+system CPU seconds of a process and its children so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


# == the run ===================================================================================

def _call(conn, cmd):  # noqa: ANN001, ANN202
    conn.send(cmd)
    return conn.recv()


POLL = 0.025  # seconds between polls of the counters (each poll costs every process a little CPU)


def _wait(count_fn, target: int, timeout: float) -> float | None:  # noqa: ANN001
    """When ``count_fn()`` (a count, and the monotonic time its last increment happened)
    reached ``target``: the time of that increment, not of the poll that saw it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n, last = count_fn()
        if n >= target:
            return last
        time.sleep(POLL)
    return None


def run_ring(args: argparse.Namespace, ctx, sender, tmp: str) -> dict:  # noqa: ANN001
    from ring.ca import init_ca, issue_node
    from ring.keyspace import KeySpace

    space = KeySpace()
    ca = Path(tmp) / "ca"
    init_ca(ca)
    roles = ["edge"] + [f"node{i}" for i in range(1, args.nodes)]
    # Node ids are hashes of fresh keys: re-issue until no node owns less than a third of a
    # fair share of the key space, so the recipients can be spread evenly.
    for _ in range(1000):
        creds = {r: issue_node(ca, r, space=space, force=True) for r in roles}
        order = sorted(c.node_id for c in creds.values())
        arcs = [(order[i] - order[i - 1]) % space.modulus for i in range(len(order))]
        if min(arcs) * len(order) * 3 >= space.modulus:
            break
    conns, procs, ids = {}, {}, {}
    boot: list[str] = []
    for r in roles:
        cred = creds[r]
        files = (str(ca / "ca.pem"), str(cred.cert_path), str(cred.key_path))
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=_ring_proc, args=(r, files, boot, args.sender_port, theirs,
                                                 args.profile in (r, "all") or (args.profile == "nodes" and r != "edge"),
                                                 args.plain_ring))
        p.start()
        addr, s2s_port, node_id = mine.recv()
        conns[r], procs[r] = mine, p
        ids[r] = node_id
        if r == "edge":
            boot, edge_port = [addr], s2s_port
    # Settle: the registry knows the edge, and the paths from the edge to every node stay
    # the same for a second (fingers fixed).
    t_end = time.monotonic() + 60
    last, stable = None, 0
    while time.monotonic() < t_end:
        stats = {r: _call(c, "stats") for r, c in conns.items()}
        paths = [_call(conns["edge"], ("probe", nid)) for r, nid in ids.items() if r != "edge"]
        ready = all(s[2] is not None for s in stats.values()) and sum(s[3] for s in stats.values()) >= 1
        stable = stable + 1 if ready and None not in paths and paths == last else 0
        last = paths
        if stable >= 5:
            break
        time.sleep(0.2)
    else:
        raise RuntimeError("the ring did not converge within 60 s")

    def arrived() -> tuple[int, float]:
        stats = [_call(c, "stats") for c in conns.values()]
        return sum(s[0] for s in stats), max(s[5] for s in stats)

    jids = spread_jids(space, ids, "edge", 4096)
    spy = Spy(args.spy, {"sender": args.sender_pid} | {r: p.pid for r, p in procs.items()})
    rounds = []
    for _ in range(args.rounds):
        result = _measure(args, sender, ("127.0.0.1", edge_port, RING, jids), arrived,
                          lambda: {"sender": _proc_cpu(args.sender_pid)} | {r: _proc_cpu(p.pid) for r, p in procs.items()}
                          | {f"{r} gc": _call(c, "stats")[4] for r, c in conns.items()},
                          lambda: [_call(c, "profile-on") for c in conns.values()] and spy.start(),
                          lambda: spy.stop() or [_call(c, "profile-off") for c in conns.values()])
        # The same envelopes originated at the edge without s2s: the ring's share of its cost.
        _call(conns["edge"], ("prepare", args.stanzas, jids))
        base = arrived()[0]
        cpu0, t0 = {r: _proc_cpu(p.pid) for r, p in procs.items()}, time.monotonic()
        _call(conns["edge"], "load")
        t_end = _wait(lambda: _since(arrived, base), args.stanzas, 300)
        cpu1 = {r: _proc_cpu(p.pid) for r, p in procs.items()}
        if t_end is not None:
            per = {r: (cpu1[r] - cpu0[r]) / args.stanzas * 1e6 for r in cpu0}
            result["ring_only"] = {"rate": args.stanzas / (t_end - t0), "cpu_us": per["edge"], "per": per}
        rounds.append(result)
    result = {"rounds": rounds, "core": {r: _call(c, "core") for r, c in conns.items()}}
    texts = [_call(c, "exit") for c in conns.values()]
    for p in procs.values():
        p.join(10)
    result["profile"] = "".join(texts)
    result["spy"] = spy.report({k: statistics.median(r["cpu_us"][k] for r in rounds) for k in rounds[0]["cpu_us"]})
    return result


def spread_jids(space, ids: dict[str, int], edge: str, count: int) -> list[str]:  # noqa: ANN001
    """``count`` recipient JIDs whose keys fall on the nodes other than the edge in equal
    shares: every stanza must cross the ring (the edge keeps none for itself), and no node
    gets more than its share however the random node ids cut up the key space."""
    from bisect import bisect_left

    from ring.ids import jid_key

    order = sorted(ids.values())
    owners = [r for r in ids if r != edge]
    want = {r: count // len(owners) + (1 if i < count % len(owners) else 0) for i, r in enumerate(owners)}
    by_id = {v: k for k, v in ids.items()}
    out: list[str] = []
    for i in range(count * 100):
        jid = f"bench{i}@{RING}"
        owner = by_id[order[bisect_left(order, jid_key(space, jid)) % len(order)]]
        if want.get(owner, 0) > 0:
            want[owner] -= 1
            out.append(jid)
            if len(out) == count:
                return out
    raise RuntimeError("could not spread the recipients over the ring")


def run_prosody(args: argparse.Namespace, sender, tmp: str) -> dict:  # noqa: ANN001
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.edge.peers import ProsodyPeer

    peer = ProsodyPeer(PROSODY, Path(tmp) / "prosody", routes={SENDER: args.sender_port},
                       users={"bob": "bobpass"}, log_level="warn")
    peer.start()
    try:
        client = C2SCounter(peer.c2s_port, "bob", "bobpass", PROSODY)
        try:
            pid = peer.proc.pid
            return {"rounds": [_measure(args, sender, ("127.0.0.1", peer.s2s_port, PROSODY, f"bob@{PROSODY}"),
                                        lambda: (client.count, client.last),
                                        lambda: {"sender": _proc_cpu(args.sender_pid), "prosody": _proc_cpu(pid)},
                                        lambda: None,
                                        lambda: None) for _ in range(args.rounds)]}
        finally:
            client.close()
    finally:
        peer.stop()


class Spy:
    """Sampling profiles (py-spy, when installed) of whole processes while one round measures.

    Unlike cProfile it barely slows them down (a slowed node looks dead to its neighbours,
    and the ring re-routes round it), so the figures are those of a normal run: every
    process's CPU per stanza, split by function."""

    RATE = 250  # samples per second

    def __init__(self, directory: str | None, pids: dict[str, int]) -> None:
        self.dir = Path(directory) if directory else None
        self.pids = pids
        self.rounds = 0
        self._procs: list = []

    def start(self) -> None:
        if self.dir is None:
            return
        import shutil
        import subprocess

        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rounds += 1
        self._procs = [(name, subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", str(self.RATE), "--format", "raw",
             "--function", "-o", str(self.dir / f"{name}-round{self.rounds}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)) for name, pid in self.pids.items()]
        time.sleep(0.5)  # py-spy attaches

    def stop(self) -> None:
        import signal

        for _, p in self._procs:
            p.send_signal(signal.SIGINT)
        for _, p in self._procs:
            p.wait(30)
        self._procs = []

    # Leaf frames where a process waits rather than works (py-spy cannot always tell).
    IDLE = ("EpollIOManager.get_events", "Connection._recv ", "Connection._recv_bytes", "Connection.poll",
            "WorkerThread._work", "Condition.wait", "Lock.acquire")

    LAYERS = (  # (file path prefix, layer), first match wins
        ("edge/s2s_", "s2s streams"), ("edge/xmlstream", "s2s streams"), ("edge/tls_stream", "s2s streams"),
        ("edge/jid", "JIDs"), ("edge/", "stanza routing"), ("ring/live/", "ring links"),
        ("ring/", "ring core"), ("trio/_ssl", "TLS"), ("ssl.py", "TLS"), ("trio/", "trio"),
    )

    @classmethod
    def _layer(cls, frames: list[str]) -> str:
        """The layer of the innermost frame that is not generated code (a dataclass's
        ``__init__`` counts for its caller)."""
        for fr in reversed(frames):
            path = fr[fr.rfind("(") + 1:-1]
            if path.startswith("<"):
                continue
            for prefix, layer in cls.LAYERS:
                if path.startswith(prefix):
                    return layer
            return "other"
        return "other"

    def report(self, cpu_us: dict[str, float], top: int = 14) -> str:
        """Per process: the functions that hold its CPU (self, then with callees), as shares
        of its samples scaled to its measured CPU per stanza (samples are wall-clock
        positions, and a runnable process waiting for a core is sampled too)."""
        if self.dir is None or not self.rounds:
            return ""
        out = []
        for name in self.pids:
            own: dict[str, int] = {}
            inclusive: dict[str, int] = {}
            layers: dict[str, int] = {}
            total = 0
            for i in range(1, self.rounds + 1):
                f = self.dir / f"{name}-round{i}.txt"
                if not f.exists():
                    continue
                for line in f.read_text().splitlines():
                    stack, _, count = line.rpartition(" ")
                    if not stack or not count.isdigit():
                        continue
                    frames = [re.sub(r":\d+\)$", ")", fr) for fr in stack.split(";")[1:]]
                    if not frames or frames[-1].startswith(self.IDLE):
                        continue
                    k = int(count)
                    total += k
                    own[frames[-1]] = own.get(frames[-1], 0) + k
                    layer = self._layer(frames)
                    layers[layer] = layers.get(layer, 0) + k
                    for fr in set(frames):
                        inclusive[fr] = inclusive.get(fr, 0) + k
            us = cpu_us.get(name, 0.0)
            scale = us / total if total else 0.0
            out.append(f"== {name}: {us:.1f} us/stanza measured, {total} busy samples ==")
            out.append("  by layer: " + "  ".join(f"{layer} {k * scale:.1f}" for layer, k in
                                                 sorted(layers.items(), key=lambda kv: -kv[1])))
            for title, table in (("self", own), ("with callees", inclusive)):
                out.append(f"  {title}:")
                rows = sorted(table.items(), key=lambda kv: -kv[1])
                if title != "self":  # the frames every sample shares say nothing
                    rows = [(fr, k) for fr, k in rows if k < 0.98 * total]
                for fr, k in rows[:top]:
                    out.append(f"    {k * scale:6.2f}  {fr}")
        return "\n".join(out)


def _since(count, base: int) -> tuple[int, float]:  # noqa: ANN001
    n, last = count()
    return n - base, last


def _measure(args, sender, target, count, cpu, prof_on, prof_off) -> dict:  # noqa: ANN001
    """``count()``: stanzas delivered so far, and the monotonic time of the last one."""
    host, port, domain, to = target
    n = args.stanzas
    base = count()[0]
    sender.send(("blast", host, port, domain, to, n))
    answer = sender.recv()
    if answer != "warm":
        raise RuntimeError(f"the sender failed: {answer}")
    if _wait(lambda: _since(count, base), WARMUP, 60) is None:
        raise RuntimeError(f"warm-up stanzas did not all arrive at {domain} ({count()[0] - base}/{WARMUP})")
    base = count()[0]
    prof_on()
    cpu0, wall0 = cpu() | {"box": _box_busy()}, time.monotonic()
    sender.send("go")
    t_end = _wait(lambda: _since(count, base), n, 300)
    cpu1, wall1 = cpu() | {"box": _box_busy()}, time.monotonic()
    prof_off()
    t0, t_sent = sender.recv()
    sender.send("close")
    if t_end is None:
        raise RuntimeError(f"only {count()[0] - base} of {n} stanzas arrived at {domain}")
    wall = wall1 - wall0
    box = cpu1.pop("box") - cpu0.pop("box")
    return {"rate": n / (t_end - t0), "secs": t_end - t0, "sent_secs": t_sent - t0, "box": box / wall,
            "cpu": {k: (cpu1[k] - cpu0[k]) / wall for k in cpu0},
            "cpu_us": {k: (cpu1[k] - cpu0[k]) / n * 1e6 for k in cpu0}}


def _shares(cpu: dict[str, float]) -> str:
    """Each process's CPU use during the measurement, as a share of one core."""
    return "  ".join(f"{k} {v:.0%}" for k, v in cpu.items() if not k.endswith(" gc")) + f" (of {os.cpu_count()} cores)"


def _per_process(rounds: list[dict], key: str) -> str:
    """Median CPU per stanza of each process and of all of them (what a box with fewer
    cores than processes divides among them: it bounds the delivered rate)."""
    names = [k for k in rounds[0][key] if not k.endswith(" gc")]
    per = {k: statistics.median(r[key][k] for r in rounds) for k in names}
    gc_us = {k: statistics.median(r[key][f"{k} gc"] for r in rounds) for k in names if f"{k} gc" in rounds[0][key]}
    total = statistics.median(sum(r[key][k] for k in names) for r in rounds)
    return "  ".join(f"{k} {v:.1f}" + (f" (gc {gc_us[k]:.1f})" if k in gc_us else "")
                     for k, v in per.items()) + f"  = all {total:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_edge")
    ap.add_argument("--stanzas", type=int, default=100_000, help="measured stanzas per target")
    ap.add_argument("--nodes", type=int, default=4, help="ring size, the edge included (>= 4)")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per target (medians are compared)")
    ap.add_argument("--plain-ring", action="store_true", help="plain TCP between ring nodes instead of TLS")
    ap.add_argument("--profile", choices=["edge", "node1", "nodes", "all"], default=None,
                    help="profile these ring node processes while they measure (nodes: all but the edge)")
    ap.add_argument("--spy", metavar="DIR", default=None,
                    help="sample every process of the edge rounds with py-spy (stacks kept in DIR)")
    ap.add_argument("--skip-prosody", action="store_true", help="measure the edge only")
    args = ap.parse_args(argv)
    if args.nodes < 4:
        ap.error("--nodes must be at least 4")

    ctx = mp.get_context("spawn")
    mine, theirs = ctx.Pipe()
    sp = ctx.Process(target=_sender_proc, args=(theirs,))
    sp.start()
    args.sender_port, args.sender_pid = mine.recv(), sp.pid
    try:
        with tempfile.TemporaryDirectory(prefix="ringmesh-bench-edge-") as tmp:
            ring = run_ring(args, ctx, mine, tmp)
            prosody = None if args.skip_prosody else run_prosody(args, mine, tmp)
    finally:
        mine.send(("exit",))
        sp.join(10)

    def med(rounds: list[dict], get) -> float:  # noqa: ANN001
        return statistics.median(get(r) for r in rounds)

    links = "plain TCP" if args.plain_ring else "mutual TLS"
    print(f"machine: {os.cpu_count()} cores (shared), Python {sys.version.split()[0]}; {args.nodes} ring node "
          f"processes ({links} between them), 1 sender process, Prosody 0.12")
    print(f"{args.stanzas:,} headline messages ({len(_stanzas(1, 0, None))} bytes each) per round, "
          f"{args.rounds} rounds, plain s2s with dialback, one sender; medians compared")
    rr = ring["rounds"]
    for i, r in enumerate(rr, 1):
        ro = r.get("ring_only", {})
        print(f"  edge round {i}: {r['rate']:,.0f} stanzas/s delivered ({r['secs']:.2f} s), edge CPU "
              f"{r['cpu_us']['edge']:.1f} us/stanza; CPU {_shares(r['cpu'])}, whole machine {r['box']:.0%}; ring alone {ro.get('rate', 0):,.0f}/s at "
              f"{ro.get('cpu_us', 0):.1f} us/stanza at the edge")
    edge_rate = med(rr, lambda r: r["rate"])
    edge_us = med(rr, lambda r: r["cpu_us"]["edge"])
    ring_us = med([r for r in rr if "ring_only" in r], lambda r: r["ring_only"]["cpu_us"]) if any(
        "ring_only" in r for r in rr) else float("nan")
    print(f"  edge -> ring of {args.nodes}: {edge_rate:,.0f} stanzas/s delivered; the edge spends {edge_us:.1f} us "
          f"CPU per stanza ({ring_us:.1f} of them originating and acknowledging envelopes, "
          f"{edge_us - ring_us:.1f} s2s and stanza routing) -> {1e6 / edge_us:,.0f} stanzas/s on one core")
    print(f"  CPU per delivered stanza, every process (medians, us): {_per_process(rr, 'cpu_us')}")
    if all("ring_only" in r for r in rr):
        print(f"      ring alone, envelopes originated at the edge (us): "
              f"{_per_process([r['ring_only'] for r in rr], 'per')}")
    troubles = {r: c for r, c in ring["core"].items() if c}
    if troubles:
        print(f"      ring trouble counters (re-routes, duplicates...): {troubles}")
    if prosody is not None:
        pr = prosody["rounds"]
        for i, r in enumerate(pr, 1):
            print(f"  Prosody round {i}: {r['rate']:,.0f} stanzas/s delivered to the c2s client ({r['secs']:.2f} s), "
                  f"{r['cpu_us']['prosody']:.1f} us CPU/stanza, CPU {_shares(r['cpu'])}, whole machine {r['box']:.0%}")
        p_rate = med(pr, lambda r: r["rate"])
        p_us = med(pr, lambda r: r["cpu_us"]["prosody"])
        print(f"  Prosody 0.12 receiving: {p_rate:,.0f} stanzas/s delivered; {p_us:.1f} us CPU per stanza "
              f"-> {1e6 / p_us:,.0f} stanzas/s on one core")
        print(f"  CPU per delivered stanza, every process (medians, us): {_per_process(pr, 'cpu_us')}")
        ratio, core_ratio = edge_rate / p_rate, p_us / edge_us
        print(f"  ratio edge / Prosody, delivered rates: {ratio:.2f}  (goal >= {GOAL_RATIO:g}: "
              f"{'met' if ratio >= GOAL_RATIO else 'NOT met'})")
        print(f"  ratio edge / Prosody, per core (CPU per stanza): {core_ratio:.2f}  "
              f"({'met' if core_ratio >= GOAL_RATIO else 'NOT met'})")
    if ring.get("spy"):
        print(f"\nwhere each process's CPU per stanza goes during the edge rounds (us, py-spy samples):\n{ring['spy']}")
    if ring.get("profile"):
        print(f"\nprofiles of the ring node processes during the measured phases (tottime, cumulative):\n{ring['profile']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
