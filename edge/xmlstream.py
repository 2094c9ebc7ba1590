"""A hardened, incremental XMPP stream parser: bytes in, stream header and stanzas out.

Why expat: it is the parser Prosody and ejabberd use for XMPP, it fires a start tag the
moment its ``>`` arrives (a peer waits for our header right after sending its own), reports
DOCTYPE, comments and processing instructions through their own handlers so they can be
refused before anything in them is expanded, and names its errors precisely.

Why two parsers: expat's Python callbacks only check structure and limits (they are the
per-element cost, so they do as little as possible); each completed top-level element is
then built in C by lxml from its own bytes, cut out of the stream by expat's byte offsets and
wrapped in the namespace declarations of the stream header it inherits. Those bytes are kept
(:attr:`XMLStreamParser.raw`): the edge forwards a stanza into the ring as it arrived,
without serialising it again.

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
from xml.sax.saxutils import quoteattr

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
# Fragments are well-formed already (expat checked them, with no DTD, entity or comment).
_FRAGMENT_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                                   collect_ids=False, remove_blank_text=False)


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


class RawStanza:
    """A top-level element not built yet: its Clark tag, its root's attributes (as expat
    names them: plain names for unprefixed ones) and its bytes, which need no namespace
    declaration but the stream's default. :attr:`element` builds it, once, when someone needs
    more than its addresses: an edge that only forwards a stanza never pays for the tree."""

    __slots__ = ("tag", "attrib", "raw", "_head", "_element")

    def __init__(self, tag: str, attrib: dict[str, str], raw: bytes, head: bytes) -> None:
        self.tag = tag
        self.attrib = attrib
        self.raw = raw
        self._head = head
        self._element: etree._Element | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.attrib.get(name, default)

    @property
    def element(self) -> etree._Element:
        if self._element is None:
            self._element = etree.fromstring(self._head + self.raw + b"</w>", _FRAGMENT_PARSER)[0]
        return self._element

    def __repr__(self) -> str:
        return f"<RawStanza {self.tag} {len(self.raw)} bytes>"


Item = StreamHeader | StreamEnd | etree._Element | RawStanza


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

    def __init__(self, limits: ParserLimits | None = None, *, lazy: frozenset[str] = frozenset()) -> None:
        """``lazy``: Clark tags of top-level elements to hand out as :class:`RawStanza`
        (when their bytes need only the stream's default namespace)."""
        self.limits = limits or ParserLimits()
        self.lazy = lazy
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
        self.raw: dict[int, bytes] = {}  # id(element) -> its bytes, for the items of the last feed
        self._fed = 0  # total bytes given to expat
        self._recent = b""  # the last few of them (an invalid sequence may straddle two feeds)
        self._boundary = 0  # byte offset where the pending (incomplete) item began
        self._depth = 0  # 0 outside the stream, 1 inside the header, 2 in a stanza root...
        self._pending_ns: dict[str | None, str] = {}
        self._ns_count = 0  # namespace declarations on the element being opened
        self._scope_ns: dict[str | None, str] = {}  # declared on the stream header
        self._wrap_default = b"<w>"  # opens a fragment in the header's default namespace
        self._wrap_prefixes: list[tuple[bytes, bytes]] = []  # (b"p:", b" xmlns:p='uri'")
        self._win = b""  # the bytes of this feed, after those of an unfinished item
        self._win_base = 0  # stream offset of self._win[0]
        self._carry = b""  # bytes of the unfinished item, kept for the next feed
        self._item_start = 0  # stream offset where the open top-level element began
        self._item_qname = b""  # its name as written (prefix:local), to find its end tag
        self._item_tag = ""  # its Clark name, when it may be handed out unbuilt (lazy)
        self._item_attrs: dict[str, str] = {}
        self._names: dict[str, tuple[str, bytes]] = {}  # expat name -> (Clark name, qname)
        self._resume = 0  # stream offset after the last complete item: the next begins later
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
        self.raw = {}
        carry = self._carry
        self._win = carry + data if carry else data
        self._win_base = self._fed - len(carry)
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
        # Keep the bytes of the item in progress (expat may hold part of a tag unreported).
        keep = self._item_start if self._depth >= 2 else self._resume
        carry = self._win[max(keep - self._win_base, 0):]
        if self._depth < 2 and carry[:1].isspace():  # keepalives between items: nothing to keep
            stripped = carry.lstrip()
            self._resume += len(carry) - len(stripped)
            carry = stripped
        self._carry = carry
        self._win = b""
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
        self._carry = self._win = b""
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
        self._ns_count += 1
        if self._ns_count > self.limits.max_attributes:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "too many namespace declarations")
        if self._depth == 0:  # declarations of the stream header: fragments inherit them
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
        depth = self._depth = self._depth + 1
        self._ns_count = 0
        limits = self.limits
        if depth == 1:
            declared, self._pending_ns = self._pending_ns, {}
            self._header(_clark(name)[0], attrs, declared)
            return
        if depth - 1 > limits.max_depth:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "elements nested too deeply")
        self._elements += 1
        if self._elements > limits.max_elements:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "too many elements in one stanza")
        if attrs:
            if len(attrs) > limits.max_attributes:
                raise StreamError(StreamCondition.POLICY_VIOLATION, "too many attributes")
            cap = limits.max_attribute_chars
            for value in attrs.values():
                if len(value) > cap:
                    raise StreamError(StreamCondition.POLICY_VIOLATION, "attribute value too large")
        if depth == 2:
            self._item_start = self._p.CurrentByteIndex
            known = self._names.get(name)
            if known is None:
                parts = name.split(" ")
                qname = f"{parts[2]}:{parts[1]}" if len(parts) == 3 else parts[-1]
                known = (_clark(name)[0], qname.encode("utf-8"))
                if len(self._names) < 256:
                    self._names[name] = known
            tag, self._item_qname = known
            if tag in self.lazy:
                self._item_tag, self._item_attrs = tag, attrs
            else:
                self._item_tag = ""

    def _header(self, tag: str, attrs: dict[str, str], declared: dict[str | None, str]) -> None:
        if tag != f"{{{NS_STREAMS}}}stream":
            if not tag.startswith(f"{{{NS_STREAMS}}}"):  # RFC 6120 §4.8.1
                raise StreamError(StreamCondition.INVALID_NAMESPACE, "stream namespace must be " + NS_STREAMS)
            raise StreamError(StreamCondition.BAD_FORMAT, "the stream must open with <stream:stream>")
        self._header_seen = True
        self._scope_ns = declared
        default = declared.get(None)
        self._wrap_default = b"<w xmlns=" + quoteattr(default).encode("utf-8") + b">" if default else b"<w>"
        self._wrap_prefixes = [(f"{p}:".encode("utf-8"), f" xmlns:{p}={quoteattr(uri)}".encode("utf-8"))
                               for p, uri in declared.items() if p is not None]
        values = self._attrs(attrs)
        self._items.append(StreamHeader(values, declared.get(None), dict(declared)))
        self._boundary = self._p.CurrentByteIndex + 1

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._items.append(StreamEnd())
            self._closed = True
            return
        if self._depth == 1:
            at = self._p.CurrentByteIndex
            self._items.append(self._complete(at))
            self._text_chars = 0
            self._elements = 0
            self._boundary = max(self._boundary, at)

    def _complete(self, at: int) -> etree._Element | RawStanza:
        """Build the top-level element that just closed from its bytes.

        expat's offset for an end event is where the end tag begins, or, for an element
        written empty (``<presence/>``), where its tag ended: an end tag of the element's own
        name at the offset tells the two apart."""
        win, base = self._win, self._win_base
        start, end = self._item_start - base, at - base
        qname = self._item_qname
        if win.startswith(b"</", end) and win.startswith(qname, end + 2) and \
                win[end + 2 + len(qname):end + 3 + len(qname)] in (b">", b" ", b"\t", b"\r", b"\n"):
            end = win.index(b">", end) + 1
        self._resume = base + end
        raw = win[start:end]
        head = self._wrap_default
        if self._wrap_prefixes and b":" in raw:  # no colon: no prefix is used
            extra = [decl for prefix, decl in self._wrap_prefixes if prefix in raw]
            if extra:
                head = head[:-1] + b"".join(extra) + b">"
        if self._item_tag and head is self._wrap_default:
            return RawStanza(self._item_tag, self._item_attrs, raw, head)
        try:
            el = etree.fromstring(head + raw + b"</w>", _FRAGMENT_PARSER)[0]
        except (etree.XMLSyntaxError, IndexError):
            raise StreamError(StreamCondition.NOT_WELL_FORMED, "malformed element") from None
        if head is self._wrap_default:
            self.raw[id(el)] = raw  # it needs no declaration but the default namespace
        return el

    def _chars(self, data: str) -> None:
        if self._depth <= 1:
            if data.strip():
                raise StreamError(StreamCondition.BAD_FORMAT, "text at stream level")
            if self._depth == 1:  # whitespace keepalive between stanzas
                self._boundary = max(self._boundary, self._p.CurrentByteIndex + len(data))
            return
        self._text_chars += len(data)
        if self._text_chars > self.limits.max_text_chars:
            raise StreamError(StreamCondition.POLICY_VIOLATION, "stanza text too large", app="stanza-too-big")
