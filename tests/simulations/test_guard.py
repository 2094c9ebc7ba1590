"""The simulator must never run under trio (or read the wall clock while simulating)."""

import ast
import subprocess
import sys
from pathlib import Path

import simulations

PKG = Path(simulations.__file__).parent
FORBIDDEN = {"trio", "asyncio", "socket", "threading"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_no_simulation_module_imports_trio_or_sockets():
    files = sorted(PKG.glob("*.py"))
    assert len(files) >= 10
    for f in files:
        bad = _imports(f) & FORBIDDEN
        assert not bad, f"{f.name} imports {bad}"


def test_running_a_scenario_never_loads_trio():
    code = (
        "import sys, tempfile\n"
        "from tests.simulations.helpers import small_scenario\n"
        "from simulations.runner import run_scenario\n"
        "d = small_scenario(duration=20.0, **{'ring.nodes': 10})\n"
        "run_scenario(d, tempfile.mkdtemp())\n"
        "print('trio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PKG.parent, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
