"""Where things live on the ring: node ids from public keys, entity keys from JIDs.

A node's id is the hash of its public key, so no node chooses its own place on the ring
(and so cannot position itself to capture a chosen key). An entity's key is the hash of its
normalised bare JID, so every resource of one account, and every spelling of it, lands on
the same node. Domain-level keys hash a distinct prefix so that a domain and a bare JID
that happens to look like it never collide.
"""

from __future__ import annotations

import unicodedata

from .keyspace import KeySpace

_NODE_PREFIX = b"ringmesh-node\x00"
_JID_PREFIX = b"ringmesh-jid\x00"
_DOMAIN_PREFIX = b"ringmesh-domain\x00"
_NAME_PREFIX = b"ringmesh-name\x00"

MAX_JID_BYTES = 3071  # RFC 7622: three parts of at most 1023 bytes each


class InvalidJID(ValueError):
    """The string is not a JID that can be keyed (empty domain, too long, ...)."""


def node_id_from_public_key(space: KeySpace, public_key_raw: bytes) -> int:
    """The node id bound to a raw public key (e.g. 32 bytes of Ed25519)."""
    if not public_key_raw:
        raise ValueError("empty public key")
    return space.hash_bytes(_NODE_PREFIX + public_key_raw)


def _fold(part: str) -> str:
    # A light stand-in for PRECIS that is stable and total: compatibility normalisation and
    # case folding. The edge applies full RFC 7622 preparation before stanzas reach the ring;
    # this only has to agree with itself.
    return unicodedata.normalize("NFKC", part).casefold()


def normalise_bare_jid(jid: str) -> str:
    """Strip the resource and fold case: ``Romeo@Example.NET/orchard`` -> ``romeo@example.net``."""
    if len(jid.encode("utf-8", "surrogatepass")) > MAX_JID_BYTES:
        raise InvalidJID("JID longer than 3071 bytes")
    bare = jid.split("/", 1)[0]
    if "@" in bare:
        local, domain = bare.split("@", 1)
        if not local:
            raise InvalidJID(f"empty localpart in {jid!r}")
    else:
        local, domain = "", bare
    domain = _fold(domain).rstrip(".")
    if not domain:
        raise InvalidJID(f"empty domainpart in {jid!r}")
    if "@" in domain:
        raise InvalidJID(f"more than one '@' in {jid!r}")
    return f"{_fold(local)}@{domain}" if local else domain


def jid_key(space: KeySpace, jid: str) -> int:
    """Key of the entity a JID names (its bare JID)."""
    bare = normalise_bare_jid(jid)
    if "@" not in bare:
        return domain_key(space, bare)
    return space.hash_bytes(_JID_PREFIX + bare.encode("utf-8"))


def domain_key(space: KeySpace, domain: str) -> int:
    """Key of a whole domain (the domain's own services live there)."""
    bare = normalise_bare_jid(domain)
    if "@" in bare:
        raise InvalidJID(f"{domain!r} is not a domain")
    return space.hash_bytes(_DOMAIN_PREFIX + bare.encode("utf-8"))


def name_key(space: KeySpace, name: str) -> int:
    """Key of an arbitrary name (tests, benchmarks, service placement)."""
    return space.hash_bytes(_NAME_PREFIX + name.encode("utf-8"))


def parse_key(space: KeySpace, text: str) -> int:
    """Read a key from the command line: ``0x...`` hex, a decimal number, or a JID."""
    t = text.strip()
    if t.lower().startswith("0x"):
        try:
            return space.check(int(t, 16))
        except ValueError as exc:
            raise ValueError(f"bad hex key {text!r}: {exc}") from None
    if t.isdigit():
        return space.check(int(t))
    return jid_key(space, t)
