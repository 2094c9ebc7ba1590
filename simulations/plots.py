"""PNG plots of a run and of a sweep (matplotlib, headless Agg backend).

Per run: the hop-count distribution of each request kind (the Chord paper's Fig. 10b),
latency CDFs, p50/p99 latency per hop count, failed requests over time, and routing-state
health over time when a ring observer ran. Per sweep: chosen summary metrics against the
swept parameter, with a percentile band when asked (Fig. 10a, 11, 12).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KINDS = ("lookup", "probe", "stanza")


def _finish(made: list[Path], fig: Any, ax: Any, path: Path, *, x: str, y: str, title: str,
            legend: str = "best") -> None:
    """Label, title and legend a figure, save it as ``path`` and record it in ``made``."""
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.legend(loc=legend)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    made.append(path)


def plot_run(out: Path, summary: dict[str, Any], results: Path) -> list[Path]:
    made: list[Path] = []
    kinds = [k for k in KINDS if k in summary and summary[k]["hops_pdf"]]
    if kinds:
        fig, ax = plt.subplots(figsize=(6, 4))
        width = 0.8 / len(kinds)
        for j, k in enumerate(kinds):
            pdf = summary[k]["hops_pdf"]
            xs = [int(h) + j * width for h in pdf]
            ax.bar(xs, list(pdf.values()), width=width, label=k)
        _finish(made, fig, ax, out / "hops_pdf.png", x="path length (hops)", y="PDF",
                title=f"{summary['name']}: path length, N={summary['nodes']}")
    recs: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    ring: list[dict[str, Any]] = []
    with results.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            t = r.get("type")
            if t in recs:
                recs[t].append(r)
            elif t == "ring":
                ring.append(r)
    lat_kinds = [k for k in KINDS if any(r["outcome"] == "ok" for r in recs[k])]
    if lat_kinds:
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in lat_kinds:
            xs = sorted(r["latency"] * 1000 for r in recs[k] if r["outcome"] == "ok")
            ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=k)
        _finish(made, fig, ax, out / "latency_cdf.png", x="latency (ms)", y="CDF",
                title="request latency")
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in lat_kinds:
            by = summary[k]["latency_by_hops"]
            hs = [int(h) for h in by]
            ax.plot(hs, [by[h]["p50"] * 1000 for h in by], marker="o", label=f"{k} p50")
            ax.plot(hs, [by[h]["p99"] * 1000 for h in by], marker="^", linestyle="--",
                    label=f"{k} p99")
        _finish(made, fig, ax, out / "latency_by_hops.png", x="hops", y="latency (ms)",
                title="latency by path length")
    timed = [k for k in KINDS if recs[k]]
    if timed:
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in timed:
            rs = [r for r in recs[k] if r["outcome"] != "origin-down"]
            if not rs:
                continue
            t_lo = min(r["t"] for r in rs)
            t_hi = max(r["t"] for r in rs)
            bins = 30
            w = (t_hi - t_lo) / bins or 1.0
            tot = [0] * bins
            bad = [0] * bins
            for r in rs:
                b = min(int((r["t"] - t_lo) / w), bins - 1)
                tot[b] += 1
                bad[b] += r["outcome"] != "ok"
            xs = [t_lo + (b + 0.5) * w for b in range(bins) if tot[b]]
            ax.plot(xs, [bad[b] / tot[b] for b in range(bins) if tot[b]], marker=".", label=k)
        _finish(made, fig, ax, out / "failures_over_time.png", x="simulated time (s)",
                y="failed fraction", title="failed requests over time")
    if ring:
        fig, ax = plt.subplots(figsize=(6, 4))
        ts = [r["t"] for r in ring]
        for key in ("succ_ok", "pred_ok", "fingers_ok"):
            ax.plot(ts, [r[key] if r[key] is not None else float("nan") for r in ring], label=key)
        ax.set_ylim(0, 1.05)
        ax2 = ax.twinx()
        ax2.plot(ts, [r["active"] for r in ring], color="grey", linestyle=":", label="active")
        ax2.set_ylabel("active nodes")
        _finish(made, fig, ax, out / "ring_health.png", x="simulated time (s)",
                y="fraction correct", title="routing state health", legend="lower left")
    return made


def plot_sweep(out: Path, points: list[dict[str, Any]], sweep: dict[str, Any]) -> list[Path]:
    """``points``: one per swept value, ``{"value": v, "metrics": {path: mean over seeds}}``."""
    made: list[Path] = []
    label = sweep.get("label") or ", ".join(sweep["set"])
    band = sweep.get("plot_band")
    pts = sorted(points, key=lambda p: p["value"])
    for y in sweep["plot_y"]:
        have = [p for p in pts if p["metrics"].get(y) is not None]
        if not have:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [p["value"] for p in have]
        ax.plot(xs, [p["metrics"][y] for p in have], marker="o", label=y)
        if band and y.endswith("_mean"):
            lo = [p["metrics"].get(band[0]) for p in have]
            hi = [p["metrics"].get(band[1]) for p in have]
            if None not in lo and None not in hi:
                ax.fill_between(xs, lo, hi, alpha=0.2, label=f"{band[0]} .. {band[1]}")
        if sweep.get("logx"):
            ax.set_xscale("log", base=sweep["logx"])
        _finish(made, fig, ax, out / f"sweep_{y.replace('.', '_')}.png", x=label, y=y, title=y)
    return made
