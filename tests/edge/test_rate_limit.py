"""Per-stream byte rate limits: bursts are free, a busy peer is throttled, a peer that stays
over its rate gets policy-violation — on the bucket, on the stream machine, and against a
live edge over TCP."""

import itertools

import pytest
import trio

from edge.dialback import dialback_key
from edge.errors import StreamError
from edge.rate_limit import ByteRateLimiter, RateLimits
from edge.s2s_events import S2SConfig, StanzaReceived, StreamClosed
from edge.s2s_inbound import InboundStream
from edge.s2s_shell import S2SNode
from edge.srv import PeerResolver, Target
from edge.xmlstream import StreamHeader, XMLStreamParser

from .transcript import Reader, peer_header, read_until_closed

LIMITS = RateLimits(bytes_per_second=1000, burst_bytes=4000, grace_seconds=5.0)


def drive(limiter, chunk: int, interval: float, duration: float, *, throttle: bool = True, start: float = 0.0):
    """Feed ``chunk`` bytes every ``interval`` seconds for ``duration`` (a peer with that much
    to send); a throttling driver waits for ``resume_at`` first. Returns the time of the
    policy-violation, or None."""
    now = start
    for _ in range(int(duration / interval) + 1):  # bounded
        if throttle and (resume := limiter.resume_at()) is not None:
            now = max(now, resume)
        if now > start + duration:
            return None
        try:
            limiter.consume(chunk, now)
        except StreamError as exc:
            assert exc.condition.value == "policy-violation" and "bytes per second" in exc.text
            return now
        now += interval
    return None


def test_a_burst_within_the_allowance_is_free():
    limiter = ByteRateLimiter(LIMITS, 0.0)
    limiter.consume(4000, 0.0)
    assert limiter.resume_at() is None


def test_a_peer_at_or_below_the_rate_is_never_throttled_nor_closed():
    limiter = ByteRateLimiter(LIMITS, 0.0)
    assert drive(limiter, 100, 0.1, 600.0, throttle=False) is None  # exactly the rate, ten minutes
    assert limiter.resume_at() is None
    assert drive(ByteRateLimiter(LIMITS, 0.0), 900, 1.0, 600.0, throttle=False) is None


def test_beyond_the_burst_the_driver_is_told_when_to_read_again():
    limiter = ByteRateLimiter(LIMITS, 10.0)
    limiter.consume(6000, 10.0)  # 2000 bytes over: two seconds at 1000 B/s
    assert limiter.resume_at() == pytest.approx(12.0)
    limiter.consume(0, 12.0)
    assert limiter.level == pytest.approx(0.0) and limiter.resume_at() is None


def test_a_short_overload_is_throttled_but_forgiven():
    limiter = ByteRateLimiter(LIMITS, 0.0)
    # Three seconds at twice the rate (shorter than the grace), then well below it.
    assert drive(limiter, 2000, 1.0, 3.0) is None
    assert drive(limiter, 200, 1.0, 60.0, start=limiter.resume_at() or 3.0) is None


def test_a_peer_that_stays_over_its_rate_gets_policy_violation_after_the_grace():
    limiter = ByteRateLimiter(LIMITS, 0.0)
    killed = drive(limiter, 1500, 1.0, 60.0)  # 1.5x the rate, throttled all along
    assert killed is not None and LIMITS.grace_seconds < killed < LIMITS.grace_seconds + 10


def test_a_flood_into_a_driver_that_does_not_pause_is_cut_by_the_debt_cap():
    limiter = ByteRateLimiter(LIMITS, 0.0)
    killed = drive(limiter, 5000, 0.01, 10.0, throttle=False)
    # burst + rate x grace = 9000 bytes of debt: the third chunk, long before the grace ends.
    assert killed is not None and killed < 0.1


def test_no_limit_and_bad_limits():
    limiter = ByteRateLimiter(RateLimits(bytes_per_second=None), 0.0)
    limiter.consume(10**9, 0.0)
    assert limiter.resume_at() is None
    for bad in ({"bytes_per_second": 0}, {"burst_bytes": 0}, {"grace_seconds": -1}):
        with pytest.raises(ValueError):
            RateLimits(**bad)


# -- on the stream machine ------------------------------------------------------------------

SECRET = b"ring-shared-secret-for-rate-tests"


def authenticated(limits: RateLimits):
    ids = itertools.count(1)
    m = InboundStream(S2SConfig(frozenset({"ring.test"}), SECRET, rate=limits), 0.0, lambda: f"s{next(ids)}")
    reader = Reader()
    m.receive_data(peer_header(**{"from": "peer.test", "to": "ring.test"}), 0.0)
    m.receive_data(b"<db:result from='peer.test' to='ring.test'>k</db:result>", 0.0)
    m.dialback_verified("peer.test", "ring.test", True, 0.0)
    reader.read(m.data_to_send())
    m.next_events()
    return m, reader


STANZA = b"<message from='a@peer.test' to='echo@ring.test'><body>" + b"x" * 400 + b"</body></message>"


def test_machine_throttles_then_closes_a_persistent_flood_with_policy_violation():
    m, reader = authenticated(RateLimits(bytes_per_second=10_000, burst_bytes=5_000, grace_seconds=2.0))
    now, delivered, paused = 0.0, 0, 0
    for _ in range(1000):  # a peer with 20,000 B/s to send, a driver that honours the pauses
        if (resume := m.read_resume_at()) is not None:
            paused += 1
            now = max(now, resume)
        m.receive_data(STANZA * 4, now)
        delivered += sum(isinstance(e, StanzaReceived) for e in m.next_events())
        if m.closed:
            break
        now += 0.1
    assert m.closed and paused > 0
    errors = reader.read(m.data_to_send())
    assert errors[-1].tag == "{http://etherx.jabber.org/streams}error"
    assert errors[-1][0].tag == "{urn:ietf:params:xml:ns:xmpp-streams}policy-violation"
    assert "bytes per second" in errors[-1][1].text
    assert 2.0 < now < 5.0 and delivered > 0  # served at its rate through the grace, then cut
    assert m.read_resume_at() is None and m.get_timer() is None


def test_machine_serves_a_steady_peer_below_the_rate_indefinitely():
    m, reader = authenticated(RateLimits(bytes_per_second=10_000, burst_bytes=5_000, grace_seconds=2.0))
    delivered = 0
    for step in range(600):  # one minute at about 9,000 B/s, read as it arrives
        m.receive_data(STANZA * 2, step * 0.1)
        delivered += sum(isinstance(e, StanzaReceived) for e in m.next_events())
    assert not m.closed and delivered == 1200 and m.read_resume_at() is None


# -- against a live edge over TCP -----------------------------------------------------------

RING, PEER = "ring.test", "peer.test"
PEER_SECRET = b"peer-test-secret-for-rate-limit"
LIVE = RateLimits(bytes_per_second=200_000, burst_bytes=64 * 1024, grace_seconds=0.3)


async def test_live_edge_cuts_a_flooding_peer_and_keeps_serving_others(nursery):
    received: list[StanzaReceived] = []
    closed: list[StreamClosed] = []
    resolver = PeerResolver({}, use_dns=False)
    ring = S2SNode(S2SConfig(frozenset({RING}), b"ring-secret-0123456789abcdef", rate=LIVE), resolver,
                   on_stanza=received.append)
    peer = S2SNode(S2SConfig(frozenset({PEER}), PEER_SECRET), PeerResolver({}, use_dns=False))
    port = await nursery.start(ring.run)
    resolver.overrides[PEER] = Target("127.0.0.1", await nursery.start(peer.run))
    parser, items, sent = XMLStreamParser(), [], 0
    with trio.fail_after(15):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream, trio.open_nursery() as inner:

            async def flood():
                nonlocal sent
                await stream.send_all(peer_header(**{"from": PEER, "to": RING}))
                for _ in range(2000):  # bounded: at most 128 MB, far more than the edge will take
                    try:
                        await stream.send_all(b" " * 65536)  # whitespace keepalives, valid and endless
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    sent += 65536

            inner.start_soon(flood)
            items += (await read_until_closed(stream, parser))[1]
            inner.cancel_scope.cancel()
    errors = [i for i in items if getattr(i, "tag", "") == "{http://etherx.jabber.org/streams}error"]
    assert errors and errors[0][0].tag == "{urn:ietf:params:xml:ns:xmpp-streams}policy-violation"
    assert ring.stats.errors[-1] == "policy-violation"
    assert sent > LIVE.burst_bytes  # it was cut for its rate, not at once
    # Another peer on its own stream is served: the limit is per stream.
    await honest_peer_delivers(port, received)


async def honest_peer_delivers(port, received):
    parser = XMLStreamParser()
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(peer_header(**{"from": PEER, "to": RING}))
            header = None
            while header is None:
                for it in parser.feed(await stream.receive_some(65536)):
                    header = it if isinstance(it, StreamHeader) else header
            key = dialback_key(PEER_SECRET, RING, PEER, header.get("id"))
            await stream.send_all(f"<db:result from='{PEER}' to='{RING}'>{key}</db:result>".encode())
            valid = False
            while not valid:
                for it in parser.feed(await stream.receive_some(65536)):
                    valid = valid or getattr(it, "get", lambda k: None)("type") == "valid"
            await stream.send_all(b"<message from='alice@peer.test/x' to='echo@ring.test' id='ok'/>")
            while not received:
                await trio.sleep(0.01)
    assert received[-1].element.get("id") == "ok"
