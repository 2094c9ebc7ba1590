"""What the s2s stream machines take (configuration) and tell their driver (events).

One frozen dataclass per event kind, as in h11: the shell pattern-matches on the type and
never inspects machine internals.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from lxml import etree

from .jid import JID
from .rate_limit import RateLimits
from .xmlstream import ParserLimits, RawStanza


class AuthMethod(enum.Enum):
    DIALBACK = "dialback"
    SASL_EXTERNAL = "sasl-external"


@dataclass(frozen=True, slots=True)
class S2SConfig:
    """Policy and limits shared by every stream of one edge.

    ``domains`` are the (prepared) domains the edge serves; with ``subdomains`` any name
    under them is served too. ``tls`` means the edge has a certificate: it offers STARTTLS
    as receiving server and asks for it as initiating server. ``require_tls`` refuses
    dialback and stanzas on unencrypted streams.

    ``secure_auth`` (as Prosody's ``s2s_secure_auth``): a peer domain must prove itself with
    a certificate that chains to our trust roots and names it; dialback alone is refused, in
    both directions. ``secure_domains`` asks that of some domains only, ``insecure_domains``
    exempts some from a global ``secure_auth``.

    ``max_streams_per_ip`` and ``max_unauthenticated_streams`` cap inbound connections (see
    :mod:`edge.conn_limits`): a hosting provider may hold one stream per virtual host from a
    single address, so the per-address cap is generous; streams that have not authenticated
    cost us TLS handshakes and dialback look-ups for nothing, so they are capped in total.
    """

    domains: frozenset[str]
    dialback_secret: bytes
    subdomains: bool = True
    tls: bool = False
    require_tls: bool = False
    dialback: bool = True
    sasl_external: bool = True
    bidi: bool = False
    limits: ParserLimits = field(default_factory=ParserLimits)
    rate: RateLimits = field(default_factory=RateLimits)  # bytes a peer may send per stream
    handshake_timeout: float = 30.0  # connect to authenticated (or first answered verify)
    dialback_timeout: float = 20.0  # one key verification, either side
    close_timeout: float = 5.0  # our </stream:stream> sent, waiting for the peer's
    max_pending_verifications: int = 64  # per stream
    max_domain_pairs: int = 256  # authenticated (remote, local) pairs per stream
    max_queued_stanzas: int = 1024  # outbound, while the stream is not yet authenticated
    secure_auth: bool = False
    secure_domains: frozenset[str] = frozenset()
    insecure_domains: frozenset[str] = frozenset()
    max_streams_per_ip: int = 128  # inbound streams open at once from one remote address
    max_unauthenticated_streams: int = 256  # inbound streams not yet authenticated, all addresses
    lang: str = "en"

    def __post_init__(self) -> None:
        if self.max_streams_per_ip < 1 or self.max_unauthenticated_streams < 1:
            raise ValueError("max_streams_per_ip and max_unauthenticated_streams must be at least 1")
        if (self.secure_auth or self.secure_domains) and not self.tls:
            raise ValueError("secure_auth and secure_domains need TLS (a certificate) on s2s")

    def requires_secure_auth(self, domain: str | None) -> bool:
        """Whether ``domain`` must authenticate with a valid certificate (never dialback alone)."""
        if domain is None:
            return self.secure_auth
        if domain in self.secure_domains:
            return True
        return self.secure_auth and domain not in self.insecure_domains

    def serves(self, domain: str) -> bool:
        if domain in self.domains:
            return True
        if self.subdomains:
            return any(domain.endswith("." + d) for d in self.domains)
        return False


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer's stream header arrived (again after each restart)."""

    stream_id: str | None
    peer_from: str | None
    peer_to: str | None
    secure: bool


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Start TLS on the transport now (as server for inbound, as client for outbound),
    then call ``tls_established``. Nothing else may be sent or read in clear until then."""

    server_side: bool


@dataclass(frozen=True, slots=True)
class Authenticated:
    """``remote`` may now send stanzas from its domain to ``local`` over this stream
    (inbound), or this stream may carry stanzas from ``local`` to ``remote`` (outbound)."""

    remote: str
    local: str
    method: AuthMethod


@dataclass(frozen=True, slots=True)
class AuthenticationFailed:
    """Outbound: the peer refused our dialback key or SASL. Queued stanzas come back in a
    :class:`StanzasUnsent` event."""

    remote: str
    local: str
    reason: str


@dataclass(frozen=True, slots=True)
class SecureAuthRefused:
    """``remote`` must authenticate with a certificate (``S2SConfig.secure_auth``) and could
    not: unencrypted, or its certificate is untrusted or names someone else. The stream is
    closed with a stream error (inbound) or before authenticating (outbound)."""

    remote: str
    local: str | None
    inbound: bool
    reason: str


@dataclass(frozen=True, slots=True)
class KeyToVerify:
    """Inbound: ``originating`` presented ``key`` for ``receiving`` on stream ``stream_id``.

    Receiving-server role: the driver asks an authoritative server for ``originating``
    (``OutboundStream.verify_key``) and reports with ``InboundStream.dialback_verified``."""

    originating: str
    receiving: str
    stream_id: str
    key: str


@dataclass(frozen=True, slots=True)
class KeyVerified:
    """Outbound: the authoritative server answered our ``<db:verify>``.
    ``valid`` is False on ``invalid``, ``error`` or timeout (``error`` says which)."""

    originating: str
    receiving: str
    stream_id: str
    valid: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class VerifyAnswered:
    """Inbound, authoritative role: we answered a ``<db:verify>`` (for logs and tests)."""

    receiving: str
    originating: str
    stream_id: str
    valid: bool


class StanzaReceived:
    """A stanza from an authenticated domain to a served one; addresses are prepared.

    ``element`` is built on first use: a stanza the edge only forwards travels as ``raw``,
    its bytes as received (they need no namespace declaration but the stream's default,
    jabber:server), and :meth:`get` reads its root's attributes without building it.
    """

    __slots__ = ("_stanza", "sender", "recipient", "raw", "to")

    def __init__(self, element: etree._Element | RawStanza, sender: JID, recipient: JID,
                 raw: bytes | None = None) -> None:
        self._stanza = element
        self.sender = sender
        self.recipient = recipient
        self.raw = raw if raw is not None else element.raw if type(element) is RawStanza else None
        self.to: str | None = element.get("to")  # as written (``recipient`` is its prepared form)

    @property
    def element(self) -> etree._Element:
        stanza = self._stanza
        return stanza.element if type(stanza) is RawStanza else stanza

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._stanza.get(name, default)

    def __eq__(self, other: object) -> bool:
        if type(other) is not StanzaReceived:
            return NotImplemented
        return (self.sender, self.recipient) == (other.sender, other.recipient)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StanzaReceived(sender={self.sender!s}, recipient={self.recipient!s})"


@dataclass(frozen=True, slots=True)
class StanzaRejected:
    """A stanza that cannot be delivered as sent; ``reply`` (if any) goes back to its sender
    through the router (the inbound stream itself is one-way)."""

    element: etree._Element = field(compare=False)
    reply: etree._Element | None = field(compare=False)
    condition: str


@dataclass(frozen=True, slots=True)
class StanzasUnsent:
    """Outbound stanzas that will never leave on this stream (auth failed, stream closed)."""

    elements: tuple[etree._Element, ...] = field(compare=False)
    reason: str


@dataclass(frozen=True, slots=True)
class StreamErrorReceived:
    condition: str
    text: str


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """Both directions are done: flush ``data_to_send()`` and close the transport.
    ``error`` is the stream error we sent, if any."""

    error: str | None
    by_peer: bool


Event = (
    StreamOpened | StartTLS | Authenticated | AuthenticationFailed | SecureAuthRefused | KeyToVerify | KeyVerified
    | VerifyAnswered | StanzaReceived | StanzaRejected | StanzasUnsent | StreamErrorReceived
    | StreamClosed
)
