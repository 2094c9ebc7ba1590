"""Parameter sweeps: many runs of one scenario, in parallel, on an existing engine.

Each point of ``[sweep]`` (value x seed) is an independent run in its own directory.
Runs go to a ``concurrent.futures`` executor: local processes by default (the simulator is
pure Python, so threads would not help), or a Dask distributed cluster when an address is
given -- a researcher who outgrows one machine points the same command at a cluster.
Dask is an optional import.

Outputs: ``runs/NNN-<value>-s<seed>/`` per run, ``sweep.ndjson`` (one line per run:
parameters + summary), ``sweep.json`` (per value, metrics averaged over seeds) and plots.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from . import scenario as sc


def _run_point(run: dict[str, Any], out_dir: str, base_dir: str) -> dict[str, Any]:
    from .runner import run_scenario

    return run_scenario(run, out_dir, base_dir=Path(base_dir), progress=False)


def _get(d: dict[str, Any], path: str) -> Any:
    cur: Any = d
    for p in path.split("."):
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _slug(v: Any) -> str:
    s = str(v).replace("/", "_").replace(" ", "")
    return s[:40]


def make_executor(workers: int | None, dask_address: str | None) -> Executor:
    if dask_address:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ValueError("--dask needs the 'distributed' package (pip install distributed)") from None
        client = Client(dask_address)
        return client.get_executor()
    n = workers or max(1, (os.cpu_count() or 2) - 1)
    return ProcessPoolExecutor(max_workers=n)


def run_sweep(d: dict[str, Any], out_dir: str | Path, *, base_dir: Path, workers: int | None = None,
              dask_address: str | None = None, progress: bool = False,
              executor: Executor | None = None) -> dict[str, Any]:
    sweep = d["sweep"]
    if sweep is None:
        raise ValueError("scenario has no [sweep]")
    sc.check(d)
    points = sc.expand_sweep(d)
    for run, _ in points:
        sc.check(run)  # fail before starting any run
    out = Path(out_dir)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    wall0 = time.perf_counter()
    own = executor is None
    ex = executor or make_executor(workers, dask_address)
    futures: dict[Future[dict[str, Any]], tuple[int, dict[str, Any], str]] = {}
    try:
        for k, (run, params) in enumerate(points):
            rdir = out / "runs" / f"{k:03d}-{_slug(params['value'])}-s{params['seed']}"
            fut = ex.submit(_run_point, run, str(rdir), str(base_dir))
            futures[fut] = (k, params, rdir.name)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(futures), unit="run", desc=d["name"])
        results: list[tuple[int, dict[str, Any]]] = []
        for fut in as_completed(futures):
            k, params, name = futures[fut]
            summary = fut.result()
            results.append((k, {"params": params, "dir": f"runs/{name}", "summary": summary}))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    finally:
        if own:
            ex.shutdown(wait=True)
    rows = [r for _, r in sorted(results, key=lambda x: x[0])]
    with (out / "sweep.ndjson").open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
    wanted = list(sweep["plot_y"]) + list(sweep["plot_band"] or [])
    agg: list[dict[str, Any]] = []
    for v in sweep["values"]:
        mine = [r for r in rows if r["params"]["value"] == v]
        metrics: dict[str, Any] = {}
        for path in wanted:
            vals = [_get(r["summary"], path) for r in mine]
            vals = [x for x in vals if isinstance(x, (int, float))]
            metrics[path] = round(sum(vals) / len(vals), 6) if vals else None
        agg.append({"value": v, "runs": len(mine), "metrics": metrics})
    doc = {"name": d["name"], "set": sweep["set"], "points": agg,
           "wall_seconds": round(time.perf_counter() - wall0, 2)}
    (out / "sweep.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if d["plots"] and sweep["plot_y"]:
        from .plots import plot_sweep

        plot_sweep(out, agg, sweep)
    return doc
