"""Helpers for live-node tests: raw clients, subprocess nodes, ground truth of a ring."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from ring.ca import issue_node
from ring.live.tls import RingTls, TlsFiles
from ring.messages import Hello, NodeRef
from ring.wire import WireCodec

ROOT = Path(__file__).resolve().parents[3]


def tls_files(ca_dir: Path, name: str, space) -> TlsFiles:  # noqa: ANN001
    cred = issue_node(ca_dir, name, space=space)
    return TlsFiles(ca_dir / "ca.pem", cred.cert_path, cred.key_path)


async def tls_client(addr: str, files: TlsFiles, space) -> trio.SSLStream:  # noqa: ANN001
    host, port = addr.rsplit(":", 1)
    tcp = await trio.open_tcp_stream(host, int(port))
    s = trio.SSLStream(tcp, RingTls.load(files, space).client)
    await s.do_handshake()
    return s


def hello_frame(space, node_id: int, addr: str = "127.0.0.1:1") -> bytes:  # noqa: ANN001
    return WireCodec(space).encode_frame(Hello(NodeRef(node_id, addr)))


async def closed_by_peer(stream: trio.abc.Stream, limit: int = 1000) -> bool:
    """Read until the peer closes; True when it did (EOF or reset)."""
    try:
        for _ in range(limit):
            if not await stream.receive_some(65536):
                return True
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return True
    return False


def node_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ring.cli", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def run_cli(*args: str, timeout: float = 30) -> str:
    with trio.fail_after(timeout):
        res = await trio.run_process(node_command(*args), capture_stdout=True,
                                     capture_stderr=True, env=child_env(), cwd=ROOT, check=False)
    if res.returncode != 0:
        raise AssertionError(f"ringmesh {' '.join(args)} failed ({res.returncode}): "
                             f"{res.stderr.decode(errors='replace')}")
    return res.stdout.decode()


class NodeProcess:
    """A ``ringmesh node run`` child process whose log lines are collected as they come."""

    def __init__(self, config: Path, name: str) -> None:
        self.config = config
        self.name = name
        self.lines: list[str] = []
        self.proc: trio.Process | None = None
        self._changed = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:  # noqa: ANN001
        self.proc = await trio.lowlevel.open_process(
            node_command("node", "run", "--config", str(self.config)),
            stderr=__import__("subprocess").PIPE, env=child_env(), cwd=ROOT)
        task_status.started(self)
        buf = b""
        async with self.proc.stderr:
            while True:
                try:
                    data = await self.proc.stderr.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not data:
                    break
                buf += data
                *done, buf = buf.split(b"\n")
                self.lines.extend(x.decode(errors="replace") for x in done)
                self._changed.set()
                self._changed = trio.Event()
        await self.proc.wait()

    async def wait_for(self, needle: str, timeout: float) -> str:
        with trio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if needle in line:
                        return line
                if self.proc is not None and self.proc.returncode is not None:
                    raise AssertionError(f"{self.name} exited: {self.lines[-5:]}")
                await self._changed.wait()

    def field(self, line: str, key: str) -> str:
        for tok in line.split():
            if tok.startswith(key + "="):
                return tok[len(key) + 1:]
        raise KeyError(key)
