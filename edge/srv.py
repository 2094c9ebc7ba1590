"""Where a remote XMPP domain's servers are: static overrides first, then DNS SRV.

Why split: the lookup is I/O (a blocking dnspython call, run by the shell in a worker
thread), while parsing overrides and ordering SRV answers (RFC 2782 priority and weighted
random choice, XEP-0368 direct-TLS preferred on ties) are pure and tested on their own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .jid import prepare_domain

DEFAULT_S2S_PORT = 5269
MAX_TARGETS = 16  # a hostile zone could list thousands; we try only the first few


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    direct_tls: bool = False  # XEP-0368: TLS from the first byte (_xmpps-server)


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str
    direct_tls: bool = False


def parse_target(text: str) -> Target:
    """``"127.0.0.1:15269"``, ``"host"`` (port 5269) or ``"tls:host:5270"`` (direct TLS)."""
    direct = text.startswith("tls:")
    if direct:
        text = text[4:]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"invalid peer address {text!r}")
    port = int(port_text) if port_text else DEFAULT_S2S_PORT
    if not 0 < port < 65536:
        raise ValueError(f"invalid port in {text!r}")
    return Target(host, port, direct)


def parse_overrides(items: Mapping[str, str] | Iterable[str]) -> dict[str, Target]:
    """From a config table ``{"peer.test": "127.0.0.1:15269"}`` or CLI ``peer.test=127.0.0.1:15269``."""
    pairs = items.items() if isinstance(items, Mapping) else (item.split("=", 1) for item in items)
    out = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"expected DOMAIN=HOST:PORT, got {pair!r}")
        domain, target = pair
        out[prepare_domain(domain.strip())] = parse_target(target.strip())
    return out


def order_srv(records: Iterable[SrvRecord], rng: random.Random) -> list[Target]:
    """RFC 2782 order: ascending priority, weighted random within a priority.

    A single record with target ``.`` means "no service here" and yields no target.
    Direct-TLS records sort before STARTTLS ones of the same priority (XEP-0368 §3).
    """
    records = list(records)
    if len(records) == 1 and records[0].target in (".", ""):
        return []
    by_priority: dict[tuple[int, bool], list[SrvRecord]] = {}
    for rec in records:
        if rec.target in (".", ""):
            continue
        by_priority.setdefault((rec.priority, not rec.direct_tls), []).append(rec)
    out: list[Target] = []
    for key in sorted(by_priority):
        group = sorted(by_priority[key], key=lambda r: r.weight)  # zero weights first (RFC)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total) if total else 0
            acc = 0
            for i, rec in enumerate(group):
                acc += rec.weight
                if acc >= pick:
                    break
            rec = group.pop(i)
            out.append(Target(rec.target.rstrip("."), rec.port, rec.direct_tls))
    return out[:MAX_TARGETS]


def lookup_srv(domain: str, query: Callable[[str], Iterable[SrvRecord]] | None = None,
               rng: random.Random | None = None) -> list[Target]:
    """Blocking SRV lookup of both services; falls back to ``domain:5269`` (RFC 6120 §3.2.2).

    ``query(name)`` returns SRV records for one name (default: dnspython); tests pass a dict.
    """
    query = query or _dns_query
    records: list[SrvRecord] = []
    for service, direct in (("_xmpps-server._tcp.", True), ("_xmpp-server._tcp.", False)):
        for rec in query(service + domain):
            records.append(SrvRecord(rec.priority, rec.weight, rec.port, rec.target, direct))
    if not records:
        return [Target(domain, DEFAULT_S2S_PORT)]
    return order_srv(records, rng or random.Random())


def _dns_query(name: str) -> list[SrvRecord]:
    import dns.exception
    import dns.resolver

    try:
        answer = dns.resolver.resolve(name, "SRV", lifetime=5.0)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers, dns.exception.Timeout,
            dns.resolver.NoResolverConfiguration):
        return []
    return [SrvRecord(r.priority, r.weight, r.port, r.target.to_text()) for r in list(answer)[:MAX_TARGETS]]


class PeerResolver:
    """Overrides first; DNS only for domains without one (and only if ``use_dns``)."""

    def __init__(self, overrides: Mapping[str, Target] | None = None, *, use_dns: bool = True,
                 query: Callable[[str], Iterable[SrvRecord]] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.use_dns = use_dns
        self._query = query

    def static(self, domain: str) -> list[Target] | None:
        """The answer without I/O, or None if DNS must be asked."""
        domain = prepare_domain(domain)
        if domain in self.overrides:
            return [self.overrides[domain]]
        if not self.use_dns:
            return []
        return None

    def resolve_blocking(self, domain: str) -> list[Target]:
        found = self.static(domain)
        return found if found is not None else lookup_srv(prepare_domain(domain), self._query)
