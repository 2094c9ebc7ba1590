"""Stanza routers over an in-memory ring: the router's whole logic, deterministic and fast.

Each core of an :class:`InMemoryCluster` gets a :class:`StanzaRouter`; this driver moves the
core's events into the routers and the routers' outputs into the cores (or into an outbox per
edge, standing for its s2s side), and runs the routers' timers on the cluster's virtual clock.
"""

from __future__ import annotations

from lxml import etree

from edge.router import RingSend, RouterConfig, S2SSend, StanzaRouter
from ring.config import RingConfig
from ring.events import Confirmed, Delivered, Undeliverable
from ring.memcluster import InMemoryCluster

RING = "ring.test"


def fast_router_config(**kw) -> RouterConfig:
    base = dict(domains=frozenset({RING}), announce_interval=1.0, edge_ttl=3.0, cache_ttl=2.0, trace=True,
                query_timeout=0.5, query_retry=0.2, pending_timeout=5.0)
    base.update(kw)
    return RouterConfig(**base)


class MemStanzaRing:
    def __init__(self, n: int, *, edges: int = 1, seed: int = 7, router_config: RouterConfig | None = None,
                 edge_indexes: list[int] | None = None) -> None:
        self.cluster = InMemoryCluster(RingConfig(expected_nodes=n), seed=seed)
        self.cluster.add_stable(n, maintenance=True)  # a converged ring that keeps itself so
        self.config = router_config or fast_router_config()
        self.space = self.cluster.space
        addrs = list(self.cluster.nodes)
        chosen = edge_indexes if edge_indexes is not None else list(range(edges))
        self.edges = [addrs[i] for i in chosen]
        self.routers: dict[str, StanzaRouter] = {}
        for addr, node in self.cluster.nodes.items():
            domains = frozenset({RING}) if addr in self.edges else frozenset()
            self.routers[addr] = StanzaRouter(self.space, node.me.id, self.config, edge_domains=domains)
        self.outbox: dict[str, list[etree._Element]] = {a: [] for a in addrs}
        self.events: dict[str, list] = {a: [] for a in addrs}
        self._seen = len(self.cluster.events)
        for r in self.routers.values():
            r.start(self.cluster.now)
        self.settle()

    @property
    def now(self) -> float:
        return self.cluster.now

    def addr_of(self, node_id: int) -> str:
        return next(a for a, n in self.cluster.nodes.items() if n.me.id == node_id)

    def id_of(self, addr: str) -> int:
        return self.cluster.nodes[addr].me.id

    def _process(self) -> None:
        cl = self.cluster
        for _ in range(10_000):
            moved = False
            evs = cl.events[self._seen:]
            self._seen = len(cl.events)
            for addr, ev in evs:
                if addr in cl.crashed:
                    continue
                r = self.routers[addr]
                t = type(ev)
                if t is Delivered:
                    r.on_delivered(ev.envelope, cl.now)
                elif t is Confirmed:
                    r.on_confirmed(ev.msg_id)
                elif t is Undeliverable:
                    r.on_undeliverable(ev.report, cl.now)
                moved = True
            for addr, r in self.routers.items():
                outs = r.take_outputs()
                self.events[addr].extend(r.take_events())
                if addr in cl.crashed:
                    continue
                for out in outs:
                    moved = True
                    if isinstance(out, RingSend):
                        mid = cl.send(addr, out.dest, out.payload, flags=out.flags)
                        r.track(mid, out, cl.now)
                    elif isinstance(out, S2SSend):
                        self.outbox[addr].append(out.element)
            if cl.pump():
                moved = True
            if not moved:
                return
        raise RuntimeError("router ring did not settle")

    def settle(self, duration: float = 0.0, step: float = 0.05) -> None:
        """Process everything now, then run ``duration`` virtual seconds in small steps."""
        self._process()
        end = self.now + duration
        while self.now < end:
            self.cluster.run_for(min(step, end - self.now))
            for addr, r in self.routers.items():
                t = r.get_timer()
                if addr not in self.cluster.crashed and t is not None and t <= self.now:
                    r.handle_timer(self.now)
            self._process()

    def crash(self, addr: str) -> None:
        self.cluster.crash(addr)

    def events_of(self, kind: type, addr: str | None = None) -> list:
        found = []
        for a, evs in self.events.items():
            if addr is None or a == addr:
                found += [(a, e) for e in evs if isinstance(e, kind)]
        return found
