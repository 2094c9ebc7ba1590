"""Simulator benchmark: events/s against a bare event heap, memory per node, the 10^5-node
churn hour and the static 10^6-node ring.

    .venv/bin/python -m benchmarks.bench_sim [--slice SECONDS]
                                             [--churn-nodes N] [--million-nodes N]
                                             [--skip-million]

It first prints which build of the hot modules runs (``core: interpreted`` or ``compiled``:
see ring.compiled and bench_compiled). Figures printed (all measured in this run, side by
side):

1. bare heap: trivial events/s of a raw ``heapq`` loop and of the simulator's ``Kernel`` --
   the anchor every other rate is divided by;
2. ring events/s: a 10^4-node ring running Chord maintenance (stabilize, fix fingers and
   check predecessor every 30 s on average) with churn and lookups, and its ratio to (1);
3. memory per node: tracemalloc over an oracle-built static ring, with the top allocation
   sites (what to shrink in the core);
4. 10^5 nodes with churn (joins and failures at N/7200 per second each: mean session two
   hours) and 10 lookups/s for one simulated hour, all of it (about 25 minutes here).
   ``--slice S`` simulates S seconds after the warm-up and projects the hour from them, for
   a quick look only: the churn's repair work (finger lookups for newcomers and for fingers
   that died) builds up over the first ten simulated minutes, so an early slice saw 24,400
   events per simulated second where the whole hour averages 39,400;
5. a static 10^6-node ring built by the oracle and 10^5 lookups routed through the real
   cores, in a child process so that its peak RSS is its own (goal: within 2 GiB).
"""

from __future__ import annotations

import argparse
import heapq
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from typing import Any

from simulations import memory

GIB = 1 << 30


def _cfg(n: int) -> Any:
    from ring.config import RingConfig

    return RingConfig(expected_nodes=n, stabilize_interval=30.0, fix_fingers_interval=30.0,
                      check_predecessor_interval=30.0, rpc_timeout=0.5, ack_timeout=0.5,
                      lookup_timeout=5.0, custody_timeout=5.0)


def bare_heap(n: int = 1_000_000) -> dict[str, float]:
    from simulations.kernel import Kernel

    def noop(a: Any, b: Any, c: Any) -> None:
        pass

    heap: list[tuple[float, int, Any, Any, Any, Any]] = []
    push, pop = heapq.heappush, heapq.heappop
    t0 = time.perf_counter()
    t = 0.0
    for seq in range(n):  # a steady heap of ~1000 pending events, like timers in flight
        if seq < 1000:
            push(heap, (seq * 0.001, seq, noop, None, None, None))
            continue
        tt, _, fn, a, b, c = pop(heap)
        fn(a, b, c)
        t = tt
        push(heap, (t + 1.0, seq, noop, None, None, None))
    raw = n / (time.perf_counter() - t0)
    k = Kernel()

    def again(a: Any, b: Any, c: Any) -> None:
        k.after(1.0, again)

    for i in range(1000):
        k.at(i * 0.001, again)
    t0 = time.perf_counter()
    ran = k.run(n / 1000.0)
    kern = ran / (time.perf_counter() - t0)
    return {"raw_heapq_events_per_s": raw, "kernel_events_per_s": kern}


def _maintained_ring(n: int, *, seed: int = 1, lookups_per_s: float = 10.0) -> Any:
    import random

    from simulations.churn import RateChurn
    from simulations.driver import Simulation
    from simulations.oracle import build_static_ring
    from simulations.workload import KeyChooser, RequestTracker, Workload
    from topology.latency import PairwiseUniform

    sim = Simulation(_cfg(n), seed=seed, latency=PairwiseUniform(10, 100, seed=seed), ids="hash")
    build_static_ring(sim, n, maintain=True)
    RateChurn(sim, join_rate=n / 7200, fail_rate=n / 7200, start=0.0, stop=1e12, seed=seed + 1)
    recs: list[dict[str, Any]] = []
    tr = RequestTracker(sim, recs.append, deadline=30.0)
    Workload(sim, tr, kind="lookup", start=0.0, stop=1e12, seed=seed + 2, rate=lookups_per_s,
             keys=KeyChooser(sim.space, random.Random(seed + 3)))
    return sim, recs


def ring_rate(n: int = 10_000, warm: float = 30.0, span: float = 60.0) -> dict[str, float]:
    sim, recs = _maintained_ring(n)
    sim.run(warm)
    e0, t0 = sim.kernel.events_run, time.perf_counter()
    sim.run(warm + span)
    dt = time.perf_counter() - t0
    ev = sim.kernel.events_run - e0
    ok = sum(r["outcome"] == "ok" for r in recs)
    return {"nodes": n, "events_per_s": ev / dt, "events_per_sim_s": ev / span,
            "lookups": len(recs), "lookups_ok": ok}


def memory_per_node(n: int = 20_000) -> dict[str, Any]:
    import gc

    from simulations.driver import Simulation
    from simulations.oracle import build_static_ring
    from topology.latency import ConstantLatency

    from ring.config import RingConfig

    sim = Simulation(RingConfig(expected_nodes=n), seed=1, latency=ConstantLatency(10),
                     ids="hash")
    gc.collect()
    tracemalloc.start(1)
    before = tracemalloc.take_snapshot()
    build_static_ring(sim, n)
    for node in sim.nodes:  # routing indexes are built on first use: use them once
        node.table.next_hop((node.me.id + (1 << 150)) % sim.space.modulus)
    gc.collect()
    after = tracemalloc.take_snapshot()
    cur, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sites = []
    for st in after.compare_to(before, "lineno")[:8]:
        fr = st.traceback[0]
        sites.append((round(st.size_diff / n), f"{fr.filename.split('/main/')[-1]}:{fr.lineno}"))
    return {"nodes": n, "r": sim.config.r, "bytes_per_node": cur / n, "top_sites": sites}


def churn_hour(n: int, slice_s: float, full: bool, warm: float = 60.0) -> dict[str, Any]:
    """Build, run the first ``warm`` simulated seconds (every core's first maintenance round
    and routing-index build happen there), then time the rest of the hour (``full``) or a
    slice of it, from which the hour is projected as build + warm-up + slice rate x the rest
    of the hour (a lower bound: see the module docstring)."""
    t0, c0 = time.perf_counter(), time.process_time()
    sim, recs = _maintained_ring(n)
    sim.run(warm)
    setup, setup_cpu = time.perf_counter() - t0, time.process_time() - c0
    span = 3600.0 - warm if full else min(slice_s, 3600.0 - warm)
    e0 = sim.kernel.events_run
    t2, c2 = time.perf_counter(), time.process_time()
    sim.run(warm + span)
    run, run_cpu = time.perf_counter() - t2, time.process_time() - c2
    projected = setup + run * (3600.0 - warm) / span
    projected_cpu = setup_cpu + run_cpu * (3600.0 - warm) / span
    ok = sum(r["outcome"] == "ok" for r in recs)
    return {"nodes": n, "setup_s": setup, "simulated_s": span, "run_s": run,
            "events": sim.kernel.events_run - e0,
            "events_per_s": (sim.kernel.events_run - e0) / run,
            "cpu_us_per_event": run_cpu / max(sim.kernel.events_run - e0, 1) * 1e6,
            "hour_wall_s": projected, "hour_cpu_s": projected_cpu, "projected": not full, "active_at_end": len(sim.truth),
            "lookups": len(recs), "lookups_ok": ok,
            "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}


def million_child(n: int, lookups: int) -> None:
    """Runs in a child process: static ring of n nodes + lookups; prints JSON."""
    import random

    from simulations.driver import Simulation
    from simulations.oracle import build_static_ring
    from simulations.workload import RequestTracker
    from topology.latency import PairwiseUniform

    from ring.config import RingConfig

    t0 = time.perf_counter()
    sim = Simulation(RingConfig(expected_nodes=n), seed=1,
                     latency=PairwiseUniform(10, 100, seed=1), ids="ed25519")
    build_static_ring(sim, n)
    build = time.perf_counter() - t0
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    recs: list[dict[str, Any]] = []
    hops = [0, 0]

    def sink(r: dict[str, Any]) -> None:
        if r["outcome"] == "ok":
            hops[0] += r["hops"]
            hops[1] += 1
        recs.append(r["outcome"])

    tr = RequestTracker(sim, sink, deadline=60.0)
    rng = random.Random(2)
    t1 = time.perf_counter()
    for k in range(lookups):
        tr.issue("lookup", rng.randrange(n), rng.getrandbits(sim.space.bits))
        if k % 1000 == 999:
            sim.run(sim.now + 1.0)
    sim.run(sim.now + 120.0)
    route = time.perf_counter() - t1
    print(json.dumps({"nodes": n, "r": sim.config.r, "build_s": build, "route_s": route,
                      "lookups": len(recs), "ok": recs.count("ok"),
                      "hops_mean": hops[0] / max(hops[1], 1),
                      "rss_after_build_gib": rss_built / GIB,
                      "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      * 1024 / GIB}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_sim")
    ap.add_argument("--slice", type=float, default=None,
                    help="simulate only this many seconds of the 10^5-node churn hour and project "
                         "the hour from them (a quick, optimistic look)")
    ap.add_argument("--churn-nodes", type=int, default=100_000)
    ap.add_argument("--million-nodes", type=int, default=1_000_000)
    ap.add_argument("--million-lookups", type=int, default=100_000)
    ap.add_argument("--skip-million", action="store_true")
    ap.add_argument("--malloc", choices=memory.CHOICES, default="auto",
                    help="allocator (see simulations.memory): mimalloc on huge pages when "
                         "installed (auto), or CPython's own; the static 10^6 ring is always "
                         "measured on CPython's own, as its figure is memory")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    if args.child:
        million_child(*args.child)
        return 0

    from ring.compiled import describe

    if argv is None:  # run as a command: start again on the allocator asked for if need be
        memory.ensure(args.malloc)
    print(describe(), "(./dev build-fast compiles it; python -m ring.compiled status)",
          flush=True)
    print(memory.describe(), "(--malloc; apt-get install libmimalloc2.0)", flush=True)
    anchor = bare_heap()
    print(f"bare heap: raw heapq {anchor['raw_heapq_events_per_s']:,.0f} trivial events/s; "
          f"Kernel {anchor['kernel_events_per_s']:,.0f} events/s", flush=True)
    rr = ring_rate()
    print(f"ring of {rr['nodes']:,} maintained cores + churn + lookups: "
          f"{rr['events_per_s']:,.0f} events/s = "
          f"{rr['events_per_s'] / anchor['raw_heapq_events_per_s']:.3f} x bare heap; "
          f"{rr['events_per_sim_s']:,.0f} events per simulated second; "
          f"lookups ok {rr['lookups_ok']}/{rr['lookups']}", flush=True)
    mem = memory_per_node()
    print(f"memory: {mem['bytes_per_node']:,.0f} bytes per node (static ring of "
          f"{mem['nodes']:,}, r={mem['r']}); top sites (bytes/node):", flush=True)
    for size, where in mem["top_sites"]:
        print(f"    {size:>8,}  {where}")
    ch = churn_hour(args.churn_nodes, args.slice or 0.0, args.slice is None)
    word = "projected from a slice of" if ch["projected"] else "measured over"
    verdict = ("not judged here" if ch["projected"] or ch["nodes"] < 100_000
               else "MET" if ch["hour_wall_s"] <= 600 else "NOT MET")
    print(f"churn: {ch['nodes']:,} nodes, one simulated hour {word} {ch['simulated_s']:.0f} s "
          f"after a {60:.0f} s warm-up: "
          f"{ch['hour_wall_s'] / 60:.1f} min wall, {ch['hour_cpu_s'] / 60:.1f} min of CPU "
          f"(build + warm-up {ch['setup_s']:.1f} s, {ch['events'] / ch['simulated_s']:,.0f} events "
          f"per simulated s, {ch['cpu_us_per_event']:.2f} us of CPU per event, "
          f"{ch['events_per_s']:,.0f} events/s = "
          f"{ch['events_per_s'] / anchor['raw_heapq_events_per_s']:.3f} x bare heap; "
          f"goal for the whole hour of 10^5 nodes <= 10 min: {verdict}); "
          f"active at end {ch['active_at_end']:,}; peak RSS {ch['max_rss_gib']:.2f} GiB", flush=True)
    if not args.skip_million:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_sim", "--child",
                               str(args.million_nodes), str(args.million_lookups)],
                              capture_output=True, text=True, env=memory.pymalloc_environment())
        if proc.returncode != 0:
            print(f"static ring: child failed: {proc.stderr.strip()[-500:]}")
        else:
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"static ring: {m['nodes']:,} nodes (r={m['r']}) built in {m['build_s']:.0f} s, "
                  f"{m['ok']:,}/{m['lookups']:,} lookups correct (mean {m['hops_mean']:.2f} hops) "
                  f"in {m['route_s']:.0f} s; peak RSS {m['max_rss_gib']:.2f} GiB "
                  f"({m['max_rss_gib'] * GIB / m['nodes']:,.0f} bytes/node; goal <= 2 GiB: "
                  f"{'MET' if m['max_rss_gib'] <= 2 else 'NOT MET'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
