"""The ring core alone: forwarding rate of one core, and path lengths against Chord's 1/2 log2 N.

    python -m benchmarks.bench_core [--envelopes 200000] [--max-exp 14] [--lookups 20000]

Forwarding: one core of a 1024-node ring receives envelope frames from an upstream node,
decodes them, routes each (next_hop, custody), encodes what it sends (the forwarded envelopes
and the batched RECEIVED acks), then decodes and applies the DELIVERED acks its next hops send
back. That is the whole per-envelope work of a routing node minus the socket. The codec alone
is measured beside it so the share of routing is visible.

Relaying: the same work as a live routing node does it (B of ``bench_live``, without its
sockets and TLS): reads of 500 envelope frames from an upstream, all for keys its successor
is responsible for, go through ``MessageDecoder.messages`` and ``handle_messages`` (the
frames relayed in place), the outputs are queued as a live link queues them, and the
successor's DELIVERED acks come back ten reads later (as many envelopes in custody as a live
chain holds), with the garbage collector tuned as a live node tunes it. CPU per envelope by
stage: read, core (envelopes), outputs, acks.

CPU time per envelope (process time) is the steadier figure on a shared machine.

Path length: statically built rings of 2**10 .. 2**max_exp nodes (see
InMemoryCluster.add_stable), random origins and keys routed through the real cores; every
forwarding step counts, the last one to the successor included.
"""

from __future__ import annotations

import argparse
import gc
import math
import platform
import random
import statistics
import time

from ring.collector import tune_for_routing
from ring.config import RingConfig
from ring.events import Delivered
from ring.memcluster import InMemoryCluster
from ring.messages import Ack, AckKind, Envelope, Flags, NodeRef
from ring.wire import MessageDecoder, RelayedFrames

BATCH = 64  # envelopes per read, as a live link coalesces them
RELAY_READ = 500  # envelope frames per read of a busy live link
RELAY_LAG = 10  # reads between an envelope's relay and its DELIVERED ack


def forwarding_rate(n_envelopes: int, seed: int = 1) -> dict[str, float]:
    c = InMemoryCluster(RingConfig(expected_nodes=1024), seed=seed)
    c.add_stable(1024)
    nodes = c.ring_order()
    node = c.nodes[nodes[0].addr]
    upstream = nodes[512]
    codec = node.codec
    rng = random.Random(seed)
    payload = b"<message to='juliet@ring.example' from='romeo@montague.example' type='chat'><body>" + b"x" * 60 + b"</body></message>"
    dests = []
    while len(dests) < 4096:
        k = rng.getrandbits(160)
        if not node.table.is_responsible(k):
            dests.append(k)
    frames = [codec.encode_frame(Envelope(i + 1, upstream.id, dests[i % 4096], 64, 3, Flags.NONE, payload))
              for i in range(n_envelopes)]
    batches = [b"".join(frames[i : i + BATCH]) for i in range(0, len(frames), BATCH)]
    dec = MessageDecoder(codec)
    ack_dec = MessageDecoder(codec)
    now = 0.0
    sent_bytes = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    for chunk in batches:
        dec.feed(chunk)
        while (msg := dec.next_message()) is not None:
            node.handle_message(upstream, msg, now)
        per_hop: dict[NodeRef, list[int]] = {}
        for dest, out in node.take_outputs():
            sent_bytes += len(codec.encode_frame(out))
            if type(out) is Envelope:
                per_hop.setdefault(dest, []).append((out.origin << 64) | out.msg_id)
        # next hops confirm delivery: their ack frames come back and are applied
        for hop, ids in per_hop.items():
            ack_dec.feed(codec.encode_frame(Ack(AckKind.DELIVERED, tuple(ids))))
            while (ack := ack_dec.next_message()) is not None:
                node.handle_message(hop, ack, now)
        node.take_outputs()  # DELIVERED acks back to the upstream
        now += 0.0001
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert node.stats.forwarded == n_envelopes, node.stats
    assert node.custody_count == 0

    t1 = time.perf_counter()
    for f in frames[: n_envelopes // 4]:
        codec.decode(f[4:])
    dec_rate = (n_envelopes // 4) / (time.perf_counter() - t1)
    envs = [Envelope(i, upstream.id, dests[i % 4096], 64, 3, Flags.NONE, payload) for i in range(n_envelopes // 4)]
    t2 = time.perf_counter()
    for e in envs:
        codec.encode_frame(e)
    enc_rate = len(envs) / (time.perf_counter() - t2)
    t3 = time.perf_counter()
    nh = node.table.next_hop
    for k in dests * 25:
        nh(k)
    hop_rate = len(dests) * 25 / (time.perf_counter() - t3)
    return {"forwarded_per_s": n_envelopes / elapsed, "decode_per_s": dec_rate,
            "encode_per_s": enc_rate, "next_hop_per_s": hop_rate,
            "us_per_envelope": elapsed / n_envelopes * 1e6,
            "cpu_us_per_envelope": cpu / n_envelopes * 1e6}


def relay_cost(reads: int, seed: int = 1) -> dict[str, float]:
    """CPU us per envelope of a relaying node, by stage (see the module docstring)."""
    c = InMemoryCluster(RingConfig(expected_nodes=3), seed=seed)
    c.add_stable(3)
    a, b, succ = c.ring_order()
    node = c.nodes[b.addr]
    codec = node.codec
    span = (succ.id - b.id) % codec.space.modulus
    dests = [(b.id + 1 + (span - 1) * k // 64) % codec.space.modulus for k in range(64)]
    payload = b"<message to='juliet@ring.example'><body>" + b"x" * 150 + b"</body></message>"
    data = [b"".join(codec.encode_frame(Envelope(i, a.id, dests[i % 64], 63, 1, 0, payload))
                     for i in range(r * RELAY_READ + 1, (r + 1) * RELAY_READ + 1))
            for r in range(reads)]
    dec, ack_dec = MessageDecoder(codec), MessageDecoder(codec)
    enc = codec.encode_frame
    clock = time.process_time
    spent = dict.fromkeys(("read", "core", "outputs", "acks"), 0.0)
    pending: list[list] = []
    now = 1.0

    def queue(outs) -> None:  # as LiveNode._route_outputs queues them on a link
        buf: list = []
        for _, msg in outs:
            if type(msg) is RelayedFrames:
                buf.extend(msg)
            else:
                buf.append(enc(msg))

    for r in range(reads + RELAY_LAG):
        now += 0.001
        if r < reads:
            t0 = clock()
            dec.feed(data[r])
            starts: list = []
            msgs, _ = dec.messages(starts)
            t1 = clock()
            node.handle_messages(a, msgs, now, starts, dec.last_read)
            t2 = clock()
            queue(node.take_outputs())
            t3 = clock()
            spent["read"] += t1 - t0
            spent["core"] += t2 - t1
            spent["outputs"] += t3 - t2
            pending.append([(m.origin << 64) | m.msg_id for m in msgs])
        if r >= RELAY_LAG:
            frame = enc(Ack(AckKind.DELIVERED, tuple(pending.pop(0))))
            t0 = clock()
            ack_dec.feed(frame)
            acks, _ = ack_dec.messages()
            node.handle_messages(succ, acks, now)
            queue(node.take_outputs())
            spent["acks"] += clock() - t0
    n = reads * RELAY_READ
    assert node.stats.forwarded == n and node.custody_count == 0
    return {k: v / n * 1e6 for k, v in spent.items()}


def path_lengths(exp: int, lookups: int, seed: int = 1) -> dict[str, float]:
    n = 1 << exp
    c = InMemoryCluster(RingConfig(expected_nodes=n), seed=seed)
    c.keep_events = lambda e: type(e) is Delivered
    c.add_stable(n)
    nodes = c.active()
    rng = random.Random(seed)
    for _ in range(lookups):
        origin = nodes[rng.randrange(n)]
        c.send(origin.me.addr, rng.getrandbits(c.space.bits), b"")
    c.run_for(1)
    hops = sorted(e.envelope.hops for _, e in c.events)  # type: ignore[attr-defined]
    assert len(hops) == lookups
    return {"n": n, "mean": statistics.fmean(hops), "p1": hops[len(hops) // 100],
            "p99": hops[(len(hops) * 99) // 100], "half_log2": 0.5 * math.log2(n)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envelopes", type=int, default=200_000)
    ap.add_argument("--max-exp", type=int, default=14)
    ap.add_argument("--lookups", type=int, default=20_000)
    a = ap.parse_args(argv)
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    f = forwarding_rate(a.envelopes)
    print(f"forwarding through one core (decode + route + custody + encode + acks), {a.envelopes} envelopes:")
    print(f"  {f['forwarded_per_s']:>10,.0f} envelopes/s wall ({f['us_per_envelope']:.2f} us each); "
          f"{f['cpu_us_per_envelope']:.2f} us of CPU each = "
          f"{1e6 / f['cpu_us_per_envelope']:,.0f}/s per core")
    print(f"  codec alone: decode {f['decode_per_s']:,.0f}/s, encode {f['encode_per_s']:,.0f}/s; "
          f"next_hop alone {f['next_hop_per_s']:,.0f}/s")
    thresholds = gc.get_threshold()
    tune_for_routing()  # as a live node runs (only for this part)
    try:
        runs = [relay_cost(max(1, a.envelopes // RELAY_READ // 4), seed=i) for i in range(3)]
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    best = {k: min(r[k] for r in runs) for k in runs[0]}
    print(f"relaying as a live node does ({RELAY_READ} frames a read, frames relayed in place), "
          f"CPU us per envelope, best of 3:")
    print("  " + "  ".join(f"{k} {v:.2f}" for k, v in best.items())
          + f"  = {sum(best.values()):.2f}")
    print(f"path length ({a.lookups} random lookups per size):")
    print(f"  {'N':>7} {'mean':>6} {'p1':>4} {'p99':>4} {'1/2 log2 N':>10} {'mean - 1/2 log2 N':>17}")
    for exp in range(10, a.max_exp + 1):
        t = time.perf_counter()
        p = path_lengths(exp, a.lookups)
        print(f"  {p['n']:>7} {p['mean']:>6.2f} {p['p1']:>4} {p['p99']:>4} {p['half_log2']:>10.2f} "
              f"{p['mean'] - p['half_log2']:>17.2f}   ({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
