"""Two edges on loopback, ring.test and peer.test, each its own S2SNode with its own listeners,
for stories told over real sockets (direct TLS, certificate enforcement, connection caps)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

import trio
from lxml import etree

from edge.s2s_events import S2SConfig, StanzaReceived
from edge.s2s_shell import S2SNode
from edge.s2s_tls import S2STLS
from edge.srv import PeerResolver, parse_route

RING, PEER = "ring.test", "peer.test"
SECRET = b"dialback-secret-0123456789abcdef"


@dataclass
class Side:
    node: S2SNode
    received: list[StanzaReceived] = field(default_factory=list)
    unsent: list[tuple[str, str]] = field(default_factory=list)  # (stanza id, reason)

    def route(self, domain: str, route: str) -> None:
        """A static route, written as in the configuration (``"tls:127.0.0.1:5270, ..."``)."""
        self.node.resolver.overrides[domain] = parse_route(route)

    @property
    def stats(self):
        return self.node.stats


def config(domain: str, tls: bool = True, **kw) -> S2SConfig:
    return S2SConfig(frozenset({domain}), SECRET + domain.encode(), tls=tls, **kw)


def message(sender: str, recipient: str, ident: str) -> etree._Element:
    return etree.fromstring(f"<message xmlns='jabber:server' from='{sender}' to='{recipient}' id='{ident}'>"
                            f"<body>hi</body></message>".encode())


@asynccontextmanager
async def edge_pair(ring_tls: S2STLS | None, peer_tls: S2STLS | None, *, ring_config: S2SConfig | None = None,
                    peer_config: S2SConfig | None = None, direct: bool = True,
                    timeout: float = 15) -> AsyncIterator[tuple[Side, Side]]:
    """Both nodes listening (STARTTLS and, with ``direct`` and TLS, direct TLS on free ports);
    no routes yet. Everything is cancelled on exit."""
    sides = []
    for domain, tls, cfg in ((RING, ring_tls, ring_config), (PEER, peer_tls, peer_config)):
        cfg = cfg or config(domain, tls is not None)
        if tls is None and cfg.tls:
            cfg = replace(cfg, tls=False)
        node = S2SNode(cfg, PeerResolver({}, use_dns=False), tls=tls,
                       direct_tls_listen=(None, 0) if direct and tls is not None else None)
        side = Side(node)
        node.on_stanza = side.received.append
        node.on_unsent = lambda els, reason, side=side: side.unsent.extend((el.get("id"), reason) for el in els)
        sides.append(side)
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            for side in sides:
                await nursery.start(side.node.run)
            yield sides[0], sides[1]
            nursery.cancel_scope.cancel()


def route_both(ring: Side, peer: Side, *, direct: bool = False) -> None:
    """Each side routes the other's domain to the other's listener: direct TLS, or the
    STARTTLS one."""
    for a, b, domain in ((peer, ring, RING), (ring, peer, PEER)):
        if direct:
            a.route(domain, f"tls:127.0.0.1:{b.node.direct_tls_port}")
        else:
            a.route(domain, f"127.0.0.1:{b.node.listen_port}")


async def wait_until(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
