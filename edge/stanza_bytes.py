"""Stanzas out of the bytes a ring payload carries: one at a time, or a node's whole batch in
one parse.

A stanza travels the ring as the bytes an edge received it as (or as the ring serialised
it): one element, in jabber:server unless it declares otherwise, no DTD, comment, CDATA
section or processing instruction (an edge's parser refuses them and the ring's serialiser
never writes them). The node where its recipient lives builds it again.

Why batches: building a tree costs lxml about 3 us per document whatever its size, which made
parsing the largest part of a destination node's own work per stanza. A node receives
stanzas in bursts (one socket read holds dozens), so :func:`parse_stanzas` parses a burst as
one document, the payloads separated by an element of a private namespace, and checks that
the document's top level alternates strictly stanza, separator, stanza..., as many as there
were payloads. A payload that is not exactly one element (or forges separators) breaks that
pattern, and then every payload of the burst is parsed on its own: the results are always
those of :func:`parse_stanza`. The elements of a burst share one document (each one keeps
the burst's tree alive, as long as someone holds it).
"""

from __future__ import annotations

from lxml import etree

from .stanza import KIND_BY_TAG, stanza_kind

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          remove_blank_text=False, collect_ids=False)
_WRAP_OPEN, _WRAP_CLOSE = b"<w xmlns='jabber:server'>", b"</w>"
_SEP_NS = "urn:x-ringmesh:payload-separator"
_SEP = f"<s xmlns='{_SEP_NS}'/>".encode()
_SEP_TAG = f"{{{_SEP_NS}}}s"
MAX_BATCH_BYTES = 1 << 20  # larger bursts are cut into several documents


def parse_stanza(data: bytes) -> etree._Element:
    """The stanza ``data`` holds; ValueError saying why when it holds none (or more)."""
    if b"<!" in data or b"<?" in data:
        raise ValueError("DTDs, comments, CDATA and processing instructions are not allowed")
    try:
        wrap = etree.fromstring(_WRAP_OPEN + data + _WRAP_CLOSE, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"stanza does not parse: {exc}") from None
    if len(wrap) != 1:
        raise ValueError("a stanza payload holds exactly one element")
    el = wrap[0]
    if stanza_kind(el) is None:
        raise ValueError(f"not a stanza: {el.tag!r}")
    return el


def parse_stanzas(datas: list[bytes]) -> list[etree._Element | ValueError]:
    """:func:`parse_stanza` of each of ``datas``, its stanza or its error, in order."""
    if len(datas) < 2:
        return [_parse_or_error(d) for d in datas]
    if sum(map(len, datas)) <= MAX_BATCH_BYTES:
        return _parse_burst(datas)
    out: list[etree._Element | ValueError] = []
    i, n = 0, len(datas)
    while i < n:
        j, size = i, 0
        while j < n and (j == i or size + len(datas[j]) <= MAX_BATCH_BYTES):
            size += len(datas[j])
            j += 1
        out.extend(_parse_burst(datas[i:j]))
        i = j
    return out


def _parse_burst(datas: list[bytes]) -> list[etree._Element | ValueError]:
    n = len(datas)
    joined = _SEP.join(datas)  # no separator can make "<!" or "<?" with a payload's bytes
    if n > 1 and b"<!" not in joined and b"<?" not in joined:
        try:
            wrap = etree.fromstring(_WRAP_OPEN + joined + _SEP + _WRAP_CLOSE, _PARSER)
        except etree.XMLSyntaxError:
            wrap = None
        if wrap is not None and len(wrap) == 2 * n:
            nodes = list(wrap)
            stanzas = nodes[0::2]
            # Strict alternation, as many pairs as payloads: each payload was one element.
            for sep in nodes[1::2]:
                if sep.tag != _SEP_TAG:
                    break
            else:
                for el in stanzas:
                    if el.tag not in KIND_BY_TAG:
                        break
                else:
                    return stanzas  # type: ignore[return-value]
    return [_parse_or_error(d) for d in datas]


def _parse_or_error(data: bytes) -> etree._Element | ValueError:
    try:
        return parse_stanza(data)
    except ValueError as exc:
        return exc
