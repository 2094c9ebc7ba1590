"""The allocator option: mimalloc on huge pages changes speed, never results."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulations import memory

from ..debian import apt_install

from .test_scenarios import ROOT, SMALL


def mimalloc() -> str:
    """The mimalloc library, installed from Debian first if missing (the tests run as root)."""
    lib = memory.mimalloc_library()
    if lib is None:
        apt_install("libmimalloc2.0")
        lib = memory.mimalloc_library()
    assert lib is not None, "libmimalloc2.0 installed, but no mimalloc library found"
    return lib


def test_unknown_allocators_are_refused():
    with pytest.raises(ValueError, match="unknown allocator 'jemalloc'"):
        memory.wanted("jemalloc")
    assert memory.wanted("pymalloc") == "pymalloc"


def test_this_process_says_what_it_runs_on():
    # pytest itself is started plainly: CPython's allocator.
    assert memory.active() == "pymalloc"
    assert "pymalloc" in memory.describe()


def run(scen: Path, out: Path, malloc: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "simulations", "run", str(scen), "--out",
                           str(out), "--quiet", "--no-plots", "--malloc", malloc],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "manifest.json").read_text())


def test_a_run_on_mimalloc_gives_the_same_results_byte_for_byte(tmp_path):
    mimalloc()
    scen = tmp_path / "s.toml"
    scen.write_text(SMALL)
    plain = run(scen, tmp_path / "plain", "pymalloc")
    fast = run(scen, tmp_path / "fast", "mimalloc")
    assert "pymalloc" in plain["versions"]["memory"]
    assert "mimalloc" in fast["versions"]["memory"]  # it did start again on mimalloc
    a = (tmp_path / "plain" / "results.ndjson").read_bytes()
    b = (tmp_path / "fast" / "results.ndjson").read_bytes()
    assert len(a) > 1000 and a == b


def test_the_environment_puts_mimalloc_first_and_keeps_other_preloads(monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "libother.so")
    env = memory.mimalloc_environment("libmimalloc.so.2")
    assert env["LD_PRELOAD"] == "libmimalloc.so.2 libother.so"
    assert env["PYTHONMALLOC"] == "malloc" and env["MIMALLOC_LARGE_OS_PAGES"] == "1"
