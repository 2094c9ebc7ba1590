"""Where a remote XMPP domain's servers are: static overrides first, then DNS SRV.

Why split: the lookup is I/O (a blocking dnspython call, run by the shell in a worker
thread), while parsing overrides and ordering SRV answers (RFC 2782 priority and weighted
random choice, XEP-0368 direct-TLS preferred on ties) are pure and tested on their own.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
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


ROUTE_SCHEMES = {"tls": True, "starttls": False}  # scheme -> direct TLS


def parse_target(text: str) -> Target:
    """One s2s address: ``"HOST:PORT"`` or ``"HOST"`` (port 5269) for a stream that starts in
    clear and negotiates STARTTLS, ``"tls:HOST:PORT"`` for XEP-0368 direct TLS (TLS from the
    first byte; no default port, so it must be given). IPv6 hosts go in brackets."""
    original = text
    scheme, sep, rest = text.partition(":")
    direct = False
    if sep and scheme.lower() in ROUTE_SCHEMES:
        direct = ROUTE_SCHEMES[scheme.lower()]
        text = rest
    elif sep and scheme.isalpha() and rest.count(":") == 1 and not rest.startswith("["):
        # "ssl:host:5270", "tcp:host:5269": a scheme we do not know, not a host.
        raise ValueError(f"unknown scheme {scheme!r} in peer address {original!r} "
                         f"(use tls:HOST:PORT for direct TLS, HOST:PORT for STARTTLS)")
    if text.startswith("["):
        host, closed, tail = text[1:].partition("]")
        if not closed or (tail and not tail.startswith(":")):
            raise ValueError(f"invalid peer address {original!r}: expected [IPv6]:PORT")
        port_text = tail[1:]
    elif text.count(":") > 1:
        raise ValueError(f"invalid peer address {original!r}: put an IPv6 address in brackets, [::1]:5269")
    else:
        host, _, port_text = text.partition(":")
    if not host or not _valid_host(host):
        raise ValueError(f"invalid host in peer address {original!r}")
    if not port_text:
        if direct:
            raise ValueError(f"a direct TLS route needs a port: tls:HOST:PORT, got {original!r}")
        port_text = str(DEFAULT_S2S_PORT)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in peer address {original!r}")
    return Target(host, int(port_text), direct)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in host.rstrip(".").split("."))


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def parse_route(value: str | Sequence[str]) -> tuple[Target, ...]:
    """A static route: one address or several tried in order, as a list or comma-separated
    (``"tls:127.0.0.1:5270, 127.0.0.1:5269"``: direct TLS first, STARTTLS if that fails)."""
    items = [part.strip() for part in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    if not items or any(not item for item in items):
        raise ValueError(f"empty address in route {value!r}")
    if len(items) > MAX_TARGETS:
        raise ValueError(f"a route may list at most {MAX_TARGETS} addresses")
    return tuple(parse_target(item) for item in items)


def parse_overrides(items: Mapping[str, str | Sequence[str]] | Iterable[str]) -> dict[str, tuple[Target, ...]]:
    """From a config table ``{"peer.test": "127.0.0.1:15269"}`` or CLI ``peer.test=127.0.0.1:15269``;
    each value is a route (:func:`parse_route`)."""
    pairs = items.items() if isinstance(items, Mapping) else (item.split("=", 1) for item in items)
    out = {}
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"expected DOMAIN=HOST:PORT, got {pair!r}")
        domain, route = pair
        try:
            out[prepare_domain(domain.strip())] = parse_route(route)
        except ValueError as exc:
            raise ValueError(f"{domain.strip()}: {exc}") from None
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


Route = Target | Sequence[Target]


class PeerResolver:
    """Overrides first; DNS only for domains without one (and only if ``use_dns``).

    An override is one :class:`Target` or several, tried in order."""

    def __init__(self, overrides: Mapping[str, Route] | None = None, *, use_dns: bool = True,
                 query: Callable[[str], Iterable[SrvRecord]] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.use_dns = use_dns
        self._query = query

    def static(self, domain: str) -> list[Target] | None:
        """The answer without I/O, or None if DNS must be asked."""
        domain = prepare_domain(domain)
        if domain in self.overrides:
            route = self.overrides[domain]
            return [route] if isinstance(route, Target) else list(route)
        if not self.use_dns:
            return []
        return None

    def resolve_blocking(self, domain: str) -> list[Target]:
        found = self.static(domain)
        return found if found is not None else lookup_srv(prepare_domain(domain), self._query)
