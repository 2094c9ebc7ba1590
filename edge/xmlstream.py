"""A hardened, incremental XMPP stream parser: bytes in, stream header and stanzas out.

Why expat: it is the parser Prosody and ejabberd use for XMPP, it fires a start tag the
moment its ``>`` arrives (a peer waits for our header right after sending its own), reports
DOCTYPE, comments and processing instructions through their own handlers so they can be
refused before anything in them is expanded, and names its errors precisely. Completed
stanzas are built as lxml elements, which the rest of the edge works with.

RFC 6120 §11.1 restricted XML is enforced: a DOCTYPE (hence any entity declaration, billion
laughs included), comment, processing instruction or non-predefined entity reference ends the
stream with ``restricted-xml``. Bytes that are not UTF-8 (or another encoding announced) end
it with ``unsupported-encoding`` (§4.9.3.22), characters XML forbids with ``not-well-formed``,
an undeclared prefix with ``bad-namespace-prefix``, a first element outside the streams
namespace with ``invalid-namespace``. Every size has a limit from :class:`ParserLimits`: bytes of
one stanza (whatever it is made of: one huge attribute, text or 10,000 nested elements), depth,
attribute count and size, text size, header size. A breach raises :class:`StreamError` with
the condition the stream must be closed with; the parser is then closed for good.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from xml.parsers import expat

from lxml import etree

from .errors import NS_STREAMS, StreamCondition, StreamError

NS_XML = "http://www.w3.org/XML/1998/namespace"

_E = expat.errors
_CODE = _E.codes
_RESTRICTED_CODES = {
    _CODE[_E.XML_ERROR_UNDEFINED_ENTITY],
    _CODE[_E.XML_ERROR_RECURSIVE_ENTITY_REF],
    _CODE[_E.XML_ERROR_BINARY_ENTITY_REF],
    _CODE[_E.XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF],
    _CODE[_E.XML_ERROR_EXTERNAL_ENTITY_HANDLING],
    _CODE[_E.XML_ERROR_ENTITY_DECLARED_IN_PE],
    _CODE[_E.XML_ERROR_NOT_STANDALONE],
}
_ENCODING_CODES = {_CODE[_E.XML_ERROR_UNKNOWN_ENCODING], _CODE[_E.XML_ERROR_INCORRECT_ENCODING]}
_INVALID_TOKEN = _CODE[_E.XML_ERROR_INVALID_TOKEN]
_UNBOUND_PREFIX = _CODE[_E.XML_ERROR_UNBOUND_PREFIX]


def _starts_with_bad_utf8(data: bytes) -> bool:
    """Whether ``data`` opens with a byte sequence that is not UTF-8 (expat reports such
    bytes and characters XML forbids, like NUL, with the same error)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data[:4], final=False)
    except UnicodeDecodeError as exc:
        return exc.start == 0
    return False
_FEED_CHUNK = 64 * 1024  # limits are checked between chunks, so a 10 MB write is cut short early


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Caps on what one peer can make the parser hold. Defaults suit server-to-server traffic."""

    max_stanza_bytes: int = 512 * 1024  # Prosody's s2s default; ejabberd's is smaller
    max_header_bytes: int = 8 * 1024
    max_depth: int = 48  # stanza root is depth 1
    max_attributes: int = 64  # per element
    max_attribute_chars: int = 16 * 1024  # per attribute value
    max_text_chars: int = 512 * 1024  # all character data of one stanza
    max_elements: int = 10_000  # per stanza


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The opening ``<stream:stream>`` tag, with attributes keyed by Clark name."""

    attrs: dict[str, str] = field(hash=False)
    default_ns: str | None
    namespaces: dict[str | None, str] = field(hash=False)

    def get(self, name: str) -> str | None:
        return self.attrs.get(name)

    @property
    def lang(self) -> str | None:
        return self.attrs.get(f"{{{NS_XML}}}lang")


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The peer closed its stream (``</stream:stream>``)."""


Item = StreamHeader | StreamEnd | etree._Element


def _clark(name: str) -> tuple[str, str | None]:
    """expat's ``uri local prefix`` name to (Clark name, prefix)."""
    parts = name.split(" ")
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 2:
        return f"{{{parts[0]}}}{parts[1]}", None
    return f"{{{parts[0]}}}{parts[1]}", parts[2]


class XMLStreamParser:
    """Feed bytes with :meth:`feed`; get a list of completed items back.

    One parser per stream: after a stream restart (STARTTLS, SASL) make a new one. After a
    :class:`StreamError` or :class:`StreamEnd` the parser accepts nothing more.
    """

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self.limits = limits or ParserLimits()
        self._p = expat.ParserCreate("UTF-8", " ")
        self._p.namespace_prefixes = True
        self._p.buffer_text = True
        self._p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._p.StartElementHandler = self._start
        self._p.EndElementHandler = self._end
        self._p.CharacterDataHandler = self._chars
        self._p.StartNamespaceDeclHandler = self._ns_start
        self._p.StartDoctypeDeclHandler = self._doctype
        self._p.EntityDeclHandler = self._entity_decl
        self._p.CommentHandler = self._comment
        self._p.ProcessingInstructionHandler = self._pi
        self._p.XmlDeclHandler = self._xml_decl
        self._p.SkippedEntityHandler = self._skipped_entity
        self._p.ExternalEntityRefHandler = self._external_entity
        self._items: list[Item] = []
        self._fed = 0  # total bytes given to expat
        self._recent = b""  # the last few of them (an invalid sequence may straddle two feeds)
        self._boundary = 0  # byte offset where the pending (incomplete) item began
        self._depth = 0  # 0 outside the stream, 1 inside the header, 2 in a stanza root...
        self._stack: list[etree._Element] = []
        self._pending_ns: dict[str | None, str] = {}
        self._scope_ns: dict[str | None, str] = {}  # declared on the stream header
        self._text_chars = 0
        self._elements = 0
        self._header_seen = False
        self._closed = False
        self._first = True

    @property
    def closed(self) -> bool:
        return self._closed

    def feed(self, data: bytes) -> list[Item]:
        """Parse ``data``; return completed items in order. Raises :class:`StreamError`."""
        if self._closed:
            if data.strip():
                raise StreamError(StreamCondition.NOT_WELL_FORMED, "data after the stream was closed")
            return []
        if self._first and data:
            self._check_encoding_signature(data)
        chunk = b""
        try:
            for start in range(0, len(data), _FEED_CHUNK):
                chunk = data[start : start + _FEED_CHUNK]
                self._p.Parse(chunk, False)
                self._fed += len(chunk)
                self._recent = (self._recent + chunk)[-4:]
                self._check_pending()
                if self._closed:
                    rest = data[start + len(chunk) :]
                    if rest.strip():
                        raise StreamError(StreamCondition.NOT_WELL_FORMED, "data after the stream was closed")
                    break
        except StreamError:
            self._shutdown()
            raise
        except expat.ExpatError as exc:
            self._shutdown()
            # The bytes at the error, which may have begun in the previous chunk.
            window, at = self._recent + chunk, self._p.ErrorByteIndex - (self._fed - len(self._recent))
            raise self._map_expat(exc, window[at:] if 0 <= at < len(window) else b"") from None
        items, self._items = self._items, []
        return items

    # -- checks -----------------------------------------------------------------------------

    def _check_encoding_signature(self, data: bytes) -> None:
        self._first = False
        head = data[:2]
        if head in (b"\xff\xfe", b"\xfe\xff") or (len(head) == 2 and 0 in head):
            self._shutdown()
            raise StreamError(StreamCondition.UNSUPPORTED_ENCODING, "only UTF-8 is supported")

    def _check_pending(self) -> None:
        pending = self._fed - self._boundary
        if not self._header_seen:
            if pending > self.limits.max_header_bytes:
                raise StreamError(StreamCondition.POLICY_VIOLATION, "stream header too large")
        elif pending > self.limits.max_stanza_bytes:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "stanza too large", app="stanza-too-big")

    def _map_expat(self, exc: expat.ExpatError, at_error: bytes) -> StreamError:
        if exc.code in _RESTRICTED_CODES:
            return StreamError(StreamCondition.RESTRICTED_XML, "entity references are not allowed")
        if exc.code in _ENCODING_CODES:
            return StreamError(StreamCondition.UNSUPPORTED_ENCODING, "only UTF-8 is supported")
        if exc.code == _INVALID_TOKEN and _starts_with_bad_utf8(at_error):
            return StreamError(StreamCondition.UNSUPPORTED_ENCODING, "invalid UTF-8")
        if exc.code == _UNBOUND_PREFIX:
            return StreamError(StreamCondition.BAD_NAMESPACE_PREFIX, "undeclared namespace prefix")
        return StreamError(StreamCondition.NOT_WELL_FORMED, expat.ErrorString(exc.code))

    def take_completed(self) -> list[Item]:
        """Items completed before the error that closed the parser (to process them first)."""
        items, self._items = self._items, []
        return items

    def _shutdown(self) -> None:
        self._closed = True
        self._stack.clear()
        for name in ("StartElementHandler", "EndElementHandler", "CharacterDataHandler"):
            setattr(self._p, name, None)

    # -- handlers ---------------------------------------------------------------------------

    def _doctype(self, *args: object) -> None:
        raise StreamError(StreamCondition.RESTRICTED_XML, "DOCTYPE is not allowed")

    def _entity_decl(self, *args: object) -> None:
        raise StreamError(StreamCondition.RESTRICTED_XML, "entity declarations are not allowed")

    def _comment(self, data: str) -> None:
        raise StreamError(StreamCondition.RESTRICTED_XML, "comments are not allowed")

    def _pi(self, target: str, data: str) -> None:
        raise StreamError(StreamCondition.RESTRICTED_XML, "processing instructions are not allowed")

    def _skipped_entity(self, name: str, is_pe: bool) -> None:
        raise StreamError(StreamCondition.RESTRICTED_XML, "entity references are not allowed")

    def _external_entity(self, *args: object) -> int:
        raise StreamError(StreamCondition.RESTRICTED_XML, "external entities are not allowed")

    def _xml_decl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise StreamError(StreamCondition.UNSUPPORTED_ENCODING, "only UTF-8 is supported")
        if version not in (None, "1.0"):
            raise StreamError(StreamCondition.UNSUPPORTED_VERSION, "XML 1.0 only")

    def _ns_start(self, prefix: str | None, uri: str | None) -> None:
        if len(self._pending_ns) >= self.limits.max_attributes:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "too many namespace declarations")
        self._pending_ns[prefix or None] = uri or ""

    def _attrs(self, attrs: dict[str, str]) -> dict[str, str]:
        limits = self.limits
        if len(attrs) > limits.max_attributes:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "too many attributes")
        out = {}
        for name, value in attrs.items():
            if len(value) > limits.max_attribute_chars:
                raise StreamError(StreamCondition.POLICY_VIOLATION, "attribute value too large")
            out[_clark(name)[0] if " " in name else name] = value
        return out

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self._depth += 1
        declared, self._pending_ns = self._pending_ns, {}
        tag, prefix = _clark(name)
        if self._depth == 1:
            self._header(tag, attrs, declared)
            return
        if self._depth - 1 > self.limits.max_depth:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "elements nested too deeply")
        self._elements += 1
        if self._elements > self.limits.max_elements:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "too many elements in one stanza")
        values = self._attrs(attrs)
        if self._depth == 2:
            nsmap = dict(declared)
            if tag.startswith("{"):
                uri = tag[1 : tag.index("}")]
                if uri not in nsmap.values() and prefix not in nsmap:
                    nsmap[prefix] = uri
            el = etree.Element(tag, values, nsmap=nsmap or None)
        else:
            el = etree.SubElement(self._stack[-1], tag, values, nsmap=declared or None)
        self._stack.append(el)

    def _header(self, tag: str, attrs: dict[str, str], declared: dict[str | None, str]) -> None:
        if tag != f"{{{NS_STREAMS}}}stream":
            if not tag.startswith(f"{{{NS_STREAMS}}}"):  # RFC 6120 §4.8.1
                raise StreamError(StreamCondition.INVALID_NAMESPACE, "stream namespace must be " + NS_STREAMS)
            raise StreamError(StreamCondition.BAD_FORMAT, "the stream must open with <stream:stream>")
        self._header_seen = True
        self._scope_ns = declared
        values = self._attrs(attrs)
        self._items.append(StreamHeader(values, declared.get(None), dict(declared)))
        self._boundary = self._p.CurrentByteIndex + 1

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._items.append(StreamEnd())
            self._closed = True
            return
        el = self._stack.pop()
        if self._depth == 1:
            self._items.append(el)
            self._text_chars = 0
            self._elements = 0
            self._boundary = max(self._boundary, self._p.CurrentByteIndex)

    def _chars(self, data: str) -> None:
        if self._depth <= 1:
            if data.strip():
                raise StreamError(StreamCondition.BAD_FORMAT, "text at stream level")
            if self._depth == 1 and not self._stack:  # whitespace keepalive between stanzas
                self._boundary = max(self._boundary, self._p.CurrentByteIndex + len(data))
            return
        self._text_chars += len(data)
        if self._text_chars > self.limits.max_text_chars:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "stanza text too large", app="stanza-too-big")
        el = self._stack[-1]
        if len(el):
            last = el[-1]
            last.tail = (last.tail or "") + data
        else:
            el.text = (el.text or "") + data
