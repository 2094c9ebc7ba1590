"""Which edges are alive: soft state at one registry node, and each node's cached copy.

Why soft state at a well-known key: any node may have to send a stanza out of the ring, and
it must find a live edge for the sender's domain without a fixed server. Edges announce
themselves every few seconds to whichever node is responsible for the registry key; an entry
lives a few announcement periods. So an edge that dies drops out on its own, and when the
registry node dies its successor becomes responsible for the key and is filled again by the
very next round of announcements. Nothing needs repair, only time.

Nodes keep a copy (:class:`EdgeDirectory`) for a while, learn edges from the traffic they see
(a stanza that entered through edge E proves E alive), forget an edge the moment the ring
shows it gone (an outbound stanza for E arrived at E's successor instead), and choose among
live edges by rendezvous hashing on the remote domain, so that every node sends a given remote
domain's traffic through the same edge (one s2s stream, not one per node).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .payload import EdgeEntry


def serves(domains: Iterable[str], domain: str) -> bool:
    """An edge for ``ring.example`` also federates for its subdomains."""
    for d in domains:
        if domain == d or domain.endswith("." + d):
            return True
    return False


class EdgeRegistry:
    """Announcements received by the node responsible for the registry key."""

    def __init__(self, max_edges: int = 256) -> None:
        self.max_edges = max_edges
        self._entries: dict[int, tuple[tuple[str, ...], float]] = {}  # edge -> (domains, expires)

    def __len__(self) -> int:
        return len(self._entries)

    def announce(self, entry: EdgeEntry, now: float) -> bool:
        """Record or refresh ``entry``; True if the edge was not known."""
        self.expire(now)
        new = entry.edge not in self._entries
        if new and len(self._entries) >= self.max_edges:
            oldest = min(self._entries, key=lambda e: self._entries[e][1])
            del self._entries[oldest]
        self._entries[entry.edge] = (entry.domains, now + entry.ttl)
        return new

    def entries(self, now: float) -> tuple[EdgeEntry, ...]:
        """Live entries, each with the seconds it has left."""
        self.expire(now)
        return tuple(EdgeEntry(e, d, exp - now) for e, (d, exp) in sorted(self._entries.items()))

    def expire(self, now: float) -> None:
        dead = [e for e, (_, exp) in self._entries.items() if exp <= now]
        for e in dead:
            del self._entries[e]

    def next_expiry(self) -> float | None:
        return min((exp for _, exp in self._entries.values()), default=None)


class EdgeDirectory:
    """A node's view of the live edges, refreshed from the registry and from traffic."""

    def __init__(self, cache_ttl: float, *, dead_ttl: float = 30.0, max_edges: int = 256) -> None:
        self.cache_ttl = cache_ttl
        self.dead_ttl = dead_ttl
        self.max_edges = max_edges
        self.fresh_until = float("-inf")  # when the last registry answer goes stale
        self._known: dict[int, tuple[tuple[str, ...], float]] = {}  # edge -> (domains, expires)
        self._dead: dict[int, float] = {}  # edge -> until when to ignore it
        self._choice: dict[tuple[str, str], int] = {}

    def __contains__(self, edge: int) -> bool:
        return edge in self._known

    def edges(self, now: float) -> list[int]:
        return [e for e, (_, exp) in self._known.items() if exp > now]

    def stale(self, now: float) -> bool:
        return now >= self.fresh_until

    def replace(self, entries: Iterable[EdgeEntry], now: float) -> None:
        """A registry answer: it replaces what the registry told us before."""
        known: dict[int, tuple[tuple[str, ...], float]] = {}
        for e in entries:
            if self._dead.get(e.edge, 0.0) > now:
                continue
            known[e.edge] = (e.domains, now + min(e.ttl, self.cache_ttl))
            if len(known) >= self.max_edges:
                break
        for edge, (domains, exp) in self._known.items():  # edges seen alive since stay
            if edge not in known and exp > now:
                known[edge] = (domains, exp)
        self._known = known
        self.fresh_until = now + self.cache_ttl
        self._choice.clear()

    def learn(self, edge: int, domains: tuple[str, ...], now: float, ttl: float | None = None) -> None:
        """First-hand evidence that ``edge`` is alive and serves ``domains``."""
        self._dead.pop(edge, None)
        old = self._known.get(edge)
        expires = now + (ttl if ttl is not None else self.cache_ttl)
        if old is not None:
            merged = old[0] if set(domains) <= set(old[0]) else tuple(sorted(set(old[0]) | set(domains)))
            if merged != old[0]:
                self._choice.clear()
            self._known[edge] = (merged, max(old[1], expires))
            return
        if len(self._known) >= self.max_edges:
            return
        self._known[edge] = (tuple(domains), expires)
        self._choice.clear()

    def forget(self, edge: int, now: float) -> None:
        """The ring showed ``edge`` gone: do not use it until a fresh announcement says otherwise."""
        self._known.pop(edge, None)
        self._dead[edge] = now + self.dead_ttl
        if len(self._dead) > 4 * self.max_edges:
            self._dead = {e: t for e, t in self._dead.items() if t > now}
        self._choice.clear()

    def pick(self, local: str, remote: str, now: float, *, prefer: int | None = None,
             avoid: Iterable[int] = ()) -> int | None:
        """An edge that federates for ``local``, to reach ``remote``; None if none is known."""
        avoid = tuple(avoid)
        if prefer is not None and prefer not in avoid:
            entry = self._known.get(prefer)
            if entry is not None and entry[1] > now and serves(entry[0], local):
                return prefer
        if not avoid:
            cached = self._choice.get((local, remote))
            if cached is not None:
                entry = self._known.get(cached)
                if entry is not None and entry[1] > now:
                    return cached
        best, best_score = None, b""
        tail = remote.encode("utf-8")
        for edge, (domains, exp) in self._known.items():
            if exp <= now or edge in avoid or not serves(domains, local):
                continue
            score = hashlib.blake2b(edge.to_bytes(32, "big") + tail, digest_size=8).digest()
            if best is None or score > best_score:
                best, best_score = edge, score
        if not avoid and best is not None:
            if len(self._choice) > 4096:
                self._choice.clear()
            self._choice[(local, remote)] = best
        return best
