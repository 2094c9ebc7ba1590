"""Helpers for transcript tests: read what a machine wrote as XML, never as raw bytes.

Attribute order and namespace prefixes vary between serialisers (and between Prosody and
ejabberd), so outputs are parsed back and compared in a canonical form.
"""

from __future__ import annotations

import trio
from lxml import etree

from edge.xmlstream import StreamEnd, StreamHeader, XMLStreamParser

NS_STREAMS = "http://etherx.jabber.org/streams"
PEER_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
    "xmlns:db='jabber:server:dialback' {attrs} version='1.0'>"
)


def peer_header(**attrs: str) -> bytes:
    text = " ".join(f"{k.rstrip('_')}='{v}'" for k, v in attrs.items())
    return PEER_HEADER.format(attrs=text).encode()


def canon(el: etree._Element) -> str:
    """Tag, sorted attributes, stripped text and children, recursively."""
    attrs = ",".join(f"{k}={v}" for k, v in sorted(el.attrib.items()))
    text = (el.text or "").strip()
    inner = "".join(canon(c) for c in el if isinstance(c.tag, str))
    return f"<{el.tag}|{attrs}|{text}|{inner}>"


def xml(text: str) -> etree._Element:
    """Parse a fragment written with the usual prefixes (stream, db) pre-declared."""
    wrapped = (f"<w xmlns='jabber:server' xmlns:stream='{NS_STREAMS}' xmlns:db='jabber:server:dialback'>"
               f"{text}</w>")
    return etree.fromstring(wrapped)[0]


class Reader:
    """Parses successive outputs of one side of a stream (restartable after STARTTLS/SASL)."""

    def __init__(self) -> None:
        self.parser = XMLStreamParser()
        self.header: StreamHeader | None = None
        self.ended = False

    def restart(self) -> None:
        self.parser = XMLStreamParser()

    def read(self, data: bytes) -> list[etree._Element]:
        out = []
        for item in self.parser.feed(data):
            if isinstance(item, StreamHeader):
                self.header = item
            elif isinstance(item, StreamEnd):
                self.ended = True
            else:
                out.append(item)
        return out

    def read_canon(self, data: bytes) -> list[str]:
        return [canon(e) for e in self.read(data)]


async def read_until_closed(stream, parser: XMLStreamParser):  # noqa: ANN001, ANN201
    """Feed everything a real peer sends until it closes the connection: (the last stream
    header seen or None, every other item in order)."""
    header, items = None, []
    while True:
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            break
        if not data:
            break
        for it in parser.feed(data):
            if isinstance(it, StreamHeader):
                header = it
            else:
                items.append(it)
    return header, items
