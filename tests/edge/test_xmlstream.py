"""The hardened stream parser: same items whatever the split points, and every hostile
input ends the stream with the RFC 6120 condition it deserves."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.errors import StreamCondition, StreamError
from edge.xmlstream import ParserLimits, StreamEnd, StreamHeader, XMLStreamParser

from .transcript import canon

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='ring.test' from='peer.test' version='1.0'>")
BODY = (
    "<db:result from='peer.test' to='ring.test'>abc123</db:result>\n "
    "<message to='echo@ring.test' from='a@peer.test/r' id='m&amp;1'><body>h\u00e9llo &lt;&#x263A;&gt; \U0001F600"
    "<![CDATA[<raw> & stuff]]></body><x xmlns='urn:x' a='1' b=\"2\"><y/>tail</x></message>"
    "<iq type='get' id='p1' to='ring.test' from='peer.test'><ping xmlns='urn:xmpp:ping'/></iq>"
    "</stream:stream>"
).encode()
STREAM = HEADER + BODY


def summary(items):
    out = []
    for item in items:
        if isinstance(item, StreamHeader):
            out.append(("header", tuple(sorted(item.attrs.items())), item.default_ns))
        elif isinstance(item, StreamEnd):
            out.append(("end",))
        else:
            out.append(("el", canon(item)))
    return out


WHOLE = summary(XMLStreamParser().feed(STREAM))


def test_whole_stream_yields_header_stanzas_and_end():
    assert [s[0] for s in WHOLE] == ["header", "el", "el", "el", "end"]
    assert ("to", "ring.test") in WHOLE[0][1] and WHOLE[0][2] == "jabber:server"
    assert "h\u00e9llo <\u263a> \U0001F600<raw> & stuff" in WHOLE[2][1]
    assert "m&1" in WHOLE[2][1]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_split_points_give_the_same_items(cuts):
    parser = XMLStreamParser()
    items = []
    bounds = [0, *sorted(cuts), len(STREAM)]
    for a, b in zip(bounds, bounds[1:]):
        items += parser.feed(STREAM[a:b])
    assert summary(items) == WHOLE


def test_a_header_is_reported_as_soon_as_its_tag_ends():
    parser = XMLStreamParser()
    assert parser.feed(HEADER[:-1]) == []
    assert isinstance(parser.feed(HEADER[-1:])[0], StreamHeader)


def error_of(*chunks: bytes, limits: ParserLimits | None = None) -> StreamError:
    parser = XMLStreamParser(limits)
    with pytest.raises(StreamError) as info:
        for chunk in chunks:
            parser.feed(chunk)
    assert parser.closed
    return info.value


BILLION_LAUGHS = b"""<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>&lol9;"""


@pytest.mark.parametrize(
    ("chunks", "condition"),
    [
        ((BILLION_LAUGHS,), StreamCondition.RESTRICTED_XML),
        ((b"<!DOCTYPE stream>",), StreamCondition.RESTRICTED_XML),
        ((HEADER, b"<message><body>&xxe;</body></message>"), StreamCondition.RESTRICTED_XML),
        ((HEADER, b"<!-- hi -->"), StreamCondition.RESTRICTED_XML),
        ((b"<?xml version='1.0'?><?xml-stylesheet href='x'?>",), StreamCondition.RESTRICTED_XML),
        ((HEADER, b"<message><?pi data?></message>"), StreamCondition.RESTRICTED_XML),
        # RFC 6120 §4.9.3.22: bytes that break UTF-8 are unsupported-encoding...
        ((HEADER, b"<message><body>\xff\xfe\xfa</body></message>"), StreamCondition.UNSUPPORTED_ENCODING),
        ((HEADER, b"<message><body>\xc3</body></message>"), StreamCondition.UNSUPPORTED_ENCODING),
        ((HEADER, b"<message><body>\xed\xa0\x80</body></message>"), StreamCondition.UNSUPPORTED_ENCODING),  # surrogate
        ((HEADER, b"<message><body>\xc0\xaf</body></message>"), StreamCondition.UNSUPPORTED_ENCODING),  # overlong
        ((HEADER, b"<message to='\xc3(' />"), StreamCondition.UNSUPPORTED_ENCODING),
        ((HEADER, b"<message><body>ok\xe2\x82", b"(</body></message>"), StreamCondition.UNSUPPORTED_ENCODING),
        # ...while well-encoded characters that XML forbids are not-well-formed.
        ((HEADER, b"<message>\x00</message>"), StreamCondition.NOT_WELL_FORMED),
        ((HEADER, b"<message>\x01</message>"), StreamCondition.NOT_WELL_FORMED),
        ((HEADER, b"<message>\xef\xbf\xbe</message>"), StreamCondition.NOT_WELL_FORMED),  # U+FFFE
        (("<?xml version='1.0'?><stream/>".encode("utf-16"),), StreamCondition.UNSUPPORTED_ENCODING),
        ((b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>",), StreamCondition.UNSUPPORTED_ENCODING),
        ((b"<stream:stream xmlns:stream='urn:wrong'>",), StreamCondition.INVALID_NAMESPACE),
        ((b"<html>",), StreamCondition.INVALID_NAMESPACE),
        ((b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'>",), StreamCondition.BAD_FORMAT),
        ((HEADER, b"<message a='1' a='2'/>"), StreamCondition.NOT_WELL_FORMED),
        ((HEADER, b"<x:message/>"), StreamCondition.BAD_NAMESPACE_PREFIX),  # undeclared prefix
        ((HEADER, b"<message><x:body/></message>"), StreamCondition.BAD_NAMESPACE_PREFIX),
        ((HEADER, b"</stream:stream>", b"<message/>"), StreamCondition.NOT_WELL_FORMED),
        ((HEADER, b"stray text"), StreamCondition.BAD_FORMAT),
        ((HEADER, b"<a></b>"), StreamCondition.NOT_WELL_FORMED),
    ],
)
def test_hostile_and_broken_input_gets_the_matching_condition(chunks, condition):
    assert error_of(*chunks).condition is condition


def test_ten_megabyte_stanza_is_a_policy_violation_found_early():
    parser = XMLStreamParser()
    parser.feed(HEADER)
    huge = b"<message><body>" + b"a" * (10 * 1024 * 1024) + b"</body></message>"
    with pytest.raises(StreamError) as info:
        parser.feed(huge)
    assert info.value.condition is StreamCondition.POLICY_VIOLATION
    assert info.value.app == "stanza-too-big"
    # The parser stopped after about one limit's worth, not after 10 MB.
    assert parser._fed < 2 * parser.limits.max_stanza_bytes


def test_huge_attribute_in_an_unfinished_tag_is_caught_by_the_stanza_limit():
    parser = XMLStreamParser()
    parser.feed(HEADER + b"<message to='")
    with pytest.raises(StreamError) as info:
        for _ in range(40):
            parser.feed(b"x" * 65536)
    assert info.value.condition is StreamCondition.POLICY_VIOLATION


def test_ten_thousand_deep_nesting_is_a_policy_violation():
    deep = b"<a>" * 10_000 + b"</a>" * 10_000
    assert error_of(HEADER, b"<message>" + deep + b"</message>").condition is StreamCondition.POLICY_VIOLATION


@pytest.mark.parametrize(
    ("stanza", "limits"),
    [
        (b"<message " + b" ".join(b"a%d='1'" % i for i in range(100)) + b"/>", ParserLimits()),
        (b"<message to='" + b"x" * 20000 + b"'/>", ParserLimits()),
        (b"<message><body>" + b"t" * 2000 + b"</body></message>", ParserLimits(max_text_chars=1000)),
        (b"<message>" + b"<a/>" * 50 + b"</message>", ParserLimits(max_elements=20)),
        (b"<message><a><b><c/></b></a></message>", ParserLimits(max_depth=3)),
    ],
)
def test_each_limit_is_enforced(stanza, limits):
    assert error_of(HEADER, stanza, limits=limits).condition is StreamCondition.POLICY_VIOLATION


def test_oversized_header_is_a_policy_violation():
    assert error_of(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='"
                    + b"a" * 10000).condition is StreamCondition.POLICY_VIOLATION


def test_whitespace_keepalives_never_add_up_to_a_stanza():
    parser = XMLStreamParser(ParserLimits(max_stanza_bytes=4096))
    parser.feed(HEADER)
    for _ in range(300):
        parser.feed(b" " * 100)
    assert len(parser.feed(b"<message to='a@b'/>")) == 1


def test_items_completed_before_an_error_are_kept():
    parser = XMLStreamParser()
    parser.feed(HEADER)
    with pytest.raises(StreamError):
        parser.feed(b"<message id='ok'/><!-- bad -->")
    done = parser.take_completed()
    assert [e.get("id") for e in done] == ["ok"]
