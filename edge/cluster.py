"""A local live ring whose every node handles stanzas, the first few being edges.

Built on :class:`ring.live.cluster.LocalCluster` (its CA, certificates and loopback nodes):
each node gets a :class:`StanzaNode`; edges also get an :class:`S2SNode` for the ring's
domains, with one dialback secret and one certificate shared by all of them, as the edges
of one domain must. Used by ``ringmesh cluster up --domain``, ``ringmesh demo`` and tests.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path

import trio

from ring.config import RingConfig
from ring.live.cluster import LocalCluster, fast_config
from ring.live.server import LiveNode

from .router import RouterConfig
from .s2s_events import S2SConfig
from .s2s_shell import S2SNode
from .s2s_tls import S2STLS
from .srv import PeerResolver, Target
from .stanza_node import StanzaNode


def fast_router_config(domains: frozenset[str], **kw: object) -> RouterConfig:
    """Short registry intervals for small local rings (tests, demos): an edge that dies is
    dropped within a few seconds."""
    base: dict[str, object] = dict(domains=domains, announce_interval=1.0, edge_ttl=3.5, cache_ttl=3.0, trace=True,
                                   query_timeout=1.0, query_retry=0.3, pending_timeout=10.0)
    base.update(kw)
    return RouterConfig(**base)  # type: ignore[arg-type]


class EdgeCluster(LocalCluster):
    """N stanza-handling nodes on loopback; nodes 0 .. ``edges``-1 are edges for ``domains``.

    ``tls``: STARTTLS for s2s with one certificate shared by the edges (self-signed for the
    domains unless given); ``None`` for plain s2s. ``peers`` maps remote domains to s2s
    addresses (no DNS unless ``use_dns``).
    """

    def __init__(self, n: int, *, domains: frozenset[str], edges: int = 1,
                 router_config: RouterConfig | None = None, s2s_tls: S2STLS | None | bool = True,
                 dialback_secret: bytes | None = None, peers: Mapping[str, Target] | None = None,
                 use_dns: bool = False, s2s_config: S2SConfig | None = None,
                 workdir: str | Path | None = None, ring_tls: bool = True, config: RingConfig | None = None,
                 admin: bool = True) -> None:
        if not 0 <= edges <= n:
            raise ValueError("edges must be between 0 and the number of nodes")
        super().__init__(n, config=config or fast_config(n), workdir=workdir, tls=ring_tls, admin=admin)
        self.domains = frozenset(domains)
        self.n_edges = edges
        self.router_config = router_config or fast_router_config(self.domains)
        if s2s_tls is True:
            s2s_tls = S2STLS.self_signed(self.domains)
        self.s2s_tls: S2STLS | None = s2s_tls or None
        secret = dialback_secret or secrets.token_bytes(32)
        self.s2s_config = s2s_config or S2SConfig(self.domains, secret, tls=self.s2s_tls is not None)
        self.resolver = PeerResolver(dict(peers or {}), use_dns=use_dns)
        self.stanza_nodes: list[StanzaNode] = []

    def make_node(self, i: int, bootstrap: list[str]) -> LiveNode:
        live = super().make_node(i, bootstrap)
        s2s = None
        if i < self.n_edges:
            s2s = S2SNode(self.s2s_config, self.resolver, tls=self.s2s_tls)
            live.name = f"edge{i:02d}" if self.n_edges > 1 else "edge"
        self.stanza_nodes.append(StanzaNode(live, self.router_config, s2s=s2s))
        return live

    async def start(self, nursery: trio.Nursery, *, batch: int = 8, s2s_host: str = "127.0.0.1",
                    s2s_ports: list[int] | None = None, s2s_tls_ports: list[int] | None = None) -> None:
        """Start the ring (as LocalCluster does), then stanza handling and the edges' s2s
        listeners (``s2s_ports[i]`` for edge i, default: any free port). ``s2s_tls_ports[i]``
        gives edge i a direct TLS (XEP-0368) listener too (0: any free port)."""
        await super().start(nursery, batch=batch)
        ports = list(s2s_ports or [])
        tls_ports = list(s2s_tls_ports or [])
        if tls_ports and self.s2s_tls is None:
            raise ValueError("direct TLS listeners need s2s TLS")
        for i, sn in enumerate(self.stanza_nodes):
            if sn.s2s is not None and i < len(tls_ports):
                sn.s2s.direct_tls_listen = (s2s_host, tls_ports[i])
            port = ports[i] if i < len(ports) else 0
            await sn.attach(nursery, s2s_host=s2s_host, s2s_port=port)

    @property
    def edges(self) -> list[StanzaNode]:
        return [sn for sn in self.stanza_nodes if sn.is_edge]

    def stanza_node(self, node_id: int) -> StanzaNode:
        return next(sn for sn in self.stanza_nodes if sn.live.node_id == node_id)

    def by_name(self) -> dict[int, str]:
        return {sn.live.node_id: sn.name for sn in self.stanza_nodes}

    def add_peer(self, domain: str, host: str, port: int, *, direct_tls: bool = False) -> None:
        self.resolver.overrides[domain] = Target(host, port, direct_tls)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Edges stop federating and announcing, then every node leaves the ring."""
        now = trio.current_time()
        for sn in self.stanza_nodes:
            sn.router.stop(now)
        await super().shutdown(timeout)

    async def wait_ready(self, timeout: float) -> None:
        """Until the ring routes (successor lists and predecessors right; routing never needs
        the fingers complete, only to take fewer hops) and the registry knows every edge."""
        with trio.fail_after(timeout):
            await self.wait_converged(timeout, fingers=False)
            await self.wait_edges_known(timeout)

    def tables(self) -> tuple:
        """Every node's routing state, to tell when it has stopped changing."""
        out = []
        for core in self.cores():
            t = core.table
            out.append((core.me.id, tuple(r.id for r in t.successors), t.predecessor.id if t.predecessor else None,
                        tuple(sorted((i, f.id) for i, f in t.fingers.items()))))
        return tuple(sorted(out))

    async def wait_stable(self, quiet: float, timeout: float) -> None:
        """Until no routing table has changed for ``quiet`` seconds (paths are then repeatable)."""
        with trio.fail_after(timeout):
            last, since = self.tables(), trio.current_time()
            while trio.current_time() - since < quiet:
                await trio.sleep(0.05)
                now = self.tables()
                if now != last:
                    last, since = now, trio.current_time()

    async def wait_edges_known(self, timeout: float) -> None:
        """Until the registry holds every live edge (one announcement round has landed)."""
        want = {sn.live.node_id for sn in self.edges if sn.live.core is not None}
        with trio.fail_after(timeout):
            while True:
                held = set()
                for sn in self.stanza_nodes:
                    held |= {e.edge for e in sn.router.registry.entries(trio.current_time())}
                if want <= held:
                    return
                await trio.sleep(0.05)
