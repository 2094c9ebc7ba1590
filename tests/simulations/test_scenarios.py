import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from simulations import scenario as sc
from simulations.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((ROOT / "simulations" / "scenarios").glob("*.toml"))

SMALL = """
name = "cli-small"
seed = 2
warmup = 20.0
duration = 60.0

[ring]
nodes = 30
build = "oracle"
ids = "hash"

[ring.config]
stabilize_interval = 5.0
rpc_timeout = 0.5
ack_timeout = 0.5

[topology]
kind = "waxman"
params = { n = 60 }

[latency]
model = "underlay"

[churn]
model = "sessions"
arrival_rate = 0.2
session = { dist = "pareto", shape = 1.5, scale = 60.0 }

[[events]]
at = 30.0
kind = "partition"
fraction = 0.3

[[events]]
at = 40.0
kind = "heal"

[[workload]]
kind = "probe"
rate = 2.0
deadline = 10.0

[observers]
ring_every = 10.0
"""


def test_cli_run_writes_results_summary_manifest_and_plots(tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text(SMALL)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "simulations", "run", str(scen), "--out",
                           str(out), "--quiet"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 2 and manifest["scenario"]["ring"]["nodes"] == 30
    assert manifest["underlay"]["kind"] == "waxman" and manifest["wall_seconds"] > 0
    assert "ringmesh" in manifest["versions"]
    assert summary["probe"]["requests"] > 50
    assert summary["probe"]["stretch_mean"] >= 1.0
    recs = [json.loads(x) for x in (out / "results.ndjson").read_text().splitlines()]
    assert sum(r["type"] == "probe" for r in recs) == summary["probe"]["requests"] + \
        summary["probe"]["outcomes"].get("origin-down", 0)
    assert [r["kind"] for r in recs if r["type"] == "event"] == ["partition", "heal"]
    for png in ("hops_pdf.png", "latency_cdf.png", "ring_health.png"):
        assert (out / png).stat().st_size > 1000


def test_ringmesh_sim_run_is_the_same_command(tmp_path):
    from ring.cli import main

    scen = tmp_path / "s.toml"
    scen.write_text(SMALL)
    assert main(["sim", "run", str(scen), "--out", str(tmp_path / "o"), "--no-plots",
                 "--quiet", "--set", "duration=20.0"]) == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["scenario"]["duration"] == 20


@pytest.mark.parametrize("text,msg", [
    ("[ring]\nnodse = 3\n", "unknown key nodse in [ring]"),
    ("[latency]\nmodel = 'fast'\n", "latency.model must be one of"),
    ("[ring.config]\nstabilize_interval = -1.0\n", "stabilize_interval must be positive"),
    ("[ring.config]\nbogus = 1\n", "ring.config"),
    ("[[workload]]\nkind = 'lookup'\n", "needs rate or count"),
    ("[latency]\nmodel = 'underlay'\n", "needs a [topology]"),
    ("seed = 'x'\n", "seed must be an integer"),
])
def test_bad_scenarios_get_specific_errors(tmp_path, text, msg):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        d, _ = sc.load(p)
        sc.check(d)


def test_not_toml_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("this is = = not toml")
    with pytest.raises(sc.ScenarioError, match="not valid TOML"):
        sc.load(p)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_are_valid_and_expand(path):
    d, _ = sc.load(path)
    sc.check(d)
    runs = sc.expand_sweep(d)
    assert len(runs) >= 4
    for run, params in runs:
        sc.check(run)
        for key in d["sweep"]["set"]:
            cur = run
            for part in key.split("."):
                cur = cur[int(part)] if isinstance(cur, list) else cur[part]
            assert cur == params["value"]


def test_four_experiments_are_shipped():
    assert {p.stem for p in SCENARIOS} >= {"fig10_path_length", "fig11_mass_failure",
                                           "fig12_churn", "exp4_latency_stretch"}


def test_sweep_runs_every_point_and_aggregates(tmp_path):
    d = sc.resolve({
        "name": "sweep-test", "seed": 1, "duration": 50.0, "plots": True,
        "ring": {"nodes": 16, "build": "oracle", "maintain": False, "ids": "hash"},
        "latency": {"model": "constant", "constant_ms": 10.0},
        "workload": [{"kind": "lookup", "count": 200}],
        "sweep": {"set": ["ring.nodes"], "values": [16, 64], "seeds": [1, 2],
                  "plot_y": ["lookup.hops_mean"], "plot_band": ["lookup.hops_p1",
                                                                  "lookup.hops_p99"]},
    })
    with ThreadPoolExecutor(2) as ex:
        doc = run_sweep(d, tmp_path, base_dir=tmp_path, executor=ex)
    assert [p["value"] for p in doc["points"]] == [16, 64]
    assert all(p["runs"] == 2 for p in doc["points"])
    h16, h64 = (p["metrics"]["lookup.hops_mean"] for p in doc["points"])
    assert 0 < h16 < h64
    rows = (tmp_path / "sweep.ndjson").read_text().splitlines()
    assert len(rows) == 4
    assert (tmp_path / "sweep_lookup_hops_mean.png").stat().st_size > 1000
    assert len(list((tmp_path / "runs").iterdir())) == 4
