"""Run one scenario: build the world, drive it, write what happened.

Outputs in the run directory:

- ``results.ndjson``: one JSON object per observation (each request's outcome, each ring
  health sample, each disruption), in simulated-time order of completion. Contains no wall
  time, so the same seed yields the same file byte for byte.
- ``summary.json``: aggregates per request kind (outcome counts, failure rate, hop and
  latency percentiles, timeouts, stretch, latency per hop count) and run totals.
- ``manifest.json``: seed, the resolved scenario, versions (and whether the core ran
  compiled, and on which allocator), wall time, events run.
- PNG plots (``plots.py``).
"""

from __future__ import annotations

import json
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ring import compiled
from topology.generators import generate
from topology.latency import (
    ConstantLatency,
    Euclidean,
    LatencyModel,
    MatrixLatency,
    PairwiseUniform,
    UnderlayLatency,
)

from . import memory
from . import scenario as sc
from .churn import RateChurn, SessionChurn, SessionLength, heal, mass_failure, partition
from .driver import Simulation, sub_seed
from .observers import RingObserver
from .oracle import build_static_ring
from .workload import KeyChooser, KindStats, RequestTracker, Workload

PROGRESS_STEPS = 200


def build_latency(d: dict[str, Any], base_dir: Path) -> tuple[LatencyModel, Any]:
    """The run's latency model (and the underlay graph, if any)."""
    lat, topo, seed = d["latency"], d["topology"], d["seed"]
    model = lat["model"]
    graph = None
    if topo["kind"] != "none":
        params = dict(topo["params"])
        graph = generate(topo["kind"], seed=sub_seed(seed, "topology") % (1 << 31), **params)
    if model == "constant":
        return ConstantLatency(float(lat["constant_ms"])), graph
    if model == "uniform":
        return PairwiseUniform(float(lat["lo_ms"]), float(lat["hi_ms"]),
                               seed=sub_seed(seed, "latency")), graph
    if model == "euclidean":
        return Euclidean(span_ms=float(lat["span_ms"]), base_ms=float(lat["base_ms"]),
                         seed=sub_seed(seed, "latency")), graph
    if model == "underlay":
        acc = topo["access_ms"]
        return UnderlayLatency(graph, seed=sub_seed(seed, "placement"), attach=topo["attach"],
                               access_ms=(float(acc[0]), float(acc[1]))), graph
    path = Path(lat["matrix"])
    if not path.is_absolute():
        path = base_dir / path
    acc = lat["access_ms"]
    return MatrixLatency.from_file(path, unit=lat["unit"], seed=sub_seed(seed, "placement"),
                                   access_ms=(float(acc[0]), float(acc[1]))), graph


def percentile(sorted_vals: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]) of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(round(q / 100 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(x, nd)


def summarise_kind(st: KindStats) -> dict[str, Any]:
    counted = {k: v for k, v in st.outcomes.items() if k != "origin-down"}
    total = sum(counted.values())
    ok = counted.get("ok", 0)
    hops = sorted(st.hops)
    lat = sorted(st.latency)
    stretch = sorted(st.stretch)
    out: dict[str, Any] = {
        "requests": total,
        "outcomes": dict(sorted(st.outcomes.items())),
        "ok": ok,
        "failed": total - ok,
        "failed_fraction": _r((total - ok) / total) if total else None,
        "timeouts_mean": _r(sum(st.timeouts) / len(st.timeouts)) if st.timeouts else None,
        "timeouts_p99": percentile(sorted(st.timeouts), 99),
        "hops_mean": _r(sum(hops) / len(hops), 4) if hops else None,
        "hops_p1": percentile(hops, 1),
        "hops_p50": percentile(hops, 50),
        "hops_p99": percentile(hops, 99),
        "hops_pdf": {str(h): _r(c / len(hops), 6) for h, c in _counts(hops).items()},
        "latency_mean": _r(sum(lat) / len(lat)) if lat else None,
        "latency_p50": _r(percentile(lat, 50)),
        "latency_p99": _r(percentile(lat, 99)),
        "stretch_mean": _r(sum(stretch) / len(stretch), 4) if stretch else None,
        "stretch_p50": _r(percentile(stretch, 50), 4),
        "stretch_p99": _r(percentile(stretch, 99), 4),
        "latency_by_hops": {
            str(h): {"n": len(v), "p50": _r(percentile(sorted(v), 50)),
                     "p99": _r(percentile(sorted(v), 99))}
            for h, v in sorted(st.by_hops.items())
        },
    }
    return out


def _counts(vals: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in vals:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def versions() -> dict[str, str]:
    vs = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("ringmesh", "networkx", "matplotlib", "cryptography", "tqdm"):
        try:
            vs[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            vs[pkg] = "not installed"
    vs["git_commit"] = _git_commit()
    vs["core"] = compiled.describe()  # interpreted or compiled: the same results, not speed
    vs["memory"] = memory.describe()  # likewise the allocator
    return vs


def _git_commit() -> str:
    """The checkout's commit (with "+dirty" for local changes), or "unknown"."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ring", "simulations",
                                "topology"], cwd=root, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


class _Writer:
    def __init__(self, path: Path) -> None:
        self.fh = path.open("w", encoding="utf-8")
        self.count = 0

    def __call__(self, rec: dict[str, Any]) -> None:
        self.fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        self.fh.close()


def run_scenario(d: dict[str, Any], out_dir: str | Path, *, base_dir: Path | None = None,
                 progress: bool = False, plots: bool | None = None,
                 on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Run a resolved scenario (see ``scenario.load``) and write its outputs to ``out_dir``."""
    tl = sc.check(d)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wall0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    seed = d["seed"]
    cfg = sc.ring_config(d)
    model, graph = build_latency(d, base_dir or Path("."))
    sim = Simulation(cfg, seed=seed, latency=model, loss=float(d["latency"]["loss"]),
                     ids=d["ring"]["ids"], max_events=int(d["max_events"]))
    writer = _Writer(out / "results.ndjson")
    try:
        summary = _drive(d, sim, tl, writer, progress, on_progress)
    finally:
        writer.close()
    wall = time.perf_counter() - wall0
    summary["records"] = writer.count
    summary["wall_seconds"] = round(wall, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    manifest = {
        "name": d["name"], "seed": seed, "scenario": d, "versions": versions(),
        "started_utc": started, "wall_seconds": round(wall, 3),
        "events_run": sim.kernel.events_run,
        "events_per_second": round(sim.kernel.events_run / wall) if wall > 0 else None,
        "timeline": tl.__dict__,
        "underlay": None if graph is None else {
            "kind": graph.graph.get("kind"), "vertices": graph.number_of_nodes(),
            "edges": graph.number_of_edges()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n",
                                       encoding="utf-8")
    if d["plots"] if plots is None else plots:
        from .plots import plot_run

        plot_run(out, summary, out / "results.ndjson")
    return summary


def _drive(d: dict[str, Any], sim: Simulation, tl: sc.Timeline, sink: Callable[[dict], None],
           progress: bool, on_progress: Callable[[float], None] | None) -> dict[str, Any]:
    seed = d["seed"]
    ring = d["ring"]
    n = ring["nodes"]
    t0 = tl.t0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=round(tl.drain_end, 1), unit="sim-s", desc=d["name"], leave=False,
                   file=sys.stderr, dynamic_ncols=True)
    # -- the ring --------------------------------------------------------------------------
    initial: list[int]
    if ring["build"] == "oracle":
        initial = build_static_ring(sim, n, maintain=bool(ring["maintain"]))
    else:
        initial = [sim.spawn()]
        sim.create(initial[0])
        gap = tl.build_end / max(n - 1, 1)
        join_rng = random.Random(sub_seed(seed, "build"))
        for k in range(1, n):
            sim.kernel.at(k * gap, _join_one, sim, join_rng, initial)
    # -- disruptions -----------------------------------------------------------------------
    ev_rng = random.Random(sub_seed(seed, "events"))
    for ev in sorted(d["events"], key=lambda e: e["at"]):
        sim.kernel.at(t0 + float(ev["at"]), _disrupt, sim, (ev, ev_rng), sink)
    ch = d["churn"]
    stop = t0 + float(ch["stop"]) if ch["stop"] is not None else tl.end
    if ch["model"] == "rate":
        RateChurn(sim, join_rate=float(ch["join_rate"]), fail_rate=float(ch["fail_rate"]),
                  start=t0 + float(ch["start"]), stop=stop, seed=sub_seed(seed, "churn"),
                  leave_fraction=float(ch["leave_fraction"]))
    elif ch["model"] == "sessions":
        s = ch["session"]
        SessionChurn(sim, arrival_rate=float(ch["arrival_rate"]),
                     session=SessionLength(str(s.get("dist", "weibull")), float(s["scale"]),
                                           float(s.get("shape", 1.0))),
                     start=t0 + float(ch["start"]), stop=stop, seed=sub_seed(seed, "churn"),
                     leave_fraction=float(ch["leave_fraction"]), initial=initial)
    # -- requests and observers --------------------------------------------------------------
    tracker = RequestTracker(sim, sink)
    for k, w in enumerate(d["workload"]):
        wseed = sub_seed(seed, f"workload{k}")
        keys = KeyChooser(sim.space, random.Random(wseed ^ 1), dist=w["keys"],
                          s=float(w["zipf_s"]), population=int(w["zipf_population"]))
        wstop = t0 + float(w["stop"]) if w["stop"] is not None else tl.end
        Workload(sim, tracker, kind=w["kind"], start=t0 + float(w["start"]), stop=wstop,
                 seed=wseed, rate=w["rate"], count=w["count"], keys=keys,
                 payload_bytes=int(w["payload_bytes"]), deadline=float(w["deadline"]))
    observer = None
    obs = d["observers"]
    if obs["ring_every"]:
        observer = RingObserver(sim, sink, every=float(obs["ring_every"]), start=t0, stop=tl.end,
                                finger_sample=int(obs["finger_sample"]),
                                seed=sub_seed(seed, "observer"))
    # -- run ---------------------------------------------------------------------------------
    steps = PROGRESS_STEPS
    done = 0.0
    for k in range(1, steps + 1):
        until = tl.drain_end * k / steps
        sim.run(until)
        if bar is not None:
            bar.update(round(until - done, 1))
        done = until
        if on_progress is not None:
            on_progress(until / tl.drain_end if tl.drain_end else 1.0)
    if tl.drain_end == 0:
        sim.run(0.0)
    if bar is not None:
        bar.close()
    # -- summary -----------------------------------------------------------------------------
    summary: dict[str, Any] = {
        "name": d["name"], "seed": seed, "nodes": n, "t0": t0, "end": tl.end,
        "active_at_end": len(sim.truth), "spawned": len(sim.nodes),
        "crashes": sim.crashes, "leaves": sim.leaves, "joins_started": sim.joins,
        "successor_list_length": sim.config.r,
        "events_run": sim.kernel.events_run,
        "network": sim.net.stats(),
        "core_events": dict(sorted(sim.event_counts.items())),
    }
    for kind, st in tracker.stats.items():
        if st.outcomes:
            summary[kind] = summarise_kind(st)
    if observer is not None and observer.records:
        summary["ring_final"] = observer.records[-1]
    return summary


def _join_one(sim: Simulation, rng: random.Random, initial: list[int]) -> None:
    i = sim.spawn()
    initial.append(i)
    ids = sim.truth.ids
    if not ids:
        sim.create(i)
        return
    sim.join(i, sim.by_id[ids[rng.randrange(len(ids))]])


def _disrupt(sim: Simulation, arg: tuple[dict[str, Any], random.Random],
             sink: Callable[[dict], None]) -> None:
    ev, rng = arg
    kind = ev["kind"]
    rec: dict[str, Any] = {"type": "event", "t": round(sim.now, 6), "kind": kind}
    if kind == "fail":
        rec["failed"] = len(mass_failure(sim, float(ev["fraction"]), rng))
    elif kind == "leave":
        live = sim.active_indices()
        victims = rng.sample(live, round(float(ev["fraction"]) * len(live)))
        for i in victims:
            sim.leave(i)
        rec["left"] = len(victims)
    elif kind == "partition":
        rec["side1"] = partition(sim, float(ev["fraction"]), rng)
    else:
        heal(sim)
    rec["active"] = len(sim.truth)
    sink(rec)
