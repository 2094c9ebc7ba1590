"""An XMPP ring node's configuration: the node's own file (:mod:`ring.nodeconfig`) plus ``[edge]``.

Every node of an XMPP ring runs ``ringmesh edge run``: entities live wherever their key falls,
so every node must handle stanzas. A node with ``s2s_listen`` is also an edge::

    [edge]
    domains = ["ring.example"]              # the ring's XMPP domains (same on every node)
    s2s_listen = "0.0.0.0:5269"             # omit on nodes that do not federate
    s2s_tls_listen = "0.0.0.0:5270"         # optional: XEP-0368 direct TLS listener (needs tls)
    dialback_secret_file = "dialback.key"   # or dialback_secret = "..."; shared by all edges
    certificate = "certs/ring.example.pem"  # PEM, leaf first; omit both for a self-signed one
    key = "certs/ring.example.key"
    cafile = "/etc/ssl/certs/ca-certificates.crt"   # trust for peers' certificates (SASL EXTERNAL)
    tls = true                              # false: no STARTTLS at all (labs only)
    require_tls = false
    secure_auth = false                     # true: peers must prove themselves with a trusted
                                            # certificate, never dialback alone (needs trust roots)
    secure_domains = ["bank.example"]       # ... asked of these domains only
    insecure_domains = ["lab.example"]      # ... or everyone but these (with secure_auth)
    max_streams_per_ip = 128                # inbound streams from one address at once
    max_unauthenticated_streams = 256       # inbound streams not yet authenticated, in total
    use_dns = true                          # SRV lookups for domains without a peer entry
    announce_interval = 10.0                # and any other RouterConfig field

    [edge.peers]                            # static routes, no DNS asked
    "peer.example" = "198.51.100.7:5269"
    peer.test = "127.0.0.1:15269"           # dotted keys work too
    "tls.example" = "tls:198.51.100.8:5270, 198.51.100.8:5269"  # direct TLS, else STARTTLS

Paths are relative to the file. ``--set edge.KEY=VALUE`` overrides any key. Unknown keys are
errors, as in the node's own sections.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ring.live.addr import format_hostport, parse_hostport
from ring.nodeconfig import ConfigError, NodeConfig, _typed, load_node_config, parse_override

from .jid import JIDError, prepare_domain
from .router import RouterConfig
from .srv import Target, parse_overrides

_ROUTER_FIELDS = {f.name: f for f in dataclasses.fields(RouterConfig) if f.name not in ("domains", "limits")}
_EDGE_KEYS = {"domains", "s2s_listen", "s2s_tls_listen", "dialback_secret", "dialback_secret_file", "certificate",
              "key", "cafile", "capath", "system_roots", "tls", "require_tls", "sasl_external", "use_dns", "peers",
              "subdomains", "secure_auth", "secure_domains", "insecure_domains", "max_streams_per_ip",
              "max_unauthenticated_streams"}
DEFAULT_MAX_STREAMS_PER_IP = 128
DEFAULT_MAX_UNAUTHENTICATED = 256
MIN_SECRET = 16


@dataclass(frozen=True)
class EdgeSettings:
    domains: frozenset[str]
    s2s_listen: str | None = None
    s2s_tls_listen: str | None = None
    dialback_secret: bytes | None = None
    certificate: Path | None = None
    key: Path | None = None
    cafile: Path | None = None
    capath: Path | None = None
    system_roots: bool = False
    tls: bool = True
    require_tls: bool = False
    sasl_external: bool = True
    use_dns: bool = True
    secure_auth: bool = False
    secure_domains: frozenset[str] = frozenset()
    insecure_domains: frozenset[str] = frozenset()
    max_streams_per_ip: int = DEFAULT_MAX_STREAMS_PER_IP
    max_unauthenticated_streams: int = DEFAULT_MAX_UNAUTHENTICATED
    peers: dict[str, tuple[Target, ...]] = field(default_factory=dict)
    router: RouterConfig | None = None

    @property
    def is_edge(self) -> bool:
        return self.s2s_listen is not None


@dataclass(frozen=True)
class EdgeNodeConfig:
    node: NodeConfig
    edge: EdgeSettings


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"peer": {"test": "x"}}`` (TOML's reading of ``peer.test = "x"``) -> ``{"peer.test": "x"}``."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        name = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flatten(v, name))
        else:
            out[name] = v
    return out


def load_edge_config(path: str | Path, *, overrides: list[str] | None = None, **cli: Any) -> EdgeNodeConfig:
    """Read the node's sections and ``[edge]`` from ``path``; ``--set`` overrides may name either."""
    p = Path(path)
    node_overrides, edge_overrides = [], []
    for text in overrides or []:
        (edge_overrides if text.strip().startswith("edge.") else node_overrides).append(text)
    node = load_node_config(p, overrides=node_overrides, extra_sections=("edge",), **cli)
    raw = tomllib.loads(p.read_text(encoding="utf-8"))  # it parsed once already
    edge = raw.get("edge")
    if not isinstance(edge, dict):
        raise ConfigError(f"{p}: an [edge] section is required (at least: domains = [...])")
    edge = dict(edge)
    for text in edge_overrides:
        _, key, value = parse_override(text)
        edge[key] = value
    return EdgeNodeConfig(node, parse_edge_section(edge, p.resolve().parent))


def parse_edge_section(edge: dict[str, Any], base: Path) -> EdgeSettings:
    unknown = sorted(set(edge) - _EDGE_KEYS - set(_ROUTER_FIELDS))
    if unknown:
        raise ConfigError(f"[edge]: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(_EDGE_KEYS | set(_ROUTER_FIELDS)))})")
    domains = edge.get("domains")
    if isinstance(domains, str):
        domains = [domains]
    if not isinstance(domains, list) or not domains or not all(isinstance(d, str) for d in domains):
        raise ConfigError("[edge] domains must be a non-empty list of domain names")
    try:
        prepared = frozenset(prepare_domain(d) for d in domains)
    except JIDError as exc:
        raise ConfigError(f"[edge] domains: {exc}") from None

    listen = _hostport(edge, "s2s_listen")
    tls_listen = _hostport(edge, "s2s_tls_listen")
    if tls_listen is not None and listen is None:
        raise ConfigError("[edge] s2s_tls_listen needs s2s_listen (an edge listens for both kinds of stream)")

    secret = _secret(edge, base)
    if listen is not None and secret is None:
        raise ConfigError("[edge] an edge needs the ring's dialback secret (dialback_secret or "
                          "dialback_secret_file), the same on every edge of its domains")

    def path_of(key: str) -> Path | None:
        v = edge.get(key)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            raise ConfigError(f"[edge] {key} must be a path")
        return base / v

    cert, key = path_of("certificate"), path_of("key")
    if (cert is None) != (key is None):
        raise ConfigError("[edge] certificate and key go together (or neither: a self-signed certificate)")

    flags = {}
    for name, default in (("system_roots", False), ("tls", True), ("require_tls", False),
                          ("sasl_external", True), ("use_dns", True), ("subdomains", True)):
        flags[name] = _typed(f"[edge] {name}", edge.get(name, default), default)
    if flags["require_tls"] and not flags["tls"]:
        raise ConfigError("[edge] require_tls needs tls = true")
    if tls_listen is not None and not flags["tls"]:
        raise ConfigError("[edge] s2s_tls_listen (direct TLS) needs tls = true")

    flags["secure_auth"] = _typed("[edge] secure_auth", edge.get("secure_auth", False), False)
    secure_domains, insecure_domains = _domain_list(edge, "secure_domains"), _domain_list(edge, "insecure_domains")
    if flags["secure_auth"] or secure_domains:
        if not flags["tls"]:
            raise ConfigError("[edge] secure_auth and secure_domains need tls = true")
        if not (edge.get("cafile") or edge.get("capath") or flags["system_roots"]):
            raise ConfigError("[edge] secure_auth and secure_domains need trust roots for peers' certificates "
                              "(cafile, capath or system_roots = true)")
    caps = {}
    for name, default in (("max_streams_per_ip", DEFAULT_MAX_STREAMS_PER_IP),
                          ("max_unauthenticated_streams", DEFAULT_MAX_UNAUTHENTICATED)):
        value = _typed(f"[edge] {name}", edge.get(name, default), default)
        if value < 1:
            raise ConfigError(f"[edge] {name} must be at least 1")
        caps[name] = value

    peers_raw = edge.get("peers", {})
    if not isinstance(peers_raw, dict):
        raise ConfigError("[edge.peers] must be a table of domain = \"host:port\"")
    peers_flat = _flatten(peers_raw)
    for domain, value in peers_flat.items():
        if not (isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value))):
            raise ConfigError(f"[edge.peers] {domain}: expected \"host:port\", \"tls:host:port\" or a list of them")
    try:
        peers = parse_overrides(peers_flat)
    except (ValueError, JIDError) as exc:
        raise ConfigError(f"[edge.peers] {exc}") from None

    router_kw: dict[str, Any] = {}
    for k, f in _ROUTER_FIELDS.items():
        if k in edge:
            default = f.default if f.default is not dataclasses.MISSING else None
            router_kw[k] = _typed(f"[edge] {k}", edge[k], default)
    try:
        router = RouterConfig(domains=prepared, subdomains=flags["subdomains"], **router_kw)
    except ValueError as exc:
        raise ConfigError(f"[edge]: {exc}") from None
    return EdgeSettings(domains=prepared, s2s_listen=listen, s2s_tls_listen=tls_listen, dialback_secret=secret,
                        certificate=cert, key=key, cafile=path_of("cafile"), capath=path_of("capath"),
                        system_roots=flags["system_roots"], tls=flags["tls"], require_tls=flags["require_tls"],
                        sasl_external=flags["sasl_external"], use_dns=flags["use_dns"],
                        secure_auth=flags["secure_auth"], secure_domains=secure_domains,
                        insecure_domains=insecure_domains, peers=peers, router=router, **caps)


def with_direct_tls_port(settings: EdgeSettings, port: int) -> EdgeSettings:
    """``--s2s-tls-port``: a direct TLS listener on ``port``, on the host of ``s2s_listen``."""
    if settings.s2s_listen is None:
        raise ConfigError("--s2s-tls-port needs an edge ([edge] s2s_listen or --s2s-listen)")
    if not settings.tls:
        raise ConfigError("--s2s-tls-port (direct TLS) needs tls = true")
    if not 0 <= port < 65536:
        raise ConfigError(f"--s2s-tls-port {port} is out of range")
    host, _ = parse_hostport(settings.s2s_listen, what="[edge] s2s_listen")
    return dataclasses.replace(settings, s2s_tls_listen=format_hostport(host, port))


def _hostport(edge: dict[str, Any], key: str) -> str | None:
    value = edge.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"[edge] {key} must be a host:port string")
    try:
        parse_hostport(value, what=f"[edge] {key}")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return value


def _domain_list(edge: dict[str, Any], key: str) -> frozenset[str]:
    value = edge.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(d, str) for d in value):
        raise ConfigError(f"[edge] {key} must be a list of domain names")
    try:
        return frozenset(prepare_domain(d) for d in value)
    except JIDError as exc:
        raise ConfigError(f"[edge] {key}: {exc}") from None


def _secret(edge: dict[str, Any], base: Path) -> bytes | None:
    inline, file = edge.get("dialback_secret"), edge.get("dialback_secret_file")
    if inline is not None and file is not None:
        raise ConfigError("[edge] give dialback_secret or dialback_secret_file, not both")
    if inline is not None:
        if not isinstance(inline, str):
            raise ConfigError("[edge] dialback_secret must be a string")
        data = inline.encode("utf-8")
    elif file is not None:
        if not isinstance(file, str):
            raise ConfigError("[edge] dialback_secret_file must be a path")
        try:
            data = (base / file).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"[edge] dialback_secret_file: {exc}") from None
    else:
        return None
    if len(data) < MIN_SECRET:
        raise ConfigError(f"[edge] the dialback secret must be at least {MIN_SECRET} bytes")
    return data
