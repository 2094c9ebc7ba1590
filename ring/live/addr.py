"""``host:port`` strings, the form a live node's address takes in NodeRef.addr and configs."""

from __future__ import annotations

import ipaddress


def parse_hostport(text: str, *, what: str = "address") -> tuple[str, int]:
    """``"127.0.0.1:7700"``, ``"[::1]:7700"`` or ``"ring1.example:7700"`` -> (host, port)."""
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{what} {text!r}: expected [ipv6]:port")
        port_s = rest[1:]
    else:
        host, sep, port_s = t.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{what} {text!r}: expected host:port")
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"{what} {text!r}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} {text!r}: port out of range")
    return host, port


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")
