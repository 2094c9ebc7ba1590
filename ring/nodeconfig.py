"""A live node's configuration: a TOML file, overridable on the command line.

Example (every key optional except what TLS needs)::

    name = "ring1"

    [node]
    listen = "0.0.0.0:7700"                 # where peers connect
    advertise = "ring1.example.net:7700"    # what peers are told (required with a wildcard)
    bootstrap = ["ring0.example.net:7700"]  # none: this node creates a new ring
    admin = "unix:/run/ringmesh/ring1.sock" # or "127.0.0.1:7701"; loopback only
    log_level = "info"

    [tls]                                   # paths relative to this file
    ca = "ca/ca.pem"
    cert = "ca/nodes/ring1.pem"
    key = "ca/nodes/ring1.key"
    insecure_plain = false                  # true: plain TCP, no authentication (labs only)

    [ring]                                  # any RingConfig field, plus the key space size
    bits = 160
    stabilize_interval = 1.0

    [limits]                                # any LiveLimits field
    max_links = 512

Unknown sections or keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RingConfig
from .keyspace import KeySpace
from .live.addr import parse_hostport
from .live.limits import LiveLimits
from .live.logfmt import LEVELS
from .live.tls import TlsFiles


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message says where."""


_NODE_KEYS = {"listen", "advertise", "bootstrap", "admin", "log_level"}
_TLS_KEYS = {"ca", "cert", "key", "insecure_plain"}
_RING_FIELDS = {f.name: f for f in dataclasses.fields(RingConfig)
                if f.name != "space" and f.init}
_LIMIT_FIELDS = {f.name: f for f in dataclasses.fields(LiveLimits)}


@dataclass(frozen=True)
class NodeConfig:
    name: str = ""
    listen: str = "127.0.0.1:7700"
    advertise: str | None = None
    bootstrap: tuple[str, ...] = ()
    admin: str | None = None
    log_level: str = "info"
    tls: TlsFiles | None = None
    insecure_plain: bool = False
    ring: RingConfig = field(default_factory=RingConfig)
    limits: LiveLimits = field(default_factory=LiveLimits)


def _check_keys(where: str, table: dict[str, Any], allowed: set[str] | dict) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(allowed))})")


def _typed(where: str, value: Any, default: Any) -> Any:
    """Check a value against the type of the field's default (ints accepted for floats)."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int) or default is None:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            default is None and value is None)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


def _addr(text: str, what: str) -> str:
    try:
        parse_hostport(text, what=what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return text


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` (value in TOML syntax, bare words taken as strings)."""
    lhs, sep, rhs = text.partition("=")
    section, dot, key = lhs.strip().partition(".")
    if not sep or not dot or not key:
        raise ConfigError(f"override {text!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {rhs.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = rhs.strip()
    return section, key, value


def load_node_config(path: str | Path | None, *, overrides: list[str] | None = None,
                     extra_sections: tuple[str, ...] = (), **cli: Any) -> NodeConfig:
    """Read ``path`` (may be None: defaults only), then apply ``--set`` overrides and the
    named command-line options (listen, advertise, bootstrap, admin, insecure_plain, log_level).
    ``extra_sections``: top-level tables another component reads from the same file."""
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"configuration file {p} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: {exc}") from None
        base = p.resolve().parent
    _check_keys("top level", raw, {"name", "node", "tls", "ring", "limits", *extra_sections})
    sections: dict[str, dict[str, Any]] = {}
    for s in ("node", "tls", "ring", "limits"):
        v = raw.get(s, {})
        if not isinstance(v, dict):
            raise ConfigError(f"[{s}] must be a table")
        sections[s] = dict(v)
    for text in overrides or []:
        s, k, v = parse_override(text)
        if s not in sections:
            raise ConfigError(f"override {text!r}: unknown section {s!r}")
        sections[s][k] = v
    node, tls, ring, limits = (sections[s] for s in ("node", "tls", "ring", "limits"))
    for k in ("listen", "advertise", "admin", "log_level"):
        if cli.get(k) is not None:
            node[k] = cli[k]
    if cli.get("bootstrap"):
        node["bootstrap"] = list(cli["bootstrap"])
    if cli.get("insecure_plain"):
        tls["insecure_plain"] = True
    _check_keys("[node]", node, _NODE_KEYS)
    _check_keys("[tls]", tls, _TLS_KEYS)
    _check_keys("[ring]", ring, set(_RING_FIELDS) | {"bits"})
    _check_keys("[limits]", limits, _LIMIT_FIELDS)

    name = raw.get("name", "")
    if not isinstance(name, str):
        raise ConfigError("name must be a string")
    listen = _addr(str(node.get("listen", "127.0.0.1:7700")), "[node] listen")
    advertise = node.get("advertise")
    if advertise is not None:
        advertise = _addr(str(advertise), "[node] advertise")
    boot = node.get("bootstrap", [])
    if isinstance(boot, str):
        boot = [boot]
    if not isinstance(boot, list) or not all(isinstance(b, str) for b in boot):
        raise ConfigError("[node] bootstrap must be a list of host:port strings")
    for b in boot:
        _addr(b, "[node] bootstrap entry")
    admin = node.get("admin")
    if admin is not None and not isinstance(admin, str):
        raise ConfigError("[node] admin must be a string")
    if admin and admin.startswith("unix:") and not Path(admin[5:]).is_absolute():
        admin = "unix:" + str(base / admin[5:])
    level = node.get("log_level", "info")
    if level not in LEVELS:
        raise ConfigError(f"[node] log_level must be one of {', '.join(LEVELS)}")

    insecure = _typed("[tls] insecure_plain", tls.get("insecure_plain", False), False)
    files = None
    have = [k for k in ("ca", "cert", "key") if tls.get(k)]
    if have:
        if len(have) != 3:
            raise ConfigError("[tls] needs all of ca, cert and key")
        files = TlsFiles(*(base / Path(str(tls[k])) for k in ("ca", "cert", "key")))
    elif not insecure:
        raise ConfigError("[tls] ca, cert and key are required (or insecure_plain = true "
                          "for an unauthenticated lab ring)")

    ring_kw: dict[str, Any] = {}
    for k, v in ring.items():
        if k == "bits":
            continue
        f = _RING_FIELDS[k]
        default = f.default if f.default is not dataclasses.MISSING else None
        ring_kw[k] = _typed(f"[ring] {k}", v, default)
    try:
        space = KeySpace(int(_typed("[ring] bits", ring.get("bits", 160), 160)))
        ring_cfg = RingConfig(space=space, **ring_kw)
        limits_cfg = LiveLimits(**{k: _typed(f"[limits] {k}", v, _LIMIT_FIELDS[k].default)
                                   for k, v in limits.items()})
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return NodeConfig(name=name, listen=listen, advertise=advertise, bootstrap=tuple(boot),
                      admin=admin, log_level=level, tls=files, insecure_plain=insecure,
                      ring=ring_cfg, limits=limits_cfg)
