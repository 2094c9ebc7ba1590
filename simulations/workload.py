"""What users ask of the ring, and how each request ended.

Three kinds of request, all issued through the core's public API from a uniformly chosen
active node:

- ``lookup``: ``RingNode.lookup(key)`` -- Chord's find_successor, answered by LookupDone or
  LookupFailed. Correct when the answer is the key's true successor at answer time.
- ``probe``: ``RingNode.probe(key)`` -- a traced envelope routed with custody to the node
  responsible for the key, which answers with its path (ProbeResult). Gives the path, so
  also the latency stretch against the direct underlay path.
- ``stanza``: ``RingNode.send(key, payload)`` -- what an XMPP stanza does on the ring.
  Judged where it lands: correct when the node it is delivered to is, at that instant, the
  key's true successor.

A request unanswered by its deadline has "timeout" as outcome; one whose origin died first
is "origin-down" and left out of failure rates (the paper only counts lookups from live
nodes). ``timeouts`` counts the messages of that request lost to dead nodes: each one cost
the sender a time-out before it routed around.

Keys are uniform on the circle, or Zipf-distributed over a fixed population of JIDs (a few
hot users receive most traffic).
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from ring.events import (
    Delivered,
    LookupDone,
    LookupFailed,
    ProbeResult,
    Undeliverable,
)
from ring.ids import jid_key
from ring.messages import Envelope, Flags, FindSuccessor

from .driver import Simulation

KINDS = ("lookup", "probe", "stanza")
MAX_ZIPF_KEYS = 10_000_000


class KeyChooser:
    """Uniform keys on the circle, or Zipf(s) over ``population`` JIDs user0..userN-1."""

    def __init__(self, space: Any, rng: random.Random, *, dist: str = "uniform",
                 s: float = 1.0, population: int = 10_000, domain: str = "sim.example") -> None:
        self.space = space
        self.rng = rng
        self.dist = dist
        if dist == "uniform":
            return
        if dist != "zipf":
            raise ValueError(f"unknown key distribution {dist!r} (uniform, zipf)")
        if not 1 <= population <= MAX_ZIPF_KEYS:
            raise ValueError(f"zipf population must be in 1..{MAX_ZIPF_KEYS}")
        if s <= 0:
            raise ValueError("zipf exponent s must be positive")
        self.cum = list(accumulate(1.0 / (r ** s) for r in range(1, population + 1)))
        self.keys = [jid_key(space, f"user{r}@{domain}") for r in range(population)]

    def rank(self) -> int:
        return bisect_left(self.cum, self.rng.random() * self.cum[-1])

    def __call__(self) -> int:
        if self.dist == "uniform":
            return self.rng.getrandbits(self.space.bits)
        return self.keys[self.rank()]


class _Req:
    __slots__ = ("kind", "t0", "origin", "key", "timeouts")

    def __init__(self, kind: str, t0: float, origin: int, key: int) -> None:
        self.kind, self.t0, self.origin, self.key = kind, t0, origin, key
        self.timeouts = 0


class KindStats:
    """Running aggregates of one request kind, for the summary and the plots."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.hops: list[int] = []
        self.latency: list[float] = []
        self.timeouts: list[int] = []
        self.stretch: list[float] = []
        self.by_hops: dict[int, list[float]] = {}
        self.fail_times: list[float] = []
        self.ok_times: list[float] = []


Sink = Callable[[dict[str, Any]], None]


class RequestTracker:
    """Issues requests into cores and matches the cores' events to them."""

    def __init__(self, sim: Simulation, sink: Sink, *, deadline: float = 60.0) -> None:
        if deadline <= 0:
            raise ValueError("deadline must be positive")
        self.sim = sim
        self.sink = sink
        self.deadline = deadline
        self.pending: dict[tuple[int, int, bool], _Req] = {}
        self.stats: dict[str, KindStats] = {k: KindStats() for k in KINDS}
        sim.listen(LookupDone, self._on_lookup_done)
        sim.listen(LookupFailed, self._on_lookup_failed)
        sim.listen(ProbeResult, self._on_probe)
        sim.listen(Undeliverable, self._on_undeliverable)
        sim.listen(Delivered, self._on_delivered)
        sim.net.on_dead_letter = self._on_dead_letter

    # -- issuing ------------------------------------------------------------------------------

    def issue(self, kind: str, origin: int, key: int, payload: bytes = b"",
              deadline: float | None = None) -> None:
        sim = self.sim
        node = sim.nodes[origin]
        if node is None:
            return
        now = sim.now
        if kind == "lookup":
            rid = node.lookup(key, now)
        elif kind == "probe":
            rid = node.probe(key, now)
        elif kind == "stanza":
            rid = node.send(key, payload, now)
        else:
            raise ValueError(f"unknown request kind {kind!r}")
        # Lookups are named by request id, probes and stanzas by message id: two counters
        # of the same core, so the kind of name is part of the key.
        pk = (origin, rid, kind == "lookup")
        self.pending[pk] = _Req(kind, now, origin, key)
        sim.kick(origin)
        sim.kernel.after(deadline or self.deadline, self._expire, pk)

    # -- outcomes -----------------------------------------------------------------------------

    def _finish(self, pk: tuple[int, int, bool], outcome: str, *, hops: int | None = None,
                **extra: Any) -> None:
        req = self.pending.pop(pk, None)
        if req is None:
            return
        now = self.sim.now
        st = self.stats[req.kind]
        st.outcomes[outcome] = st.outcomes.get(outcome, 0) + 1
        lat = now - req.t0
        rec: dict[str, Any] = {"type": req.kind, "t": round(req.t0, 6), "origin": req.origin,
                               "key": f"{req.key:x}", "outcome": outcome,
                               "latency": round(lat, 6), "timeouts": req.timeouts}
        if hops is not None:
            rec["hops"] = hops
        rec.update(extra)
        if outcome == "origin-down":
            self.sink(rec)
            return
        st.timeouts.append(req.timeouts)
        if outcome == "ok":
            st.ok_times.append(req.t0)
            st.latency.append(lat)
            if hops is not None:
                st.hops.append(hops)
                st.by_hops.setdefault(hops, []).append(lat)
            s = extra.get("stretch")
            if s is not None:
                st.stretch.append(s)
        else:
            st.fail_times.append(req.t0)
        self.sink(rec)

    def _expire(self, pk: tuple[int, int, bool], *_: Any) -> None:
        if pk in self.pending:
            self._finish(pk, "timeout" if self.sim.alive(pk[0]) else "origin-down")

    def _correct(self, key: int, node_id: int) -> bool:
        return self.sim.truth.successor(key) == node_id

    def _on_lookup_done(self, i: int, e: LookupDone) -> None:
        pk = (i, e.req_id, True)
        if pk in self.pending:
            ok = self._correct(e.key, e.successor.id)
            self._finish(pk, "ok" if ok else "wrong", hops=e.hops)

    def _on_lookup_failed(self, i: int, e: LookupFailed) -> None:
        self._finish((i, e.req_id, True), "failed")

    def _on_probe(self, i: int, e: ProbeResult) -> None:
        pk = (i, e.msg_id, False)
        req = self.pending.get(pk)
        if req is None:
            return
        sim = self.sim
        extra: dict[str, Any] = {}
        resp = e.trace[-1] if e.trace else None
        ok = resp is not None and self._correct(e.dest, resp)
        path = [sim.by_id.get(x) for x in e.trace]
        if len(path) >= 2 and None not in path:
            lat = sim.net.model.latency
            one_way = sum(lat(a, b) for a, b in zip(path, path[1:]))  # type: ignore[arg-type]
            direct = lat(path[0], path[-1])  # type: ignore[arg-type]
            extra["path_latency"] = round(one_way, 6)
            if direct > 0:
                extra["stretch"] = round(one_way / direct, 4)
        self._finish(pk, "ok" if ok else "wrong", hops=e.hops, **extra)

    def _on_undeliverable(self, i: int, e: Undeliverable) -> None:
        self._finish((i, e.report.msg_id, False), "undeliverable", code=e.report.code.name.lower())

    def _on_delivered(self, j: int, e: Delivered) -> None:
        env = e.envelope
        i = self.sim.by_id.get(env.origin)
        if i is None:
            return
        pk = (i, env.msg_id, False)
        req = self.pending.get(pk)
        if req is None or req.kind != "stanza":
            return
        ok = self._correct(env.dest, self.sim.refs[j].id)
        self._finish(pk, "ok" if ok else "wrong", hops=env.hops)

    def _on_dead_letter(self, src: int, dst: int, msg: Any) -> None:
        t = type(msg)
        if t is Envelope:
            if msg.flags & (Flags.REPLY | Flags.ERROR):
                return
            i = self.sim.by_id.get(msg.origin)
            if i is None:
                return
            if msg.flags & Flags.LOOKUP:  # a lookup travels as a probe naming its request
                rid = self.sim.nodes_codec.decode_lookup_request(msg.payload)[0]
                req = self.pending.get((i, rid, True))
            else:
                req = self.pending.get((i, msg.msg_id, False))
        elif t is FindSuccessor:
            i = self.sim.by_id.get(msg.requester.id)
            if i is None:
                return
            req = self.pending.get((i, msg.req_id, True))
        else:
            return
        if req is not None:
            req.timeouts += 1


class Workload:
    """Poisson arrivals of one request kind between ``start`` and ``stop`` (absolute times),
    at ``rate`` per second, or ``count`` requests spread over the window."""

    def __init__(self, sim: Simulation, tracker: RequestTracker, *, kind: str, start: float,
                 stop: float, seed: int, rate: float | None = None, count: int | None = None,
                 keys: KeyChooser | None = None, payload_bytes: int = 200,
                 deadline: float | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown workload kind {kind!r} ({', '.join(KINDS)})")
        if stop <= start:
            raise ValueError("workload stop must be after start")
        if count is not None:
            if count < 1:
                raise ValueError("workload count must be positive")
            rate = count / (stop - start)
        if rate is None or rate <= 0:
            raise ValueError("a workload needs a positive rate or count")
        if not 0 <= payload_bytes <= 60_000:
            raise ValueError("payload_bytes must be in 0..60000")
        self.sim, self.tracker, self.kind = sim, tracker, kind
        self.rng = random.Random(seed)
        self.keys = keys or KeyChooser(sim.space, self.rng)
        self.rate, self.stop, self.count = rate, stop, count
        self.payload = bytes(payload_bytes)
        self.deadline = deadline
        self.issued = 0
        sim.kernel.at(start + self.rng.expovariate(rate), self._fire)

    def _fire(self, *_: Any) -> None:
        sim = self.sim
        if self.count is None:
            if sim.now > self.stop:
                return
        elif self.issued >= self.count:  # a count is honoured even if arrivals run late
            return
        ids = sim.truth.ids
        if ids:
            origin = sim.by_id[ids[self.rng.randrange(len(ids))]]
            self.tracker.issue(self.kind, origin, self.keys(), self.payload, self.deadline)
            self.issued += 1
        sim.kernel.after(self.rng.expovariate(self.rate), self._fire)
