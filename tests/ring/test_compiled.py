"""ring.compiled: which build runs, stale builds, clean. (The compiled build itself is
checked against the interpreted one by benchmarks/bench_compiled: it needs mypy and gcc.)"""

import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES

from ring import compiled


def _tree(tmp_path):
    for name in compiled.MODULES:
        src = compiled._source(tmp_path, name)
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text("")
    return tmp_path


def test_this_process_runs_what_is_built_beside_the_sources():
    # Interpreted: nothing built, nothing compiled; after ./dev build-fast: all of it.
    assert compiled.compiled_modules() == list(compiled.built())
    line = compiled.describe()
    assert line.startswith("core: ")
    assert ("interpreted" in line) == (not compiled.built())


def test_built_stale_and_clean_in_a_tree(tmp_path):
    root = _tree(tmp_path)
    assert compiled.built(root) == {} and compiled.stale(root) == []
    suffix = EXTENSION_SUFFIXES[0]
    node_src = compiled._source(root, "ring.node")
    ext = node_src.with_name("node" + suffix)
    ext.write_bytes(b"")
    runtime = root / f"0123abcd__mypyc{suffix}"
    runtime.write_bytes(b"")
    os.utime(node_src, (1_000, 1_000))
    os.utime(ext, (2_000, 2_000))
    assert compiled.built(root) == {"ring.node": ext}
    assert compiled.stale(root) == []
    os.utime(node_src, (3_000, 3_000))  # edited after the build
    assert compiled.stale(root) == ["ring.node"]
    gone = compiled.clean(root)
    assert set(gone) == {ext, runtime}
    assert not ext.exists() and not runtime.exists() and node_src.exists()
    assert compiled.built(root) == {}


def test_the_compiled_modules_pass_the_type_check_mypyc_starts_with():
    # mypyc compiles only what mypy accepts, so a change the check refuses breaks
    # ./dev build-fast without failing anything interpreted (it happened once: a None
    # bound to a name later called).
    files = [str(compiled._source(compiled.ROOT, m)) for m in compiled.MODULES]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", *files],
        cwd=compiled.ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
