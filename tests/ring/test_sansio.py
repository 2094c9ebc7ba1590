"""The core rule: the sans-IO modules import no trio, socket or time, directly or not."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORE = ["keyspace", "ids", "identity", "messages", "wire", "routing", "custody", "config",
        "events", "node", "memcluster", "converged"]
FORBIDDEN = {"trio", "socket", "time", "asyncio", "threading", "selectors"}


@pytest.mark.parametrize("name", CORE)
def test_core_module_source_imports_nothing_forbidden(name):
    tree = ast.parse((ROOT / "ring" / f"{name}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            mods = [node.module or ""]
        else:
            continue
        for m in mods:
            assert m.split(".")[0] not in FORBIDDEN, f"ring/{name}.py imports {m}"


def test_importing_the_core_pulls_in_no_io_module():
    code = ("import sys; import " + ", ".join(f"ring.{n}" for n in CORE) +
            "; print(' '.join(sorted(m for m in ('trio', 'asyncio', 'selectors') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == ""
