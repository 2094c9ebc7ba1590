"""N live nodes on loopback in one trio run, with their own CA: ``ringmesh cluster up`` and tests.

Also the ground truth for checking a live ring: given the cores, which node *should* be each
node's successor, predecessor and fingers, and who is responsible for a key.
"""

from __future__ import annotations

import tempfile
from bisect import bisect_left
from collections.abc import Callable, Sequence
from pathlib import Path

import trio

from ..ca import init_ca, issue_node
from ..config import RingConfig
from ..messages import Envelope, NodeRef
from ..node import NodeState, RingNode
from .limits import LiveLimits
from .server import LiveNode
from .tls import RingTls, TlsFiles


def ring_order(cores: Sequence[RingNode]) -> list[NodeRef]:
    return sorted((c.me for c in cores if c.state is NodeState.ACTIVE), key=lambda r: r.id)


def responsible(order: list[NodeRef], key: int) -> NodeRef:
    ids = [r.id for r in order]
    return order[bisect_left(ids, key) % len(order)]


def converged(cores: Sequence[RingNode]) -> bool:
    """Every active node has the right successor, predecessor and successor list."""
    order = ring_order(cores)
    n = len(order)
    by_id = {c.me.id: c for c in cores}
    if n < 2:
        return True
    for i, ref in enumerate(order):
        t = by_id[ref.id].table
        if t.successor != order[(i + 1) % n] or t.predecessor != order[(i - 1) % n]:
            return False
        want = tuple(order[(i + k) % n] for k in range(1, min(t.r, n - 1) + 1))
        if t.successors != want:
            return False
    return True


def fingers_correct(cores: Sequence[RingNode]) -> bool:
    """Every finger worth storing is present and is successor(n + 2**i) among live nodes."""
    order = ring_order(cores)
    for c in cores:
        if c.state is not NodeState.ACTIVE:
            continue
        sp, t = c.space, c.table
        for i in range(t.first_finger_index(), sp.bits):
            want = responsible(order, sp.finger_start(c.me.id, i))
            if want.id == c.me.id:
                continue
            if t.fingers.get(i) != want:
                return False
    return True


def expected_path(cores: Sequence[RingNode], origin: RingNode, key: int,
                  max_hops: int = 255) -> list[int]:
    """The ids a probe from ``origin`` to ``key`` visits, computed from the routing tables."""
    by_id = {c.me.id: c for c in cores}
    node = origin
    path = [node.me.id]
    final = False
    for _ in range(max_hops):
        t = node.table
        if final or t.is_responsible(key) or key == node.me.id:
            return path
        hop = t.next_hop(key)
        if hop is None:
            return path
        ref, final = hop
        node = by_id[ref.id]
        path.append(ref.id)
    raise RuntimeError("no path within the hop limit")


def fast_config(n: int, **kw: object) -> RingConfig:
    """Short maintenance intervals for small local rings (tests, demos)."""
    base = dict(expected_nodes=max(n, 2), stabilize_interval=0.1, fix_fingers_interval=0.05,
                check_predecessor_interval=0.3, rpc_timeout=0.5, lookup_timeout=2.0,
                ack_timeout=0.5, custody_timeout=3.0)
    base.update(kw)
    return RingConfig(**base)  # type: ignore[arg-type]


class LocalCluster:
    """Issues a CA and N node certificates in ``workdir`` and runs N LiveNodes on loopback."""

    def __init__(self, n: int, *, config: RingConfig | None = None, workdir: str | Path | None = None,
                 tls: bool = True, limits: LiveLimits | None = None, admin: bool = True,
                 key_kind: str = "ed25519",
                 on_deliver: Callable[[int, Envelope], None] | None = None) -> None:
        if not 1 <= n <= 1024:
            raise ValueError("a local cluster has 1 to 1024 nodes")
        self.n = n
        self.config = config or fast_config(n)
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ringmesh-cluster-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.tls = tls
        self.limits = limits
        self.admin = admin
        self.key_kind = key_kind
        self.on_deliver = on_deliver
        self.nodes: list[LiveNode] = []
        self.ca_dir = self.workdir / "ca"

    def issue(self, name: str) -> TlsFiles:
        cred = issue_node(self.ca_dir, name, kind=self.key_kind, space=self.config.space,
                          hosts=["127.0.0.1"])
        return TlsFiles(self.ca_dir / "ca.pem", cred.cert_path, cred.key_path)

    def make_node(self, i: int, bootstrap: list[str]) -> LiveNode:
        name = f"node{i:02d}"
        tls = RingTls.load(self.issue(name), self.config.space) if self.tls else None
        hook = None
        if self.on_deliver is not None:
            cb = self.on_deliver
            hook = lambda env, i=i: cb(i, env)  # noqa: E731
        return LiveNode(config=self.config, tls=tls, listen="127.0.0.1:0", bootstrap=bootstrap,
                        admin="127.0.0.1:0" if self.admin else None, limits=self.limits,
                        name=name, on_deliver=hook)

    async def start(self, nursery: trio.Nursery, *, batch: int = 8) -> None:
        """Start every node: the first creates the ring, the others join through it."""
        if self.tls and not (self.ca_dir / "ca.pem").exists():
            init_ca(self.ca_dir, kind=self.key_kind)
        first = self.make_node(0, [])
        await nursery.start(first.serve)
        self.nodes.append(first)
        for lo in range(1, self.n, batch):
            async with trio.open_nursery() as joins:
                for i in range(lo, min(lo + batch, self.n)):
                    node = self.make_node(i, [first.addr])
                    self.nodes.append(node)
                    joins.start_soon(nursery.start, node.serve)

    def cores(self) -> list[RingNode]:
        return [n.core for n in self.nodes if n.core is not None]

    def converged(self) -> bool:
        return converged(self.cores())

    def fingers_correct(self) -> bool:
        return fingers_correct(self.cores())

    async def wait_converged(self, timeout: float, *, fingers: bool = True) -> float:
        """Poll until the ring is right; returns the seconds it took (raises TooSlowError)."""
        t0 = trio.current_time()
        with trio.fail_after(timeout):
            while not (self.converged() and (not fingers or self.fingers_correct())):
                await trio.sleep(0.05)
        return trio.current_time() - t0

    async def shutdown(self, timeout: float = 5.0) -> None:
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as n:
                for node in self.nodes:
                    n.start_soon(node.shutdown, timeout)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
