"""Which allocator a simulation runs on: CPython's own, or mimalloc on huge pages.

A simulation of 10^5 nodes touches a few hundred MiB of small objects at random, one node
after another. With 4 KiB pages nearly every such touch also misses the TLB; CPython's
allocator (pymalloc) takes its memory in 1 MiB pieces that the kernel backs with 4 KiB
pages unless asked otherwise (on most Linux systems transparent huge pages are given only
to memory that asks for them). mimalloc, a well-kept allocator packaged by Debian
(``libmimalloc2.0``), asks for them when ``MIMALLOC_LARGE_OS_PAGES=1``; run with
``PYTHONMALLOC=malloc`` so that CPython's objects come from it, a simulation of 10^5 nodes
spends about a tenth less CPU per event here. mimalloc alone, on 4 KiB pages, gains nothing:
the pages are what matter.

The allocator is chosen when the interpreter starts, so a process that wants it starts
again (``os.execve``) with the environment set; nothing else changes. Results are the same
either way, byte for byte: nothing in a simulation depends on where objects lie (a test
checks it).
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from typing import NoReturn

CHOICES = ("auto", "pymalloc", "mimalloc")
MARK = "RINGMESH_MALLOC"  # set in the started-again process: never start again twice


def mimalloc_library() -> str | None:
    """The name of an installed mimalloc shared library (for LD_PRELOAD), or None."""
    name = ctypes.util.find_library("mimalloc")
    if name:
        return name
    for path in ("/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
                 "/usr/lib/aarch64-linux-gnu/libmimalloc.so.2", "/usr/lib/libmimalloc.so.2"):
        if os.path.exists(path):
            return path
    return None


def mimalloc_environment(lib: str) -> dict[str, str]:
    """The variables that put a new interpreter on mimalloc with huge pages."""
    preload = os.environ.get("LD_PRELOAD", "")
    return {"LD_PRELOAD": f"{lib} {preload}".strip(), "PYTHONMALLOC": "malloc",
            "MIMALLOC_LARGE_OS_PAGES": "1", MARK: "mimalloc"}


def pymalloc_environment() -> dict[str, str]:
    """This process's environment without what mimalloc_environment adds: a child started
    with it runs on CPython's own allocator."""
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "PYTHONMALLOC", "MIMALLOC_LARGE_OS_PAGES", MARK)}


def active() -> str:
    """What this process allocates with: ``mimalloc`` (with huge pages) or ``pymalloc``."""
    if os.environ.get("PYTHONMALLOC") == "malloc" and os.environ.get(MARK) == "mimalloc":
        try:
            with open("/proc/self/maps") as f:
                if "mimalloc" in f.read():
                    return "mimalloc"
        except OSError:
            pass
    return "pymalloc"


def describe() -> str:
    if active() == "mimalloc":
        return "memory: mimalloc, huge pages (MIMALLOC_LARGE_OS_PAGES=1)"
    return "memory: pymalloc (CPython's allocator)"


def wanted(choice: str) -> str:
    """The allocator ``choice`` (one of CHOICES) resolves to on this machine."""
    if choice not in CHOICES:
        raise ValueError(f"unknown allocator {choice!r} ({', '.join(CHOICES)})")
    if choice == "auto":
        return "mimalloc" if mimalloc_library() is not None else "pymalloc"
    return choice


def ensure(choice: str) -> None:
    """Make this process run on the allocator ``choice``, starting it again if need be.

    Returns when the process already runs on it (or when it is ``pymalloc``: a process never
    starts again to give huge pages up). Raises SystemExit with a readable message when
    ``mimalloc`` is asked for and not installed, or did not take.
    """
    want = wanted(choice)
    if want == "pymalloc" or active() == "mimalloc":
        return
    if os.environ.get(MARK):  # started again already, and it did not take
        if choice == "auto":
            return
        raise SystemExit("started again with mimalloc preloaded, but it is not in use")
    lib = mimalloc_library()
    if lib is None:
        raise SystemExit("mimalloc is not installed (Debian: apt-get install libmimalloc2.0); "
                         "use --malloc pymalloc")
    _restart(mimalloc_environment(lib))


def _restart(extra: dict[str, str]) -> NoReturn:
    """This very command again, with ``extra`` in its environment."""
    env = {**os.environ, **extra}
    args = [sys.executable, *sys.orig_argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(args[0], args, env)
