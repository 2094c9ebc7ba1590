"""The receiving side of an s2s stream: a peer connected to us.

Roles served on one inbound stream (XEP-0220 names):

- *receiving server*: the peer sends ``<db:result>`` with a key for (its domain, our domain);
  we emit :class:`KeyToVerify`, the driver checks it with the peer's authoritative server
  and calls :meth:`InboundStream.dialback_verified`; only then do stanzas from that domain
  pass. A forged key gets ``type='invalid'`` and, if nothing else is authenticated on the
  stream, a ``not-authorized`` stream error.
- *authoritative server*: the peer (verifying a key one of our edges issued) sends
  ``<db:verify>``; we recompute the key from the ring's shared secret and answer at once.
- *SASL EXTERNAL server* (XEP-0178): after STARTTLS, a peer whose certificate the driver
  judged trusted (:class:`PeerCertificate`) and which names the peer's domain (RFC 6125
  rules, :mod:`edge.cert_names`) authenticates with its certificate alone. Any other
  certificate only means EXTERNAL is neither offered nor accepted: dialback remains.

With XEP-0368 *direct TLS* the driver runs the TLS handshake before the machine exists and
hands it the verdict (and the TLS server name the peer asked for, SNI): the stream is secure
from its first header, so STARTTLS is never offered, while SASL EXTERNAL and dialback work
as after STARTTLS. A header without ``to`` is taken to address the SNI name.

*Secure auth* (``S2SConfig.secure_auth``/``secure_domains``): a peer domain that must prove
itself with a certificate is refused with ``not-authorized`` (``policy-violation`` when the
stream is not even encrypted) as soon as the machine knows its name and verdict, and never
authenticates by dialback alone; a :class:`SecureAuthRefused` event says why.

Every stanza is checked against the authenticated (remote, local) pairs: a ``from`` domain
the stream did not authenticate is ``invalid-from``, a ``to`` we do not serve is
``host-unknown``, a missing address is ``improper-addressing``.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable

from lxml import etree

from .cert_names import PeerCertificate
from .dialback import MAX_KEY_CHARS, DialbackKeys
from .errors import StanzaCondition, StreamCondition, StreamError, stanza_error_reply
from .jid import JIDError, parse_jid, prepare_domain
from .s2s_events import (
    Authenticated,
    AuthMethod,
    KeyToVerify,
    S2SConfig,
    SecureAuthRefused,
    StanzaReceived,
    StanzaRejected,
    StartTLS,
    StreamOpened,
    VerifyAnswered,
)
from .s2s_stream import (
    NS_BIDI_FEATURE,
    NS_DIALBACK_FEATURE,
    NS_SASL,
    NS_TLS,
    Input,
    S2SStreamBase,
    db_element,
    header_bytes,
)
from .errors import NS_STREAMS
from .xmlstream import RawStanza, StreamHeader


class InboundState(enum.Enum):
    # Hashed by identity, in C: the machines look these up for every stanza.
    __hash__ = object.__hash__

    EXPECT_HEADER = "expect-header"  # before the peer's header (initially and after restarts)
    OPEN = "open"  # our header and features sent
    TLS_HANDSHAKE = "tls-handshake"  # <proceed/> sent; the driver runs the TLS handshake
    CLOSED = "closed"


S = InboundState
_TRANSITIONS = {
    (S.EXPECT_HEADER, Input.HEADER): "_on_header",
    (S.OPEN, Input.STARTTLS): "_on_starttls",
    (S.OPEN, Input.SASL_AUTH): "_on_sasl_auth",
    (S.OPEN, Input.DB_RESULT): "_on_db_result",
    (S.OPEN, Input.DB_VERIFY): "_on_db_verify",
    (S.OPEN, Input.BIDI): "_on_bidi",
    (S.OPEN, Input.STANZA): "_on_stanza",
}


class InboundStream(S2SStreamBase):
    """Sans-IO inbound s2s stream. See the module docstring for the roles it plays."""

    State = InboundState
    _TRANSITIONS = _TRANSITIONS
    _CLOSED_STATES = frozenset({S.CLOSED})

    def __init__(self, config: S2SConfig, now: float, id_factory: Callable[[], str], *,
                 tls: PeerCertificate | None = None, server_name: str | None = None) -> None:
        """``tls``: the stream runs over direct TLS (XEP-0368) and this is the verdict on the
        peer's certificate (:meth:`PeerCertificate.none` if it sent none); ``server_name``:
        the SNI name the peer asked for in that handshake."""
        super().__init__(config, now, id_factory)
        self.state = S.EXPECT_HEADER
        self.direct_tls = tls is not None
        self.server_name: str | None = None
        if server_name:
            try:
                self.server_name = prepare_domain(server_name)
            except JIDError:
                self.server_name = None
        self.stream_id: str | None = None
        self.local_domain: str | None = None  # the 'to' of the peer's header
        self.peer_domain: str | None = None  # the 'from' of the peer's header, if given
        self.peer_certificate = PeerCertificate.none()  # the driver's verdict after TLS
        self.authenticated: set[tuple[str, str]] = set()  # (remote, local) pairs
        self.bidi = False
        self._sasl_done = False
        self._header_sent = False
        self._pending: dict[tuple[str, str], float] = {}  # (originating, receiving) -> deadline
        self._keys = DialbackKeys(config.dialback_secret)
        if tls is not None:
            self.secure = True
            self.peer_certificate = tls

    # -- driver API -------------------------------------------------------------------------

    def tls_established(self, now: float, peer_certificate: PeerCertificate | None = None) -> None:
        """The driver finished the TLS handshake; ``peer_certificate`` is its verdict on the
        certificate the peer presented (None: no certificate)."""
        self._require_local_use(self.state is S.TLS_HANDSHAKE, "tls_established")
        self._now = now
        self.secure = True
        self.peer_certificate = peer_certificate or PeerCertificate.none()
        self._restart_parser()
        self._header_sent = False
        self.state = S.EXPECT_HEADER

    def dialback_verified(self, originating: str, receiving: str, valid: bool, now: float,
                          error: str | None = None) -> None:
        """Report the authoritative server's answer for a :class:`KeyToVerify`."""
        self._now = now
        pair = (originating, receiving)
        if self.state in self._CLOSED_STATES or self._pending.pop(pair, None) is None:
            return  # answered already, timed out, or never asked: nothing to say
        self._deadlines.pop(f"verify {originating} {receiving}", None)
        if error is not None:
            self._write_element(db_element("result", receiving, originating, type="error", error=error))
            return
        if valid:
            self._authorize(originating, receiving, AuthMethod.DIALBACK)
            self._write_element(db_element("result", receiving, originating, type="valid"))
            return
        self._write_element(db_element("result", receiving, originating, type="invalid"))
        if not self.authenticated:
            self.fail(StreamCondition.NOT_AUTHORIZED, "dialback key was not valid")

    def send_stanza(self, element: etree._Element) -> None:
        """Bidi only (XEP-0288): send a stanza back to the peer on this stream."""
        sender, recipient = element.get("from", ""), element.get("to", "")
        pair = (parse_jid(recipient).domain, parse_jid(sender).domain)
        self._require_local_use(self.bidi and self.state is S.OPEN and pair in self.authenticated,
                                "send_stanza on an inbound stream without bidi")
        self._write_element(element)

    # -- handlers ---------------------------------------------------------------------------

    def _ensure_header_sent(self) -> None:
        if not self._header_sent:
            self._header_sent = True
            self._write(header_bytes(sender=self.local_domain, recipient=None, stream_id=self.stream_id or self._id_factory(),
                                     lang=self.config.lang))

    def _on_header(self, header: StreamHeader, now: float) -> InboundState:
        to, frm = header.get("to"), header.get("from")
        self.stream_id = self._id_factory()
        try:
            self.local_domain = prepare_domain(to) if to else self.server_name
        except JIDError:
            self.local_domain = None
        try:
            self.peer_domain = prepare_domain(frm) if frm else None
        except JIDError:
            self.peer_domain = None
        self._header_sent = True
        self._write(header_bytes(sender=self.local_domain, recipient=self.peer_domain, stream_id=self.stream_id,
                                 lang=self.config.lang, version=header.get("version") is not None))
        self._check_header(header)
        if to and not self.local_domain:
            raise StreamError(StreamCondition.HOST_UNKNOWN, "invalid 'to' domain")
        if self.local_domain is not None and not self.config.serves(self.local_domain):
            raise StreamError(StreamCondition.HOST_UNKNOWN, f"{self.local_domain} is not served here")
        if frm and not self.peer_domain:
            raise StreamError(StreamCondition.INVALID_FROM, "invalid 'from' domain")
        if self.secure and self.peer_domain is not None:
            self._check_secure_auth(self.peer_domain)  # the verdict is known: refuse at once
        self._events.append(StreamOpened(self.stream_id, self.peer_domain, self.local_domain, self.secure))
        if header.get("version") is not None:
            self._write_element(self._features())
        return S.OPEN

    def _features(self) -> etree._Element:
        cfg = self.config
        feats = etree.Element(f"{{{NS_STREAMS}}}features", nsmap={"stream": NS_STREAMS})
        must_prove = cfg.requires_secure_auth(self.peer_domain)
        if not self.secure and cfg.tls:
            tls = etree.SubElement(feats, f"{{{NS_TLS}}}starttls", nsmap={None: NS_TLS})
            if cfg.require_tls or (must_prove and self.peer_domain is not None):
                etree.SubElement(tls, f"{{{NS_TLS}}}required")
        if self._sasl_done:
            return feats
        if self.secure and cfg.sasl_external and self.peer_certificate.valid_for(self.peer_domain):
            mechs = etree.SubElement(feats, f"{{{NS_SASL}}}mechanisms", nsmap={None: NS_SASL})
            etree.SubElement(mechs, f"{{{NS_SASL}}}mechanism").text = "EXTERNAL"
        if cfg.dialback and (self.secure or not cfg.require_tls) and not (
                must_prove and self.peer_domain is not None and not self.secure):
            db = etree.SubElement(feats, f"{{{NS_DIALBACK_FEATURE}}}dialback", nsmap={None: NS_DIALBACK_FEATURE})
            etree.SubElement(db, f"{{{NS_DIALBACK_FEATURE}}}errors")
        if cfg.bidi and not self.bidi:
            etree.SubElement(feats, f"{{{NS_BIDI_FEATURE}}}bidi", nsmap={None: NS_BIDI_FEATURE})
        return feats

    def _on_starttls(self, element: etree._Element, now: float) -> InboundState:
        if self.secure or not self.config.tls:
            self._write_element(etree.Element(f"{{{NS_TLS}}}failure", nsmap={None: NS_TLS}))
            raise StreamError(StreamCondition.POLICY_VIOLATION, "STARTTLS is not available")
        self._write_element(etree.Element(f"{{{NS_TLS}}}proceed", nsmap={None: NS_TLS}))
        self._events.append(StartTLS(server_side=True))
        return S.TLS_HANDSHAKE

    def _on_sasl_auth(self, element: etree._Element, now: float) -> InboundState:
        def failure(condition: str) -> InboundState:
            f = etree.Element(f"{{{NS_SASL}}}failure", nsmap={None: NS_SASL})
            etree.SubElement(f, f"{{{NS_SASL}}}{condition}")
            self._write_element(f)
            return S.OPEN

        if element.get("mechanism") != "EXTERNAL" or not self.secure or not self.config.sasl_external:
            return failure("invalid-mechanism")
        if self._sasl_done or self.local_domain is None:
            return failure("not-authorized")
        text = (element.text or "").strip()
        authzid = self.peer_domain
        if text and text != "=":
            try:
                authzid = prepare_domain(base64.b64decode(text, validate=True).decode("utf-8"))
            except (binascii.Error, UnicodeDecodeError, JIDError):
                return failure("incorrect-encoding")
        if not authzid or not self.peer_certificate.valid_for(authzid):
            return failure("not-authorized")
        self._sasl_done = True
        self._write_element(etree.Element(f"{{{NS_SASL}}}success", nsmap={None: NS_SASL}))
        self._authorize(authzid, self.local_domain, AuthMethod.SASL_EXTERNAL)
        self._restart_parser()
        self._header_sent = False
        return S.EXPECT_HEADER

    def _on_bidi(self, element: etree._Element, now: float) -> InboundState:
        if not self.config.bidi:
            raise StreamError(StreamCondition.UNSUPPORTED_FEATURE, "bidirectional streams are not enabled")
        self.bidi = True
        return S.OPEN

    def _dialback_domains(self, element: etree._Element) -> tuple[str, str]:
        frm, to = element.get("from"), element.get("to")
        if not frm or not to:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "dialback element without from/to")
        try:
            return prepare_domain(frm), prepare_domain(to)
        except JIDError:
            raise StreamError(StreamCondition.INVALID_FROM, "invalid dialback domain") from None

    def _on_db_result(self, element: etree._Element, now: float) -> InboundState:
        if self.config.require_tls and not self.secure:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "encryption required")
        if not self.config.dialback:
            raise StreamError(StreamCondition.UNSUPPORTED_FEATURE, "dialback is disabled")
        originating, receiving = self._dialback_domains(element)
        if element.get("type") is not None:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "db:result with a type on an inbound stream")
        if not self.config.serves(receiving):
            self._write_element(db_element("result", receiving, originating, type="error", error="item-not-found"))
            return S.OPEN
        if self.peer_domain is not None and originating != self.peer_domain and not self.authenticated:
            raise StreamError(StreamCondition.INVALID_FROM, "dialback domain differs from the stream's")
        if self._secure_auth_problem(originating):
            # Alone on the stream: a stream error ends it. Beside authenticated pairs: refuse this one.
            self._check_secure_auth(originating, raise_error=not self.authenticated)
            self._write_element(db_element("result", receiving, originating, type="error", error="not-authorized",
                                           error_type="auth"))
            return S.OPEN
        key = (element.text or "").strip()
        if not key or len(key) > MAX_KEY_CHARS:
            raise StreamError(StreamCondition.NOT_AUTHORIZED, "missing or oversized dialback key")
        pair = (originating, receiving)
        if pair in self.authenticated:
            self._write_element(db_element("result", receiving, originating, type="valid"))
            return S.OPEN
        if pair in self._pending:
            return S.OPEN  # a retry while we are still asking: one answer will cover both
        if len(self._pending) >= self.config.max_pending_verifications:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "too many pending dialback requests")
        deadline = now + self.config.dialback_timeout
        self._pending[pair] = deadline
        self._deadlines[f"verify {originating} {receiving}"] = deadline
        assert self.stream_id is not None
        self._events.append(KeyToVerify(originating, receiving, self.stream_id, key))
        return S.OPEN

    def _on_db_verify(self, element: etree._Element, now: float) -> InboundState:
        receiving, authoritative = self._dialback_domains(element)
        stream_id = element.get("id")
        if not stream_id:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "db:verify without id")
        if element.get("type") is not None:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "db:verify with a type on an inbound stream")
        if not self.config.serves(authoritative):
            self._write_element(db_element("verify", authoritative, receiving, stream_id=stream_id,
                                           type="error", error="item-not-found"))
            return S.OPEN
        valid = self._keys.check((element.text or "").strip(), receiving, authoritative, stream_id)
        self._write_element(db_element("verify", authoritative, receiving, stream_id=stream_id,
                                       type="valid" if valid else "invalid"))
        self._events.append(VerifyAnswered(receiving, authoritative, stream_id, valid))
        return S.OPEN

    def _on_stanza(self, element: etree._Element | RawStanza, now: float) -> InboundState:
        if self.config.require_tls and not self.secure:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "encryption required")
        if not self.authenticated:
            raise StreamError(StreamCondition.NOT_AUTHORIZED, "stanza before authentication")
        frm, to = element.get("from"), element.get("to")
        if not frm or not to:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "stanza without from or to")
        try:
            sender = parse_jid(frm)
        except JIDError:
            raise StreamError(StreamCondition.INVALID_FROM, "malformed 'from' address") from None
        try:
            recipient = parse_jid(to)
        except JIDError:
            if (sender.domain, self.local_domain) not in self.authenticated:
                raise StreamError(StreamCondition.INVALID_FROM, f"{sender.domain} is not authenticated here") from None
            built = element.element if type(element) is RawStanza else element
            reply = stanza_error_reply(built, StanzaCondition.JID_MALFORMED)
            self._events.append(StanzaRejected(built, reply, StanzaCondition.JID_MALFORMED.tag))
            return S.OPEN
        if not self.config.serves(recipient.domain):
            raise StreamError(StreamCondition.HOST_UNKNOWN, f"{recipient.domain} is not served here")
        if (sender.domain, recipient.domain) not in self.authenticated:
            raise StreamError(StreamCondition.INVALID_FROM, f"{sender.domain} is not authenticated for {recipient.domain}")
        # Unbuilt stanzas carry their bytes; built ones (they needed a header prefix) may too.
        raw = None if type(element) is RawStanza else self._parser.raw.get(id(element))
        self._events.append(StanzaReceived(element, sender, recipient, raw))
        return S.OPEN

    # -- internals --------------------------------------------------------------------------

    def _secure_auth_problem(self, domain: str) -> str:
        """Why ``domain`` may not authenticate here under secure auth ('' if it may)."""
        if not self.config.requires_secure_auth(domain):
            return ""
        if not self.secure:
            return "the stream is not encrypted"
        if self.peer_certificate.valid_for(domain):
            return ""
        return f"its certificate is {self.peer_certificate}"

    def _check_secure_auth(self, domain: str, raise_error: bool = True) -> None:
        """Refuse ``domain`` if it must, and cannot, prove itself with its certificate: a
        :class:`SecureAuthRefused` event and (``raise_error``) the stream error that ends it."""
        problem = self._secure_auth_problem(domain)
        if not problem:
            return
        self._events.append(SecureAuthRefused(domain, self.local_domain, True, problem))
        if not raise_error:
            return
        if not self.secure:
            raise StreamError(StreamCondition.POLICY_VIOLATION,
                              f"{domain} must use an encrypted stream and authenticate with its certificate")
        raise StreamError(StreamCondition.NOT_AUTHORIZED,
                          f"{domain} must authenticate with a certificate we trust; {problem}")

    def _authorize(self, remote: str, local: str, method: AuthMethod) -> None:
        if len(self.authenticated) >= self.config.max_domain_pairs:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "too many domain pairs on one stream")
        self.authenticated.add((remote, local))
        self._deadlines.pop("handshake", None)
        self._events.append(Authenticated(remote, local, method))

    def _on_timeout(self, name: str, now: float) -> None:
        if name.startswith("verify "):
            _, originating, receiving = name.split(" ", 2)
            if (originating, receiving) in self._pending:
                # XEP-0220 §2.4: tell the originating server we could not reach its
                # authoritative server, and keep the stream for other pairs.
                self.dialback_verified(originating, receiving, False, now, error="remote-server-timeout")
            return
        super()._on_timeout(name, now)

    def _closed_state(self) -> InboundState:
        return S.CLOSED
