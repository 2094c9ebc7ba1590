"""What inbound and outbound s2s streams share: parsing, writing, errors, closing, timers.

Rule 1 (as in h11): everything that moves a stream machine lives in its transition table.
Each machine has an Enum of states and a table ``(state, Input) -> handler``; the handler
does the side effects and returns the next state. A top-level element whose (state, input)
pair is not in the table is a protocol violation and closes the stream with a stream error.

The machines are sans-IO: ``receive_data(bytes, now)`` in, ``data_to_send()`` and
``next_events()`` out, ``get_timer()``/``handle_timer(now)`` for every timeout. They never
read a clock, open a socket or start TLS themselves; they *say* when TLS must start, and
when the driver should pause reading (``read_resume_at()``: the peer is over its byte rate,
see :mod:`edge.rate_limit`; one that stays over it gets ``policy-violation``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import ClassVar
from xml.sax.saxutils import quoteattr

from lxml import etree

from .errors import NS_STREAMS, LocalProtocolError, StreamCondition, StreamError, parse_stream_error, stream_error_element
from .rate_limit import ByteRateLimiter
from .s2s_events import Event, S2SConfig, StreamClosed, StreamErrorReceived
from .xmlstream import RawStanza, StreamEnd, StreamHeader, XMLStreamParser

NS_SERVER = "jabber:server"
NS_DIALBACK = "jabber:server:dialback"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_DIALBACK_FEATURE = "urn:xmpp:features:dialback"
NS_BIDI_FEATURE = "urn:xmpp:features:bidi"
NS_BIDI = "urn:xmpp:bidi"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Input(enum.Enum):
    """What a received top-level item is, as far as the state machines care."""

    # Hashed by identity, in C: the machines look these up for every stanza.
    __hash__ = object.__hash__

    HEADER = "header"
    FEATURES = "features"
    STARTTLS = "starttls"
    PROCEED = "proceed"
    TLS_FAILURE = "tls-failure"
    SASL_AUTH = "sasl-auth"
    SASL_SUCCESS = "sasl-success"
    SASL_FAILURE = "sasl-failure"
    DB_RESULT = "db-result"
    DB_VERIFY = "db-verify"
    BIDI = "bidi"
    STANZA = "stanza"
    STREAM_ERROR = "stream-error"
    STREAM_END = "stream-end"
    OTHER = "other"


_CLASSIFY = {
    f"{{{NS_STREAMS}}}features": Input.FEATURES,
    f"{{{NS_STREAMS}}}error": Input.STREAM_ERROR,
    f"{{{NS_TLS}}}starttls": Input.STARTTLS,
    f"{{{NS_TLS}}}proceed": Input.PROCEED,
    f"{{{NS_TLS}}}failure": Input.TLS_FAILURE,
    f"{{{NS_SASL}}}auth": Input.SASL_AUTH,
    f"{{{NS_SASL}}}success": Input.SASL_SUCCESS,
    f"{{{NS_SASL}}}failure": Input.SASL_FAILURE,
    f"{{{NS_DIALBACK}}}result": Input.DB_RESULT,
    f"{{{NS_DIALBACK}}}verify": Input.DB_VERIFY,
    f"{{{NS_BIDI}}}bidi": Input.BIDI,
    f"{{{NS_SERVER}}}message": Input.STANZA,
    f"{{{NS_SERVER}}}presence": Input.STANZA,
    f"{{{NS_SERVER}}}iq": Input.STANZA,
}


# Stanzas reach the machines unbuilt (addresses and bytes only): see xmlstream.RawStanza.
LAZY_STANZAS = frozenset({f"{{{NS_SERVER}}}message", f"{{{NS_SERVER}}}presence", f"{{{NS_SERVER}}}iq"})


def classify(item: object) -> Input:
    if isinstance(item, StreamHeader):
        return Input.HEADER
    if isinstance(item, StreamEnd):
        return Input.STREAM_END
    return _CLASSIFY.get(item.tag, Input.OTHER)  # type: ignore[union-attr]


def header_bytes(*, sender: str | None, recipient: str | None, stream_id: str | None,
                 lang: str, version: bool = True) -> bytes:
    """Our ``<stream:stream>`` opening tag (with the XML declaration)."""
    attrs = [
        "xmlns='jabber:server'",
        f"xmlns:stream='{NS_STREAMS}'",
        f"xmlns:db='{NS_DIALBACK}'",
    ]
    for name, value in (("from", sender), ("to", recipient), ("id", stream_id)):
        if value is not None:
            attrs.append(f"{name}={quoteattr(value)}")
    if version:
        attrs.append("version='1.0'")
    attrs.append(f"xml:lang={quoteattr(lang)}")
    return ("<?xml version='1.0'?><stream:stream " + " ".join(attrs) + ">").encode("utf-8")


CLOSE_TAG = b"</stream:stream>"


class S2SStreamBase:
    """Shared mechanics; subclasses define ``State``, ``_TRANSITIONS`` and the handlers."""

    _TRANSITIONS: ClassVar[dict[tuple[enum.Enum, Input], str]] = {}
    _CLOSED_STATES: ClassVar[frozenset[enum.Enum]] = frozenset()

    def __init__(self, config: S2SConfig, now: float, id_factory: Callable[[], str]) -> None:
        self.config = config
        self._id_factory = id_factory
        self._parser = XMLStreamParser(config.limits, lazy=LAZY_STANZAS)
        self._rate = ByteRateLimiter(config.rate, now)  # across restarts: one budget per connection
        self._out = bytearray()
        self._events: list[Event] = []
        self._deadlines: dict[str, float] = {"handshake": now + config.handshake_timeout}
        self.secure = False
        self.error_sent: str | None = None
        self._sent_close = False
        self._got_close = False
        self._now = now
        self._closed_event = False
        self.state: enum.Enum

    # -- driver API -------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the transport; ``b""`` means the peer closed its end."""
        self._now = now
        if self.state in self._CLOSED_STATES:
            return
        if not data:
            self._got_close = True
            self._finish(by_peer=True)
            return
        if self._sent_close and self._got_close:
            return
        try:
            self._rate.consume(len(data), now)
        except StreamError as exc:
            self.fail(exc.condition, exc.text, exc.app)
            return
        try:
            items = self._parser.feed(data)
        except StreamError as exc:
            self._process_items(self._parser_salvage(), now)
            self.fail(exc.condition, exc.text, exc.app)
            return
        self._process_items(items, now)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def read_resume_at(self) -> float | None:
        """When the driver may read from the peer again (it is over its byte rate), or None
        to read now. Timers still fire meanwhile."""
        if self.state in self._CLOSED_STATES:
            return None
        return self._rate.resume_at()

    def get_timer(self) -> float | None:
        if self.state in self._CLOSED_STATES:
            return None
        return min(self._deadlines.values(), default=None)

    def handle_timer(self, now: float) -> None:
        self._now = now
        for name, when in sorted(self._deadlines.items(), key=lambda kv: kv[1]):
            if when <= now and self.state not in self._CLOSED_STATES:
                del self._deadlines[name]
                self._on_timeout(name, now)

    @property
    def closed(self) -> bool:
        return self.state in self._CLOSED_STATES

    def close(self, condition: StreamCondition | None = None, text: str = "") -> None:
        """Close our side, with a stream error if ``condition`` is given."""
        if self.state in self._CLOSED_STATES:
            return
        if condition is not None:
            self.fail(condition, text)
        else:
            self._send_close(None)

    def fail(self, condition: StreamCondition, text: str = "", app: str | None = None) -> None:
        """Send a stream error and close the stream (RFC 6120 §4.9.1.1)."""
        if self.state in self._CLOSED_STATES or self._sent_close:
            return
        self._ensure_header_sent()
        self.error_sent = condition.value
        self._write_element(stream_error_element(condition, text, app))
        self._send_close(condition.value)
        # After a stream error there is nothing more to read: the stream is unusable.
        self._finish(by_peer=False)

    # -- for subclasses ---------------------------------------------------------------------

    def _ensure_header_sent(self) -> None:
        """Inbound streams must answer with a header before any error (RFC 6120 §4.9.1.2)."""

    def _parser_salvage(self) -> list:
        return self._parser.take_completed()

    def _write(self, data: bytes) -> None:
        if not self._sent_close:
            self._out += data

    def _write_element(self, element: etree._Element) -> None:
        self._write(etree.tostring(element, encoding="utf-8"))

    def _restart_parser(self) -> None:
        self._parser = XMLStreamParser(self.config.limits, lazy=LAZY_STANZAS)

    def _send_close(self, error: str | None) -> None:
        if self._sent_close:
            return
        self._write(CLOSE_TAG)
        self._sent_close = True
        self._on_closing()
        self._deadlines = {"close": self._now + self.config.close_timeout}

    def _on_closing(self) -> None:
        """Hook: the stream will carry nothing more (outbound returns its queue)."""

    def _finish(self, by_peer: bool) -> None:
        if not self._sent_close:
            self._write(CLOSE_TAG)
            self._sent_close = True
            self._on_closing()
        self._deadlines.clear()
        self.state = self._closed_state()
        if not self._closed_event:
            self._closed_event = True
            self._events.append(StreamClosed(self.error_sent, by_peer))

    def _closed_state(self) -> enum.Enum:
        raise NotImplementedError

    def _on_timeout(self, name: str, now: float) -> None:
        if name == "close":
            self._finish(by_peer=False)
        elif name == "handshake":
            self.fail(StreamCondition.CONNECTION_TIMEOUT, "authentication did not complete in time")

    def _process_items(self, items: list, now: float) -> None:
        for item in items:
            if self.state in self._CLOSED_STATES:
                return
            kind = Input.STANZA if type(item) is RawStanza else classify(item)
            if kind is Input.STREAM_ERROR:
                condition, text = parse_stream_error(item)
                self._events.append(StreamErrorReceived(condition, text))
                self._got_close = True
                self._finish(by_peer=True)
                return
            if kind is Input.STREAM_END:
                self._got_close = True
                self._send_close(None)
                self._finish(by_peer=True)
                return
            if self._sent_close:
                continue  # RFC 6120 §4.4: after our close we may ignore what still arrives
            handler = self._TRANSITIONS.get((self.state, kind))
            if handler is None:
                self._unexpected(kind, item)
                return
            try:
                new_state = getattr(self, handler)(item, now)
            except StreamError as exc:
                self.fail(exc.condition, exc.text, exc.app)
                return
            if self.state not in self._CLOSED_STATES and new_state is not None:
                self.state = new_state

    def _unexpected(self, kind: Input, item: object) -> None:
        if kind is Input.STANZA:
            self.fail(StreamCondition.NOT_AUTHORIZED, "stanza before authentication")
        elif kind is Input.OTHER:
            self.fail(StreamCondition.UNSUPPORTED_STANZA_TYPE, f"unexpected element {getattr(item, 'tag', '?')}")
        elif kind is Input.HEADER:
            self.fail(StreamCondition.NOT_WELL_FORMED, "second stream header")
        else:
            self.fail(StreamCondition.POLICY_VIOLATION, f"unexpected {kind.value} in state {self.state.value}")

    def _check_header(self, header: StreamHeader) -> None:
        if header.default_ns != NS_SERVER:
            raise StreamError(StreamCondition.INVALID_NAMESPACE, "content namespace must be jabber:server")
        version = header.get("version")
        if version is not None:
            major = version.split(".", 1)[0]
            if not major.isdigit() or int(major) != 1:
                raise StreamError(StreamCondition.UNSUPPORTED_VERSION, "XMPP 1.x only")

    def _require_local_use(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise LocalProtocolError(f"{what} not allowed in state {self.state.value}")


def db_element(kind: str, sender: str, recipient: str, *, type: str | None = None,
               stream_id: str | None = None, key: str | None = None,
               error: str | None = None, error_type: str = "cancel") -> etree._Element:
    """``<db:result>`` or ``<db:verify>`` (XEP-0220), with an optional error condition."""
    el = etree.Element(f"{{{NS_DIALBACK}}}{kind}", nsmap={"db": NS_DIALBACK})
    el.set("from", sender)
    el.set("to", recipient)
    if stream_id is not None:
        el.set("id", stream_id)
    if type is not None:
        el.set("type", type)
    if key is not None:
        el.text = key
    if error is not None:
        err = etree.SubElement(el, f"{{{NS_DIALBACK}}}error")
        err.set("type", error_type)
        etree.SubElement(err, f"{{{NS_STANZAS}}}{error}", nsmap={None: NS_STANZAS})
    return el


def dialback_error_condition(element: etree._Element) -> str:
    for err in element:
        if isinstance(err.tag, str) and err.tag.endswith("}error"):
            for cond in err:
                if isinstance(cond.tag, str):
                    return etree.QName(cond).localname
    return "undefined-condition"
