"""RFC 6120 stream and stanza errors: the conditions, the exceptions that carry them, builders.

Why one module: the parser, the stream machines, the router and the services all end in the
same two wire answers (a stream error that closes the stream, a stanza error that bounces
one stanza), so the condition names are Enums here and nowhere else spelled as strings.
"""

from __future__ import annotations

import enum

from lxml import etree

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_XMPP_ERRORS = "urn:xmpp:errors"  # XEP-0205-style application conditions (stanza-too-big)


class StreamCondition(enum.Enum):
    """RFC 6120 §4.9.3: every defined stream error condition."""

    BAD_FORMAT = "bad-format"
    BAD_NAMESPACE_PREFIX = "bad-namespace-prefix"
    CONFLICT = "conflict"
    CONNECTION_TIMEOUT = "connection-timeout"
    HOST_GONE = "host-gone"
    HOST_UNKNOWN = "host-unknown"
    IMPROPER_ADDRESSING = "improper-addressing"
    INTERNAL_SERVER_ERROR = "internal-server-error"
    INVALID_FROM = "invalid-from"
    INVALID_NAMESPACE = "invalid-namespace"
    INVALID_XML = "invalid-xml"
    NOT_AUTHORIZED = "not-authorized"
    NOT_WELL_FORMED = "not-well-formed"
    POLICY_VIOLATION = "policy-violation"
    REMOTE_CONNECTION_FAILED = "remote-connection-failed"
    RESET = "reset"
    RESOURCE_CONSTRAINT = "resource-constraint"
    RESTRICTED_XML = "restricted-xml"
    SEE_OTHER_HOST = "see-other-host"
    SYSTEM_SHUTDOWN = "system-shutdown"
    UNDEFINED_CONDITION = "undefined-condition"
    UNSUPPORTED_ENCODING = "unsupported-encoding"
    UNSUPPORTED_FEATURE = "unsupported-feature"
    UNSUPPORTED_STANZA_TYPE = "unsupported-stanza-type"
    UNSUPPORTED_VERSION = "unsupported-version"


class StanzaCondition(enum.Enum):
    """RFC 6120 §8.3.3 stanza error conditions, with the error type each normally carries."""

    BAD_REQUEST = ("bad-request", "modify")
    CONFLICT = ("conflict", "cancel")
    FEATURE_NOT_IMPLEMENTED = ("feature-not-implemented", "cancel")
    FORBIDDEN = ("forbidden", "auth")
    GONE = ("gone", "cancel")
    INTERNAL_SERVER_ERROR = ("internal-server-error", "cancel")
    ITEM_NOT_FOUND = ("item-not-found", "cancel")
    JID_MALFORMED = ("jid-malformed", "modify")
    NOT_ACCEPTABLE = ("not-acceptable", "modify")
    NOT_ALLOWED = ("not-allowed", "cancel")
    NOT_AUTHORIZED = ("not-authorized", "auth")
    POLICY_VIOLATION = ("policy-violation", "modify")
    RECIPIENT_UNAVAILABLE = ("recipient-unavailable", "wait")
    REDIRECT = ("redirect", "modify")
    REGISTRATION_REQUIRED = ("registration-required", "auth")
    REMOTE_SERVER_NOT_FOUND = ("remote-server-not-found", "cancel")
    REMOTE_SERVER_TIMEOUT = ("remote-server-timeout", "wait")
    RESOURCE_CONSTRAINT = ("resource-constraint", "wait")
    SERVICE_UNAVAILABLE = ("service-unavailable", "cancel")
    SUBSCRIPTION_REQUIRED = ("subscription-required", "auth")
    UNDEFINED_CONDITION = ("undefined-condition", "cancel")
    UNEXPECTED_REQUEST = ("unexpected-request", "wait")

    @property
    def tag(self) -> str:
        return self.value[0]

    @property
    def default_type(self) -> str:
        return self.value[1]


class StreamError(Exception):
    """The peer broke the stream protocol; the stream must be closed with this condition."""

    def __init__(self, condition: StreamCondition, text: str = "", app: str | None = None):
        super().__init__(f"{condition.value}: {text}" if text else condition.value)
        self.condition = condition
        self.text = text
        self.app = app  # local name of an application condition in urn:xmpp:errors


class LocalProtocolError(Exception):
    """This side misused the API (e.g. sent a stanza before the stream was ready)."""


def stream_error_element(condition: StreamCondition, text: str = "", app: str | None = None) -> etree._Element:
    """``<stream:error>`` with the condition, optional text and application condition."""
    err = etree.Element(f"{{{NS_STREAMS}}}error", nsmap={"stream": NS_STREAMS})
    etree.SubElement(err, f"{{{NS_STREAM_ERRORS}}}{condition.value}", nsmap={None: NS_STREAM_ERRORS})
    if text:
        t = etree.SubElement(err, f"{{{NS_STREAM_ERRORS}}}text", nsmap={None: NS_STREAM_ERRORS})
        t.text = text
    if app:
        etree.SubElement(err, f"{{{NS_XMPP_ERRORS}}}{app}", nsmap={None: NS_XMPP_ERRORS})
    return err


def parse_stream_error(element: etree._Element) -> tuple[str, str]:
    """(condition, text) from a received ``<stream:error>``; unknown shapes give undefined-condition."""
    condition, text = StreamCondition.UNDEFINED_CONDITION.value, ""
    for child in element:
        if not isinstance(child.tag, str):
            continue
        q = etree.QName(child)
        if q.namespace == NS_STREAM_ERRORS:
            if q.localname == "text":
                text = (child.text or "")[:1024]
            else:
                condition = q.localname
    return condition, text


def stanza_error_reply(
    stanza: etree._Element,
    condition: StanzaCondition,
    text: str = "",
    by: str | None = None,
) -> etree._Element | None:
    """The error reply to ``stanza`` (from/to swapped, same id and kind), or None.

    RFC 6120 §8.3.1: an entity never answers an error stanza with an error, so a stanza of
    type ``error`` yields None. The original payload is not echoed back (it could be large
    and the RFC allows leaving it out).
    """
    if stanza.get("type") == "error":
        return None
    reply = etree.Element(stanza.tag, nsmap={None: etree.QName(stanza).namespace} if etree.QName(stanza).namespace else None)
    if stanza.get("id") is not None:
        reply.set("id", stanza.get("id"))
    if stanza.get("to") is not None:
        reply.set("from", stanza.get("to"))
    if stanza.get("from") is not None:
        reply.set("to", stanza.get("from"))
    reply.set("type", "error")
    err = etree.SubElement(reply, reply.tag.rsplit("}", 1)[0] + "}error" if reply.tag.startswith("{") else "error")
    err.set("type", condition.default_type)
    if by:
        err.set("by", by)
    etree.SubElement(err, f"{{{NS_STANZA_ERRORS}}}{condition.tag}", nsmap={None: NS_STANZA_ERRORS})
    if text:
        t = etree.SubElement(err, f"{{{NS_STANZA_ERRORS}}}text", nsmap={None: NS_STANZA_ERRORS})
        t.text = text
    return reply
