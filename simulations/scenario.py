"""Scenarios as files: everything a run depends on, in one TOML document.

A scenario names its seed, ring size and construction, underlay topology, latency model,
churn, one-off events, workloads, observers and, optionally, a parameter sweep. Runs are
then reproducible and citable: the manifest of every run embeds the resolved scenario.

Timeline of a run: the ring is built (instantly by the oracle, or by joins spread over
``ring.join_window`` seconds), then ``warmup`` seconds pass, then the measured window of
``duration`` seconds begins at t0. Event times and workload/churn windows are relative to
t0. Requests still pending at the end get their deadline to finish.

Unknown keys are errors (a typo must not silently run a different experiment).
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ring.config import RingConfig
from ring.keyspace import KeySpace

MAX_NODES = 2_000_000

DEFAULTS: dict[str, Any] = {
    "name": "scenario",
    "description": "",
    "seed": 1,
    "duration": 600.0,
    "warmup": 0.0,
    "plots": True,
    "max_events": 2_000_000_000,
    "ring": {"nodes": 100, "build": "joins", "ids": "ed25519", "bits": 160,
             "join_window": None, "maintain": True, "config": {}},
    "topology": {"kind": "none", "params": {}, "attach": "any", "access_ms": [0.5, 2.0]},
    "latency": {"model": "uniform", "constant_ms": 50.0, "lo_ms": 10.0, "hi_ms": 100.0,
                "span_ms": 100.0, "base_ms": 1.0, "matrix": "", "unit": "ms",
                "access_ms": [0.0, 0.0], "loss": 0.0},
    "churn": {"model": "none", "join_rate": 0.0, "fail_rate": 0.0, "arrival_rate": 0.0,
              "session": {"dist": "weibull", "shape": 0.5, "scale": 3600.0},
              "leave_fraction": 0.0, "start": 0.0, "stop": None},
    "events": [],
    "workload": [],
    "observers": {"ring_every": 0.0, "finger_sample": 100},
    "sweep": None,
}
EVENT_DEFAULTS: dict[str, Any] = {"at": 0.0, "kind": "fail", "fraction": 0.1}
WORKLOAD_DEFAULTS: dict[str, Any] = {"kind": "lookup", "rate": None, "count": None,
                                     "start": 0.0, "stop": None, "keys": "uniform",
                                     "zipf_s": 1.0, "zipf_population": 10_000,
                                     "payload_bytes": 200, "deadline": 60.0}
SWEEP_DEFAULTS: dict[str, Any] = {"set": [], "values": [], "seeds": None, "plot_y": [],
                                  "plot_band": None, "logx": 0, "label": None}
FREE_TABLES = {"ring.config", "topology.params"}  # their keys are checked elsewhere
EVENT_KINDS = ("fail", "partition", "heal", "leave")


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with the reason."""


def _merge(defaults: Any, given: Any, where: str) -> Any:
    if isinstance(defaults, dict) and where not in FREE_TABLES:
        if not isinstance(given, dict):
            raise ScenarioError(f"{where or 'scenario'} must be a table")
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ScenarioError(f"unknown key{'s' if len(unknown) > 1 else ''} "
                                f"{', '.join(unknown)} in [{where or 'top level'}]")
        out = {}
        for k, dv in defaults.items():
            sub = f"{where}.{k}" if where else k
            out[k] = _merge(dv, given[k], sub) if k in given else copy.deepcopy(dv)
        return out
    return copy.deepcopy(given)


def _merge_list(items: Any, defaults: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise ScenarioError(f"{where} must be an array of tables ([[{where}]])")
    return [_merge(defaults, it, f"{where}[{k}]") for k, it in enumerate(items)]


def resolve(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill in defaults and check keys; returns a plain dict (what the manifest records)."""
    d = _merge(DEFAULTS, raw, "")
    d["events"] = _merge_list(d["events"], EVENT_DEFAULTS, "events")
    d["workload"] = _merge_list(d["workload"], WORKLOAD_DEFAULTS, "workload")
    if d["sweep"] is not None:
        d["sweep"] = _merge(SWEEP_DEFAULTS, d["sweep"], "sweep")
    return d


def set_path(d: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.b.0.c`` inside nested tables and arrays (for sweeps and ``--set``)."""
    parts = path.split(".")
    cur: Any = d
    for p in parts[:-1]:
        if isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise ScenarioError(f"bad index {p!r} in {path!r}") from None
        else:
            if p not in cur or cur[p] is None:
                cur[p] = {}
            cur = cur[p]
    last = parts[-1]
    if isinstance(cur, list):
        try:
            cur[int(last)] = value
        except (ValueError, IndexError):
            raise ScenarioError(f"bad index {last!r} in {path!r}") from None
    else:
        cur[last] = value


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it (numbers, booleans, arrays), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load(path: str | Path, overrides: list[str] | None = None) -> tuple[dict[str, Any], Path]:
    """Read a scenario file, apply ``key=value`` overrides, resolve; returns (dict, base dir)."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"scenario file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{p}: not valid TOML: {exc}") from None
    for ov in overrides or ():
        key, sep, val = ov.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(f"override {ov!r} is not KEY=VALUE")
        set_path(raw, key.strip(), parse_value(val.strip()))
    return resolve(raw), p.parent


# -- typed, checked view used by the runner -------------------------------------------------


def _num(d: dict[str, Any], key: str, where: str, *, lo: float | None = None,
         hi: float | None = None, allow_none: bool = False) -> float | None:
    v = d[key]
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise ScenarioError(f"{where}.{key} must be a number, got {v!r}")
    if lo is not None and v < lo:
        raise ScenarioError(f"{where}.{key} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ScenarioError(f"{where}.{key} must be <= {hi}, got {v}")
    return float(v)


def _choice(d: dict[str, Any], key: str, where: str, options: tuple[str, ...]) -> str:
    v = d[key]
    if v not in options:
        raise ScenarioError(f"{where}.{key} must be one of {', '.join(options)}; got {v!r}")
    return str(v)


@dataclass(frozen=True)
class Timeline:
    build_end: float
    t0: float
    end: float  # end of the measured window
    drain_end: float  # when the run stops (pending requests reach their deadlines)


def check(d: dict[str, Any]) -> Timeline:
    """Validate a resolved scenario; returns its timeline."""
    if not isinstance(d["seed"], int):
        raise ScenarioError("seed must be an integer")
    dur = _num(d, "duration", "scenario", lo=0)
    warm = _num(d, "warmup", "scenario", lo=0)
    ring = d["ring"]
    n = ring["nodes"]
    if not isinstance(n, int) or not 1 <= n <= MAX_NODES:
        raise ScenarioError(f"ring.nodes must be an integer in 1..{MAX_NODES}")
    _choice(ring, "build", "ring", ("joins", "oracle"))
    _choice(ring, "ids", "ring", ("ed25519", "hash"))
    ring_config(d)  # validates the core's parameters
    jw = 0.0
    if ring["build"] == "joins":
        jw = _num(ring, "join_window", "ring", lo=0, allow_none=True)
        if jw is None:
            jw = 0.5 * n
            ring["join_window"] = jw
    _choice(d["latency"], "model", "latency",
            ("constant", "uniform", "euclidean", "underlay", "matrix"))
    _num(d["latency"], "loss", "latency", lo=0, hi=0.99)
    if d["latency"]["model"] == "underlay" and d["topology"]["kind"] == "none":
        raise ScenarioError("latency.model = 'underlay' needs a [topology] kind")
    if d["latency"]["model"] == "matrix" and not d["latency"]["matrix"]:
        raise ScenarioError("latency.model = 'matrix' needs latency.matrix = 'FILE'")
    ch = d["churn"]
    _choice(ch, "model", "churn", ("none", "rate", "sessions"))
    for k in ("join_rate", "fail_rate", "arrival_rate"):
        _num(ch, k, "churn", lo=0)
    _num(ch, "leave_fraction", "churn", lo=0, hi=1)
    for k, ev in enumerate(d["events"]):
        _choice(ev, "kind", f"events[{k}]", EVENT_KINDS)
        _num(ev, "at", f"events[{k}]", lo=0)
        _num(ev, "fraction", f"events[{k}]", lo=0, hi=0.999)
    max_deadline = 0.0
    for k, w in enumerate(d["workload"]):
        where = f"workload[{k}]"
        _choice(w, "kind", where, ("lookup", "probe", "stanza"))
        _choice(w, "keys", where, ("uniform", "zipf"))
        if w["rate"] is None and w["count"] is None:
            raise ScenarioError(f"{where} needs rate or count")
        max_deadline = max(max_deadline, _num(w, "deadline", where, lo=0.001) or 0.0)
    obs = d["observers"]
    _num(obs, "ring_every", "observers", lo=0)
    if d["sweep"] is not None:
        sw = d["sweep"]
        if not sw["set"] or not sw["values"]:
            raise ScenarioError("[sweep] needs set = [PATHS] and values = [...]")
        if isinstance(sw["set"], str):
            sw["set"] = [sw["set"]]
    t0 = jw + (warm or 0.0)
    end = t0 + (dur or 0.0)
    return Timeline(jw, t0, end, end + max_deadline)


def ring_config(d: dict[str, Any]) -> RingConfig:
    ring = d["ring"]
    fields = dict(ring["config"])
    if "space" in fields:
        raise ScenarioError("set the key space with ring.bits, not ring.config.space")
    fields.setdefault("expected_nodes", ring["nodes"])
    try:
        return RingConfig(space=KeySpace(int(ring["bits"])), **fields)
    except TypeError as exc:
        raise ScenarioError(f"ring.config: {exc}") from None
    except ValueError as exc:
        raise ScenarioError(f"ring.config: {exc}") from None


def expand_sweep(d: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One (resolved scenario, parameters) pair per point of the sweep (x seed)."""
    sw = d["sweep"]
    if sw is None:
        return [(d, {})]
    paths = [sw["set"]] if isinstance(sw["set"], str) else list(sw["set"])
    seeds = sw["seeds"] or [d["seed"]]
    out = []
    for v in sw["values"]:
        for s in seeds:
            run = copy.deepcopy(d)
            run["sweep"] = None
            for p in paths:
                set_path(run, p, v)
            run["seed"] = s
            run = resolve(run)
            out.append((run, {"value": v, "seed": s, **{p: v for p in paths}}))
    return out
