"""Every cap of the issue, end to end through the inbound machine: the bytes a hostile peer
sends, and the stream error (condition, application condition) the machine writes back
before closing. The parser's own tests cover split points and the caps one by one."""

import itertools

import pytest

from edge.rate_limit import RateLimits
from edge.s2s_events import S2SConfig, StreamClosed
from edge.s2s_inbound import InboundStream
from edge.xmlstream import ParserLimits

from .transcript import Reader, peer_header

HEADER = peer_header(**{"from": "peer.test", "to": "ring.test"})
NS_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"


def deep(n: int) -> bytes:
    return b"<message>" + b"<a>" * n + b"</a>" * n + b"</message>"


CASES = {
    "stanza size": (HEADER + b"<message><body>" + b"A" * 600_000 + b"</body></message>",
                    "policy-violation", "stanza-too-big"),
    "text size": (HEADER + b"<message><body>" + b"t" * 30_000 + b"</body></message>",
                  "policy-violation", "stanza-too-big"),
    "depth": (HEADER + deep(100), "policy-violation", None),
    "10,000-deep": (HEADER + deep(10_000), "policy-violation", None),
    "attribute count": (HEADER + b"<message " + b" ".join(b"a%d='1'" % i for i in range(65)) + b"/>",
                        "policy-violation", None),
    "attribute size": (HEADER + b"<message to='" + b"x" * 20_000 + b"'/>", "policy-violation", None),
    "namespace declarations": (HEADER + b"<message " + b" ".join(b"xmlns:p%d='u%d'" % (i, i) for i in range(70)) + b"/>",
                               "policy-violation", None),
    "elements": (HEADER + b"<message>" + b"<a/>" * 10_001 + b"</message>", "policy-violation", None),
    "header size": (b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='" + b"a" * 10_000,
                    "policy-violation", None),
    "rate": (HEADER + b" " * 500_000, "policy-violation", None),  # at once: beyond any throttled debt
    "invalid UTF-8": (HEADER + b"<message><body>\xc3\x28</body></message>", "unsupported-encoding", None),
    "UTF-16": ("<?xml version='1.0'?><stream:stream>".encode("utf-16"), "unsupported-encoding", None),
    "DOCTYPE": (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>" + HEADER[21:], "restricted-xml", None),
    "comment": (HEADER + b"<!-- c -->", "restricted-xml", None),
    "processing instruction": (HEADER + b"<?pi x?>", "restricted-xml", None),
    "entity": (HEADER + b"<message>&ent;</message>", "restricted-xml", None),
    "NUL": (HEADER + b"<message>\x00</message>", "not-well-formed", None),
    "undeclared prefix": (HEADER + b"<x:message/>", "bad-namespace-prefix", None),
    "wrong stream namespace": (b"<stream:stream xmlns:stream='urn:nope'>", "invalid-namespace", None),
    "wrong content namespace": (peer_header(to="ring.test").replace(b"jabber:server", b"jabber:client", 1),
                                "invalid-namespace", None),
    "text at stream level": (HEADER + b"hello", "bad-format", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_violation_closes_the_stream_with_its_condition(case):
    data, condition, app = CASES[case]
    ids = itertools.count(1)
    config = S2SConfig(frozenset({"ring.test"}), b"secret-for-limit-tests-0123",
                       limits=ParserLimits(max_text_chars=20_000),
                       rate=RateLimits(bytes_per_second=10_000, burst_bytes=200_000, grace_seconds=1.0))
    m = InboundStream(config, 0.0, lambda: f"s{next(ids)}")
    for start in range(0, len(data), 65536):  # as a socket delivers it, all at the same instant
        m.receive_data(data[start:start + 65536], 0.0)
        if m.closed:
            break
    assert m.closed
    reader = Reader()
    out = reader.read(m.data_to_send())
    assert reader.header is not None  # RFC 6120 §4.9.1.2: our header comes before the error
    error = out[-1]
    assert error.tag == "{http://etherx.jabber.org/streams}error"
    conditions = [child.tag.split("}")[1] for child in error if child.tag.startswith(f"{{{NS_ERRORS}}}")]
    assert conditions[0] == condition
    apps = [child.tag.split("}")[1] for child in error if child.tag.startswith("{urn:xmpp:errors}")]
    assert apps == ([app] if app else [])
    assert reader.ended  # and the stream is closed
    assert StreamClosed(condition, False) in m.next_events()
