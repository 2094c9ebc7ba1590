"""JIDs prepared per RFC 7622: parse once at the edge, compare prepared forms everywhere else.

Why here: a stanza's ``to`` picks the ring key it is routed by, and its ``from`` is checked
against the domains a stream authenticated. Both comparisons are only safe on the prepared
form (``JuLiet@Ring.Test`` and ``juliet@ring.test`` are one entity), so every address that
enters the edge goes through :func:`parse_jid` and anything that fails becomes
``jid-malformed``.

Localparts use the PRECIS UsernameCaseMapped profile and resourceparts OpaqueString
(precis-i18n does the Unicode work). Domainparts are NFC-normalised, lower-cased, stripped
of one trailing dot and checked label by label (IDNA via Python's codec for non-ASCII
labels); IP literals are accepted as they are.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from precis_i18n import get_profile

MAX_PART_BYTES = 1023  # RFC 7622 §3.2-3.4: each part at most 1023 octets once prepared
MAX_RAW_CHARS = 3 * 1024 + 2  # a JID string can never be longer than three parts and separators

_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")  # RFC 7622 §3.3.1
# For printable ASCII, PRECIS reduces to this (RFC 8265 §3.3, §4.2: width mapping, NFC and
# the bidi rule change nothing; UsernameCaseMapped lower-cases; IdentifierClass allows
# U+0021..U+007E, FreeformClass U+0020..U+007E). Most addresses are ASCII: the fast path
# spares them the Unicode tables (a test checks it against the library).
_ASCII_IDENTIFIER = frozenset(map(chr, range(0x21, 0x7F)))
_ASCII_FREEFORM = frozenset(map(chr, range(0x20, 0x7F)))
_USERNAME = get_profile("UsernameCaseMapped")
_OPAQUE = get_profile("OpaqueString")


class JIDError(ValueError):
    """An address that cannot be prepared: answered with ``jid-malformed``."""

    condition = "jid-malformed"


@dataclass(frozen=True, slots=True)
class JID:
    """A prepared JID. Build with :func:`parse_jid` or :meth:`JID.make`, never by hand."""

    local: str | None
    domain: str
    resource: str | None

    @classmethod
    def make(cls, local: str | None, domain: str, resource: str | None = None) -> JID:
        """Prepare each part separately (for addresses assembled from parts)."""
        return cls(
            _prepare_local(local) if local is not None else None,
            prepare_domain(domain),
            _prepare_resource(resource) if resource is not None else None,
        )

    @property
    def bare(self) -> JID:
        return JID(self.local, self.domain, None) if self.resource is not None else self

    @property
    def is_domain(self) -> bool:
        return self.local is None and self.resource is None

    def __str__(self) -> str:
        text = self.domain
        if self.local is not None:
            text = f"{self.local}@{text}"
        if self.resource is not None:
            text = f"{text}/{self.resource}"
        return text


def parse_jid(text: str) -> JID:
    """Split and prepare ``[local@]domain[/resource]``; raise :class:`JIDError` if invalid."""
    return _parse_cached(text) if len(text) <= 256 else _parse(text)


@lru_cache(maxsize=16384)
def _parse_cached(text: str) -> JID:
    return _parse(text)


def _parse(text: str) -> JID:
    if not isinstance(text, str) or not text:
        raise JIDError("empty JID")
    if len(text) > MAX_RAW_CHARS:
        raise JIDError("JID too long")
    # RFC 7622 §3.1: the first '/' ends the domain, the '@' before it ends the localpart.
    head, slash, resource = text.partition("/")
    local, at, domain = head.rpartition("@")
    if slash and not resource:
        raise JIDError("empty resourcepart")
    if at and not local:
        raise JIDError("empty localpart")
    if "@" in local:
        raise JIDError("localpart contains '@'")
    return JID(
        _prepare_local(local) if at else None,
        prepare_domain(domain),
        _prepare_resource(resource) if slash else None,
    )


def _prepare_local(local: str) -> str:
    if local.isascii() and local and _ASCII_IDENTIFIER.issuperset(local):
        prepared = local.lower()
        if not _LOCAL_FORBIDDEN.isdisjoint(prepared):
            raise JIDError("localpart contains a forbidden character")
        _check_length(prepared, "localpart")
        return prepared
    try:
        prepared = _USERNAME.enforce(local)
    except UnicodeError as exc:
        raise JIDError(f"invalid localpart: {exc.reason if hasattr(exc, 'reason') else exc}") from None
    if any(ch in _LOCAL_FORBIDDEN for ch in prepared):
        raise JIDError("localpart contains a forbidden character")
    _check_length(prepared, "localpart")
    return prepared


def _prepare_resource(resource: str) -> str:
    if resource.isascii() and resource and _ASCII_FREEFORM.issuperset(resource):
        _check_length(resource, "resourcepart")
        return resource
    try:
        prepared = _OPAQUE.enforce(resource)
    except UnicodeError as exc:
        raise JIDError(f"invalid resourcepart: {exc.reason if hasattr(exc, 'reason') else exc}") from None
    _check_length(prepared, "resourcepart")
    return prepared


@lru_cache(maxsize=1024)
def prepare_domain(domain: str) -> str:
    """Prepare a domainpart (also used for stream ``to``/``from`` and dialback domains)."""
    if domain.startswith("[") and domain.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(domain[1:-1]).compressed}]"
        except ValueError:
            raise JIDError("invalid IPv6 literal") from None
    prepared = unicodedata.normalize("NFC", domain).lower()
    if prepared.endswith("."):
        prepared = prepared[:-1]
    if not prepared:
        raise JIDError("empty domainpart")
    _check_length(prepared, "domainpart")
    for label in prepared.split("."):
        _check_label(label)
    return prepared


def _check_label(label: str) -> None:
    if not label:
        raise JIDError("empty domain label")
    if label.isascii():
        ascii_label = label
        if not all(ch.isalnum() or ch in "-_" for ch in label):
            raise JIDError("invalid character in domainpart")
    else:
        try:
            ascii_label = label.encode("idna").decode("ascii")
        except UnicodeError:
            raise JIDError("invalid internationalised domain label") from None
    if len(ascii_label) > 63:
        raise JIDError("domain label longer than 63 octets")
    if label.startswith("-") or label.endswith("-"):
        raise JIDError("domain label starts or ends with '-'")


def _check_length(part: str, what: str) -> None:
    if len(part.encode("utf-8")) > MAX_PART_BYTES:
        raise JIDError(f"{what} longer than {MAX_PART_BYTES} octets")


def is_valid_domain(domain: str) -> bool:
    try:
        prepare_domain(domain)
    except JIDError:
        return False
    return True
