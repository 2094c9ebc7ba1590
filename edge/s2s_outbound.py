"""The initiating side of an s2s stream: we connected to a peer, for one (local, remote) pair.

Negotiation follows the peer's features in RFC 6120 order: STARTTLS first when the peer
offers it and we can (or must), then SASL EXTERNAL when the peer offers it on a secure stream
and our certificate is usable (XEP-0178), falling back to XEP-0220 dialback (originating
role: we send ``<db:result>`` with an XEP-0185 key and wait for ``type='valid'``).

The same stream carries the *receiving-server* half of dialback: :meth:`verify_key` sends
``<db:verify>`` to the authoritative server and its answer becomes a :class:`KeyVerified`
event. A stream opened only for that (``authenticate=False``) never sends ``<db:result>``.

Stanzas given before the stream is authenticated wait in a bounded queue and are flushed in
order once it is; if authentication fails they come back in :class:`StanzasUnsent`.

Direct TLS (XEP-0368): the driver connects with TLS from the first byte and calls
:meth:`OutboundStream.start` with its verdict on the peer's certificate; the stream is then
secure from the start and never asks for STARTTLS.

Secure auth (``S2SConfig.secure_auth``/``secure_domains``): to a remote domain that must prove
itself, the stream goes only encrypted, and only once the peer's certificate is trusted and
names the domain; otherwise it ends with a ``not-authorized`` (or, unencrypted,
``policy-violation``) stream error and a :class:`SecureAuthRefused` event, and the queued
stanzas come back. Streams opened only to verify a dialback key are exempt: they
authenticate nothing.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Callable

from lxml import etree

from .cert_names import PeerCertificate
from .dialback import DialbackKeys
from .errors import LocalProtocolError, StreamCondition, StreamError
from .jid import JIDError, parse_jid, prepare_domain
from .s2s_events import (
    Authenticated,
    AuthenticationFailed,
    AuthMethod,
    KeyVerified,
    S2SConfig,
    SecureAuthRefused,
    StanzaReceived,
    StanzasUnsent,
    StartTLS,
    StreamOpened,
)
from .s2s_stream import (
    NS_BIDI,
    NS_BIDI_FEATURE,
    NS_DIALBACK_FEATURE,
    NS_SASL,
    NS_TLS,
    Input,
    S2SStreamBase,
    db_element,
    dialback_error_condition,
    header_bytes,
)
from .xmlstream import StreamHeader


class OutboundState(enum.Enum):
    # Hashed by identity, in C: the machines look these up for every stanza.
    __hash__ = object.__hash__

    IDLE = "idle"  # constructed; call start() once the transport is connected
    EXPECT_HEADER = "expect-header"
    EXPECT_FEATURES = "expect-features"
    EXPECT_PROCEED = "expect-proceed"
    TLS_HANDSHAKE = "tls-handshake"
    EXPECT_SASL_RESULT = "expect-sasl-result"
    EXPECT_DB_RESULT = "expect-db-result"
    VERIFY_ONLY = "verify-only"  # negotiated, used for <db:verify> only
    READY = "ready"  # authenticated: stanzas flow
    FAILED = "failed"  # authentication refused; closing
    CLOSED = "closed"


S = OutboundState
_TRANSITIONS = {
    (S.EXPECT_HEADER, Input.HEADER): "_on_header",
    (S.EXPECT_FEATURES, Input.FEATURES): "_on_features",
    (S.EXPECT_PROCEED, Input.PROCEED): "_on_proceed",
    (S.EXPECT_PROCEED, Input.TLS_FAILURE): "_on_tls_failure",
    (S.EXPECT_SASL_RESULT, Input.SASL_SUCCESS): "_on_sasl_success",
    (S.EXPECT_SASL_RESULT, Input.SASL_FAILURE): "_on_sasl_failure",
    (S.EXPECT_DB_RESULT, Input.DB_RESULT): "_on_db_result",
    (S.EXPECT_DB_RESULT, Input.DB_VERIFY): "_on_db_verify",
    (S.VERIFY_ONLY, Input.DB_VERIFY): "_on_db_verify",
    (S.READY, Input.DB_VERIFY): "_on_db_verify",
    (S.READY, Input.DB_RESULT): "_on_db_result_late",
    (S.READY, Input.STANZA): "_on_stanza",
}
_NEGOTIATED = frozenset({S.EXPECT_DB_RESULT, S.VERIFY_ONLY, S.READY})


class OutboundStream(S2SStreamBase):
    """Sans-IO outbound s2s stream from ``local`` to ``remote``."""

    State = OutboundState
    _TRANSITIONS = _TRANSITIONS
    _CLOSED_STATES = frozenset({S.CLOSED})

    def __init__(self, config: S2SConfig, local: str, remote: str, now: float,
                 id_factory: Callable[[], str] = lambda: "", *, authenticate: bool = True,
                 have_certificate: bool | None = None) -> None:
        super().__init__(config, now, id_factory)
        self.local = prepare_domain(local)
        self.remote = prepare_domain(remote)
        self.authenticate = authenticate
        self.have_certificate = config.tls if have_certificate is None else have_certificate
        self.state = S.IDLE
        self.stream_id: str | None = None  # the peer's id (dialback keys are bound to it)
        self.method: AuthMethod | None = None
        self.bidi = False
        self._sasl_tried = False
        self._sasl_done = False
        self._offered_dialback = False
        self._queue: list[etree._Element] = []
        self._verifies: dict[tuple[str, str, str], float] = {}  # (originating, receiving, id)
        self._verify_requests: list[etree._Element] = []  # waiting for negotiation
        self._keys = DialbackKeys(config.dialback_secret)
        self.direct_tls = False
        self.peer_certificate = PeerCertificate.none()
        self.must_prove = authenticate and config.requires_secure_auth(self.remote)

    # -- driver API -------------------------------------------------------------------------

    def start(self, now: float, tls: PeerCertificate | None = None) -> None:
        """The transport is connected: open. ``tls``: it runs direct TLS (XEP-0368), the
        handshake is done and this is the verdict on the peer's certificate."""
        self._require_local_use(self.state is S.IDLE, "start")
        self._now = now
        if tls is not None:
            self.direct_tls = self.secure = True
            self.peer_certificate = tls
        self._send_header()
        if tls is not None:
            self._check_certificate()

    def tls_established(self, now: float, peer_certificate: PeerCertificate | None = None) -> None:
        """STARTTLS is done; ``peer_certificate`` is the driver's verdict on the peer's."""
        self._require_local_use(self.state is S.TLS_HANDSHAKE, "tls_established")
        self._now = now
        self.secure = True
        self.peer_certificate = peer_certificate or PeerCertificate.none()
        self._restart_parser()
        self._send_header()
        self._check_certificate()

    def _check_certificate(self) -> None:
        """Secure auth: the peer's certificate must be trusted and name the remote domain."""
        if self.must_prove and not self.peer_certificate.valid_for(self.remote):
            self._refuse_insecure(StreamCondition.NOT_AUTHORIZED, f"its certificate is {self.peer_certificate}")

    def send_stanza(self, element: etree._Element) -> None:
        """Send (or queue until authenticated) a stanza from ``local`` to ``remote``."""
        if self.state in (S.FAILED, S.CLOSED) or self._sent_close or not self.authenticate:
            raise LocalProtocolError(f"stream to {self.remote} cannot carry stanzas ({self.state.value})")
        try:
            sender, recipient = parse_jid(element.get("from", "")), parse_jid(element.get("to", ""))
        except JIDError as exc:
            raise LocalProtocolError(f"stanza with an invalid address: {exc}") from None
        if sender.domain != self.local or recipient.domain != self.remote:
            raise LocalProtocolError(f"stanza {sender.domain}->{recipient.domain} on stream {self.local}->{self.remote}")
        if self.state is S.READY:
            self._write_element(element)
            return
        if len(self._queue) >= self.config.max_queued_stanzas:
            raise LocalProtocolError("outbound queue full")
        self._queue.append(element)

    def verify_key(self, originating: str, receiving: str, stream_id: str, key: str, now: float) -> None:
        """Receiving-server role: ask this (authoritative) peer whether ``key`` is valid."""
        if self.state in (S.FAILED, S.CLOSED) or self._sent_close:
            raise LocalProtocolError("stream is closing")
        self._now = now
        ident = (originating, receiving, stream_id)
        if ident in self._verifies:
            return
        if len(self._verifies) >= self.config.max_pending_verifications:
            raise LocalProtocolError("too many pending verifications")
        self._verifies[ident] = now + self.config.dialback_timeout
        self._deadlines[f"verify {stream_id}"] = min(self._verifies.values())
        el = db_element("verify", receiving, originating, stream_id=stream_id, key=key)
        if self.state in _NEGOTIATED:
            self._write_element(el)
        else:
            self._verify_requests.append(el)

    @property
    def ready(self) -> bool:
        return self.state is S.READY

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- handlers ---------------------------------------------------------------------------

    def _send_header(self) -> None:
        self._write(header_bytes(sender=self.local, recipient=self.remote, stream_id=None, lang=self.config.lang))
        self.state = S.EXPECT_HEADER

    def _on_header(self, header: StreamHeader, now: float) -> OutboundState:
        self._check_header(header)
        frm = header.get("from")
        if frm is not None:
            try:
                if prepare_domain(frm) != self.remote:
                    raise StreamError(StreamCondition.INVALID_FROM, f"expected {self.remote}, got {frm}")
            except JIDError:
                raise StreamError(StreamCondition.INVALID_FROM, "invalid 'from' in stream header") from None
        self.stream_id = header.get("id") or None
        self._events.append(StreamOpened(self.stream_id, frm, header.get("to"), self.secure))
        if header.get("version") is None:
            # A pre-1.0 peer sends no features: dialback is all it speaks.
            if self.must_prove and not self.secure:
                self._refuse_insecure(StreamCondition.POLICY_VIOLATION, "it offers no encryption we can use")
                return S.FAILED
            self._offered_dialback = True
            return self._after_negotiation()
        return S.EXPECT_FEATURES

    def _on_features(self, features: etree._Element, now: float) -> OutboundState:
        starttls = features.find(f"{{{NS_TLS}}}starttls")
        mechanisms = {(m.text or "").strip() for m in features.iterfind(f"{{{NS_SASL}}}mechanisms/{{{NS_SASL}}}mechanism")}
        self._offered_dialback = features.find(f"{{{NS_DIALBACK_FEATURE}}}dialback") is not None or self._offered_dialback
        if not self.secure and starttls is not None and self.config.tls:
            self._write_element(etree.Element(f"{{{NS_TLS}}}starttls", nsmap={None: NS_TLS}))
            return S.EXPECT_PROCEED
        if not self.secure and self.must_prove:
            self._refuse_insecure(StreamCondition.POLICY_VIOLATION, "it offers no encryption we can use")
            return S.FAILED
        if not self.secure and (self.config.require_tls or (starttls is not None and starttls.find(f"{{{NS_TLS}}}required") is not None)):
            raise StreamError(StreamCondition.POLICY_VIOLATION, "TLS required but not available")
        if self.config.bidi and features.find(f"{{{NS_BIDI_FEATURE}}}bidi") is not None and not self.bidi:
            self._write_element(etree.Element(f"{{{NS_BIDI}}}bidi", nsmap={None: NS_BIDI}))
            self.bidi = True
        if self._sasl_done:
            return self._ready(AuthMethod.SASL_EXTERNAL)
        if (self.authenticate and self.secure and self.config.sasl_external and self.have_certificate
                and "EXTERNAL" in mechanisms and not self._sasl_tried):
            self._sasl_tried = True
            auth = etree.Element(f"{{{NS_SASL}}}auth", nsmap={None: NS_SASL}, mechanism="EXTERNAL")
            auth.text = base64.b64encode(self.local.encode("utf-8")).decode("ascii")
            self._write_element(auth)
            return S.EXPECT_SASL_RESULT
        if self.authenticate and not self.config.dialback:
            raise StreamError(StreamCondition.UNSUPPORTED_FEATURE, "no authentication method in common")
        return self._after_negotiation()

    def _after_negotiation(self) -> OutboundState:
        for el in self._verify_requests:
            self._write_element(el)
        self._verify_requests.clear()
        if not self.authenticate:
            self._deadlines.pop("handshake", None)
            return S.VERIFY_ONLY
        if self.stream_id is None:
            raise StreamError(StreamCondition.INVALID_XML, "the peer's stream header has no id; dialback needs one")
        key = self._keys.generate(self.remote, self.local, self.stream_id)
        self._write_element(db_element("result", self.local, self.remote, key=key))
        return S.EXPECT_DB_RESULT

    def _on_proceed(self, element: etree._Element, now: float) -> OutboundState:
        self._events.append(StartTLS(server_side=False))
        return S.TLS_HANDSHAKE

    def _on_tls_failure(self, element: etree._Element, now: float) -> OutboundState:
        # RFC 6120 §5.4.2.2: the receiving entity closes the stream after <failure/>.
        self._fail_auth("STARTTLS refused")
        return S.FAILED

    def _on_sasl_success(self, element: etree._Element, now: float) -> OutboundState:
        self._sasl_done = True
        self._restart_parser()
        self._send_header()
        return S.EXPECT_HEADER

    def _on_sasl_failure(self, element: etree._Element, now: float) -> OutboundState:
        if self.config.dialback:
            return self._after_negotiation()  # XEP-0178 §3: fall back to dialback
        self._fail_auth("SASL EXTERNAL refused")
        return S.FAILED

    def _on_db_result(self, element: etree._Element, now: float) -> OutboundState:
        frm, to = element.get("from", ""), element.get("to", "")
        try:
            if prepare_domain(frm) != self.remote or prepare_domain(to) != self.local:
                raise StreamError(StreamCondition.INVALID_FROM, "db:result for another domain pair")
        except JIDError:
            raise StreamError(StreamCondition.INVALID_FROM, "invalid domain in db:result") from None
        kind = element.get("type")
        if kind == "valid":
            return self._ready(AuthMethod.DIALBACK)
        reason = "key refused" if kind == "invalid" else f"dialback error: {dialback_error_condition(element)}"
        self._fail_auth(reason)
        return S.FAILED

    def _on_db_result_late(self, element: etree._Element, now: float) -> OutboundState:
        return S.READY  # a duplicate answer for a pair already authenticated: harmless

    def _on_db_verify(self, element: etree._Element, now: float) -> OutboundState | None:
        frm, to, sid = element.get("from", ""), element.get("to", ""), element.get("id", "")
        try:
            ident = (prepare_domain(frm), prepare_domain(to), sid)
        except JIDError:
            raise StreamError(StreamCondition.INVALID_FROM, "invalid domain in db:verify") from None
        if self._verifies.pop(ident, None) is None:
            return None  # an answer to nothing we asked: ignore (RFC: do not amplify)
        self._rearm_verify_timer(ident[2])
        kind = element.get("type")
        error = None if kind in ("valid", "invalid") else dialback_error_condition(element)
        self._events.append(KeyVerified(ident[0], ident[1], sid, kind == "valid", error))
        return None

    def _on_stanza(self, element: etree._Element, now: float) -> OutboundState:
        """Only with bidi (XEP-0288): the peer may answer on our stream."""
        if not self.bidi:
            raise StreamError(StreamCondition.UNSUPPORTED_STANZA_TYPE, "stanza on an outbound stream without bidi")
        frm, to = element.get("from"), element.get("to")
        if not frm or not to:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "stanza without from or to")
        try:
            sender, recipient = parse_jid(frm), parse_jid(to)
        except JIDError:
            raise StreamError(StreamCondition.IMPROPER_ADDRESSING, "malformed address") from None
        if sender.domain != self.remote:
            raise StreamError(StreamCondition.INVALID_FROM, f"{sender.domain} is not {self.remote}")
        if recipient.domain != self.local:
            raise StreamError(StreamCondition.HOST_UNKNOWN, f"{recipient.domain} is not {self.local}")
        self._events.append(StanzaReceived(element, sender, recipient))
        return S.READY

    # -- internals --------------------------------------------------------------------------

    def _ready(self, method: AuthMethod) -> OutboundState:
        self.method = method
        self._deadlines.pop("handshake", None)
        self._events.append(Authenticated(self.remote, self.local, method))
        queued, self._queue = self._queue, []
        for el in queued:
            self._write_element(el)
        for el in self._verify_requests:
            self._write_element(el)
        self._verify_requests.clear()
        return S.READY

    def _refuse_insecure(self, condition: StreamCondition, problem: str) -> None:
        self._events.append(SecureAuthRefused(self.remote, self.local, False, problem))
        self._events.append(AuthenticationFailed(self.remote, self.local, f"secure auth: {problem}"))
        self.fail(condition, f"{self.remote} must authenticate with a certificate we trust; {problem}")

    def _fail_auth(self, reason: str) -> None:
        self._events.append(AuthenticationFailed(self.remote, self.local, reason))
        self._send_close(None)

    def _rearm_verify_timer(self, stream_id: str) -> None:
        for name in [n for n in self._deadlines if n.startswith("verify ")]:
            del self._deadlines[name]
        if self._verifies:
            earliest = min(self._verifies.items(), key=lambda kv: kv[1])
            self._deadlines[f"verify {earliest[0][2]}"] = earliest[1]

    def _on_timeout(self, name: str, now: float) -> None:
        if name.startswith("verify "):
            for ident, deadline in list(self._verifies.items()):
                if deadline <= now:
                    del self._verifies[ident]
                    self._events.append(KeyVerified(ident[0], ident[1], ident[2], False, "remote-server-timeout"))
            self._rearm_verify_timer("")
            return
        super()._on_timeout(name, now)

    def _on_closing(self) -> None:
        if self._queue:
            queued, self._queue = self._queue, []
            self._events.append(StanzasUnsent(tuple(queued), "stream closed before it was authenticated"))
        for ident in list(self._verifies):
            self._events.append(KeyVerified(ident[0], ident[1], ident[2], False, "remote-connection-failed"))
        self._verifies.clear()

    def _closed_state(self) -> OutboundState:
        return S.CLOSED

