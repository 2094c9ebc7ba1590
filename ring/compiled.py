"""The optional compiled build of the simulator's hot modules, and which build is running.

The same source runs interpreted (the default install) or compiled to C extension modules
by mypyc (``./dev build-fast``): the routing core, the simulator's kernel, driver and network
and the latency models, which between them run every event of a simulation. Compiled, a
simulation of 10^5 nodes takes about a quarter less CPU (1.3-1.5x fewer us per event); its
results are the same, byte for byte
(``python -m benchmarks.bench_compiled`` checks that and measures both).

The extension modules are built in place, beside their sources, where Python finds them
before the ``.py`` files; ``clean`` removes them. A module edited after the build would
still run its old compiled code, so ``status`` (and bench_sim, and the test suite) names
such stale modules and refuses them.

    python -m ring.compiled status | build | clean
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

# What ./dev build-fast compiles (what a simulation spends its events in).
MODULES = (
    "ring.keyspace",
    "ring.messages",
    "ring.events",
    "ring.config",
    "ring.custody",
    "ring.routing",
    "ring.node",
    "ring.wire",
    "simulations.kernel",
    "simulations.network",
    "simulations.driver",
    "topology.latency",
)

ROOT = Path(__file__).resolve().parent.parent


def _source(root: Path, name: str) -> Path:
    return root.joinpath(*name.split(".")).with_suffix(".py")


def _extensions(root: Path, name: str) -> list[Path]:
    src = _source(root, name)
    return [p for suf in EXTENSION_SUFFIXES if (p := src.with_name(src.stem + suf)).exists()]


def built(root: Path = ROOT) -> dict[str, Path]:
    """The modules of MODULES with an extension module beside their source, and its path."""
    out = {}
    for name in MODULES:
        ext = _extensions(root, name)
        if ext:
            out[name] = ext[0]
    return out


def stale(root: Path = ROOT) -> list[str]:
    """Built modules whose source changed after the build (their extension runs old code)."""
    return [name for name, ext in built(root).items()
            if _source(root, name).stat().st_mtime > ext.stat().st_mtime]


def compiled_modules() -> list[str]:
    """The modules of MODULES that this process runs compiled (imports them to find out)."""
    out = []
    for name in MODULES:
        path = getattr(importlib.import_module(name), "__file__", "") or ""
        if path.endswith(tuple(EXTENSION_SUFFIXES)):
            out.append(name)
    return out


def describe() -> str:
    """One line for reports: which build of the hot modules this process runs."""
    done = compiled_modules()
    if not done:
        return "core: interpreted (pure Python)"
    kind = "compiled" if len(done) == len(MODULES) else "partly compiled"
    line = f"core: {kind} with mypyc ({len(done)}/{len(MODULES)} modules)"
    old = stale()
    if old:
        line += f"; STALE (sources changed since the build): {', '.join(old)}"
    return line


def clean(root: Path = ROOT) -> list[Path]:
    """Remove the extension modules of MODULES and mypyc's shared runtime library."""
    gone = [p for name in MODULES for p in _extensions(root, name)]
    dirs = {root} | {_source(root, name).parent for name in MODULES}
    gone += [p for d in dirs for suf in EXTENSION_SUFFIXES for p in d.glob(f"*__mypyc{suf}")]
    for p in gone:
        p.unlink()
    return gone


def build(root: Path = ROOT, modules: tuple[str, ...] = MODULES, *, quiet: bool = True) -> None:
    """Compile ``modules`` of the tree at ``root`` in place with mypyc (needs mypy and a C
    compiler: ``pip install -e '.[fast]'``). Removes an earlier build first."""
    try:
        import mypyc  # noqa: F401
    except ImportError:
        raise SystemExit("mypyc is missing: pip install -e '.[fast]' (mypy and a C compiler)")
    clean(root)
    files = [str(_source(root, name).relative_to(root)) for name in modules]
    # mypy must see the tree at root only (another tree on PYTHONPATH confuses its checks).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    env.setdefault("MYPYC_OPT_LEVEL", "3")
    proc = subprocess.run([sys.executable, "-m", "mypyc", *files], cwd=root, env=env,
                          capture_output=quiet, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:] if quiet else ""
        raise SystemExit(f"mypyc failed ({proc.returncode}):\n{tail}")
    # An unchanged module's extension is copied from mypyc's cache with its old time, which
    # would look stale beside a source merely touched since: this build is of these sources.
    for ext in built(root).values():
        os.utime(ext)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ring.compiled", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("status", "build", "clean"))
    args = ap.parse_args(argv)
    if args.action == "build":
        build(quiet=False)
        print(f"built {len(built())} modules in place; 'python -m ring.compiled clean' "
              f"goes back to pure Python")
    elif args.action == "clean":
        print(f"removed {len(clean())} extension modules: pure Python again")
    else:
        old = stale()
        for name in MODULES:
            ext = built().get(name)
            print(f"{name:22} {'STALE ' if name in old else ''}"
                  f"{ext.name if ext else 'interpreted'}")
        if old:
            print("stale: rebuild (./dev build-fast) or clean (python -m ring.compiled clean)")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
