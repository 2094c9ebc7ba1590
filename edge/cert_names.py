"""Which domains a peer's certificate speaks for (RFC 6125, RFC 6120 §13.7.1.2, XEP-0178).

Why a module of its own: the stream machines only need a yes/no ("may this stream's peer
authenticate as ``peer.example`` with SASL EXTERNAL?"), while the rules behind it are
subtle enough to deserve their own tests. The reference identifiers an XMPP server
certificate may carry, in the order RFC 7590 and XEP-0178 list them:

- ``id-on-xmppAddr`` (otherName, UTF8String): a bare domain JID, compared after preparation;
- ``SRV-ID`` (otherName ``id-on-dnsSRV``, IA5String) for the ``_xmpp-server`` service;
- ``DNS-ID`` (subjectAltName dNSName), where a ``*`` may stand for the whole left-most label
  only (``*.example.com`` matches ``a.example.com``, not ``example.com`` nor ``a.b.example.com``);
- the subject's common name, only when the certificate has none of the above (RFC 6125 §6.4.4).

Names are compared as lower-case A-labels. Nothing here reads files, clocks or sockets;
whether the certificate is *trusted* is decided elsewhere (:mod:`edge.cert_trust`) and comes
in with the :class:`PeerCertificate` verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from .jid import JIDError, parse_jid

ID_ON_XMPPADDR = ObjectIdentifier("1.3.6.1.5.5.7.8.5")
ID_ON_DNSSRV = ObjectIdentifier("1.3.6.1.5.5.7.8.7")
XMPP_SERVER_SERVICE = "_xmpp-server."
MAX_NAMES = 256  # reference identifiers considered per certificate
MAX_NAME_CHARS = 1024

_UTF8STRING, _IA5STRING = 0x0C, 0x16


def _der_string(value: bytes, tag: int) -> str | None:
    """The text of a DER ``UTF8String``/``IA5String`` (an otherName value), or None."""
    if len(value) < 2 or value[0] != tag:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 2 or len(value) < 2 + count:
            return None
        length, offset = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    if offset + length != len(value) or length > MAX_NAME_CHARS * 4:
        return None
    try:
        text = value[offset:].decode("utf-8" if tag == _UTF8STRING else "ascii")
    except UnicodeDecodeError:
        return None
    return text


def to_ascii(domain: str) -> str | None:
    """A domain as lower-case A-labels (how certificates spell names), or None if impossible."""
    domain = domain.rstrip(".").lower()
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


def _dns_matches(pattern: str, domain: str) -> bool:
    if pattern == domain:
        return True
    if not pattern.startswith("*."):
        return False
    # RFC 6125 §6.4.3: the wildcard is the complete left-most label and matches one label.
    suffix = pattern[1:]
    if "*" in suffix or suffix.count(".") < 2:
        return False  # no wildcards deeper in, and never '*.com'
    head, _, rest = domain.partition(".")
    return bool(head) and "." + rest == suffix


@dataclass(frozen=True, slots=True)
class CertificateNames:
    """The reference identifiers found in one certificate, ready for matching."""

    dns: frozenset[str] = frozenset()  # dNSName values, may hold '*.' patterns (A-labels)
    xmpp: frozenset[str] = frozenset()  # id-on-xmppAddr domains (prepared)
    srv: frozenset[str] = frozenset()  # SRV-ID domains for _xmpp-server (A-labels)
    common_names: frozenset[str] = frozenset()  # considered only without any of the above

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertificateNames:
        dns: set[str] = set()
        xmpp: set[str] = set()
        srv: set[str] = set()
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        except ValueError:  # a malformed extension: trust none of its names
            return cls()
        if san is not None:
            for name in list(san.get_values_for_type(x509.DNSName))[:MAX_NAMES]:
                if len(name) <= MAX_NAME_CHARS:
                    dns.add(name.rstrip(".").lower())
            for other in list(san.get_values_for_type(x509.OtherName))[:MAX_NAMES]:
                if other.type_id == ID_ON_XMPPADDR:
                    text = _der_string(other.value, _UTF8STRING)
                    try:
                        jid = parse_jid(text) if text else None
                    except JIDError:
                        jid = None
                    if jid is not None and jid.is_domain:
                        xmpp.add(jid.domain)
                elif other.type_id == ID_ON_DNSSRV:
                    text = _der_string(other.value, _IA5STRING)
                    if text and text.lower().startswith(XMPP_SERVER_SERVICE):
                        srv.add(text[len(XMPP_SERVER_SERVICE):].rstrip(".").lower())
        common: set[str] = set()
        if not (dns or xmpp or srv):
            try:
                attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            except ValueError:
                attrs = []
            common = {str(a.value).rstrip(".").lower() for a in attrs[:MAX_NAMES] if len(str(a.value)) <= MAX_NAME_CHARS}
        return cls(frozenset(dns), frozenset(xmpp), frozenset(srv), frozenset(common))

    def matches(self, domain: str) -> bool:
        """Whether the certificate names ``domain`` (a prepared domain) as an XMPP server."""
        if domain in self.xmpp:
            return True
        ascii_domain = to_ascii(domain)
        if ascii_domain is None:
            return False
        if ascii_domain in self.srv or ascii_domain in self.common_names:
            return True
        return any(_dns_matches(pattern, ascii_domain) for pattern in self.dns)

    def __str__(self) -> str:
        names = sorted(self.xmpp) + sorted(self.srv) + sorted(self.dns) + sorted(self.common_names)
        return ", ".join(names) or "(no names)"


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The verdict on the certificate a peer presented in the TLS handshake.

    ``trusted`` means it chains to our trust roots, is within its validity period and may be
    used for TLS; ``reason`` says why not otherwise. Only a trusted certificate that
    :meth:`valid_for` the peer's domain lets a stream offer and accept SASL EXTERNAL; any
    other outcome leaves dialback, never a broken stream.
    """

    presented: bool
    trusted: bool
    names: CertificateNames = field(default_factory=CertificateNames)
    reason: str = ""

    @classmethod
    def none(cls) -> PeerCertificate:
        return cls(False, False, CertificateNames(), "no certificate presented")

    def valid_for(self, domain: str | None) -> bool:
        return bool(domain) and self.trusted and self.names.matches(domain)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if not self.presented:
            return self.reason
        verdict = "trusted" if self.trusted else f"untrusted ({self.reason})"
        return f"{verdict} for {self.names}"
