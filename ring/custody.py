"""Envelopes a node holds until they are confirmed delivered, with their deadlines.

Every envelope a node accepts stays here until its next hop reports it delivered (``done``).
Two phases, two time limits:

- *sent*: waiting for the next hop to confirm receipt within ``ack_timeout``. Silence means
  the hop is suspected dead and the envelope is re-routed.
- *received*: the hop is alive and working on it; waiting for the delivery confirmation
  within ``custody_timeout``, after which the envelope is sent again (the destination
  suppresses the duplicate if the first copy did arrive).

Each phase has one constant timeout, so deadlines grow in insertion order: two insertion-
ordered dicts are two timer queues with O(1) push, pop and peek, no heap needed.

An envelope is held as a ``Held``, or as a pair ``(envelope, shared)``: ``shared`` is one
Held whose hop, upstreams and deadline stand for every envelope paired with it (its own
envelope need not be one of them). A node forwarding a read's envelopes holds them so
(``queues``): a small tuple per envelope instead of an object, and an ack for them checks
their hop once. Whatever asks for one envelope's Held (``get``, ``remove``, ``pop_all_done``)
gets one of its own; a shared Held is never changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .messages import Envelope, NodeRef

Key = int  # messages.envelope_key(origin, msg_id)


@dataclass(slots=True)
class Held:
    envelope: Envelope  # as this node received (or originated) it, before forwarding
    # Who to confirm delivery to; empty when originated here. A tuple, so the envelopes of
    # one read share one (a duplicate from elsewhere, rare, makes a longer one).
    upstreams: tuple[NodeRef, ...]
    hop: NodeRef | None = None
    deadline: float = 0.0
    attempts: int = 0
    excluded: frozenset[int] = frozenset()  # hops given up on for this envelope (rare)


Entry = Held | tuple[Envelope, Held]  # a Held, or a pair (envelope, shared Held)


def _own(entry: Entry) -> Held:
    """The Held of an entry: itself, or one of the pair's envelope's own."""
    if type(entry) is tuple:
        env, s = entry
        return Held(env, s.upstreams, s.hop, s.deadline, s.attempts, s.excluded)
    return entry  # type: ignore[return-value]


def _meta(entry: Entry) -> Held:
    """The Held with an entry's hop, upstreams and deadline (never to be changed)."""
    return entry[1] if type(entry) is tuple else entry  # type: ignore[return-value,index]


class CustodyStore:
    """The two timer queues.

    The dicts exist only while something is held (most nodes of a large simulation hold
    nothing most of the time). There is no index by hop: finding what a suspected hop holds
    scans the store, which is rare, and an index would cost a set operation per envelope.
    """

    __slots__ = ("_sent", "_received", "count")

    def __init__(self) -> None:
        self._sent: dict[Key, Entry] | None = None
        self._received: dict[Key, Entry] | None = None
        self.count = 0  # envelopes held (a plain attribute: read for every envelope)

    def __len__(self) -> int:
        return self.count

    def get(self, key: Key) -> Held | None:
        sent = self._sent
        if sent is None:
            return None
        d = sent
        h = sent.get(key)
        if h is None:
            d = self._received  # type: ignore[assignment]
            h = d.get(key)
            if h is None:
                return None
        if type(h) is tuple:
            h = d[key] = _own(h)  # (its own from now on: the caller may change it)
        return h  # type: ignore[return-value]

    def put_sent(self, key: Key, held: Held, hop: NodeRef, deadline: float) -> None:
        sent = self._sent
        if sent is None:
            sent = self._sent = {}
            self._received = {}
            self.count += 1
        elif sent.pop(key, None) is None and self._received.pop(key, None) is None:  # type: ignore[union-attr]
            self.count += 1  # new here (a re-sent envelope keeps its place in the count)
        held.hop = hop
        held.deadline = deadline
        sent[key] = held

    def put_new(self, key: Key, held: Held, hop: NodeRef, deadline: float) -> None:
        """put_sent for an envelope this store has never held (the common case, no lookups)."""
        sent = self._sent
        if sent is None:
            sent = self._sent = {}
            self._received = {}
        self.count += 1
        held.hop = hop
        held.deadline = deadline
        sent[key] = held

    def add(self, key: Key, held: Held) -> bool:
        """Hold a new envelope, its hop and deadline set, unless ``key`` is held already
        (False, and nothing changes): the check and the insertion in one call."""
        sent = self._sent
        if sent is None:
            sent = self._sent = {}
            self._received = {}
        elif key in sent or key in self._received:  # type: ignore[operator]
            return False
        self.count += 1
        sent[key] = held
        return True

    def queues(self) -> tuple[dict[Key, Entry], dict[Key, Entry]]:
        """Both queues (made if need be), for a caller that holds many new envelopes at
        once itself, as ``add`` would (``RingNode.handle_messages``): a key is new unless
        it is in either queue; a new one goes at the end of the first, as a Held or as a
        pair (envelope, shared Held; see the module docstring) with the hop and deadline
        set. The caller then adds them to ``count`` and calls ``tidy``."""
        sent = self._sent
        if sent is None:
            sent = self._sent = {}
            self._received = {}
        return sent, self._received  # type: ignore[return-value]

    def tidy(self) -> None:
        """After ``queues``: drop them if nothing was held after all."""
        if not self.count:
            self._sent = self._received = None

    def mark_received(self, key: Key, sender_id: int, deadline: float) -> None:
        self.mark_all_received((key,), sender_id, deadline)

    def pop_done(self, key: Key, sender_id: int) -> Held | None:
        """Remove and return the envelope if ``sender_id`` is the hop it was given to."""
        out = self.pop_all_done((key,), sender_id)
        return out[0][1] if out else None

    def mark_all_received(self, keys: Iterable[Key], sender_id: int, deadline: float) -> None:
        """The envelopes given to ``sender_id`` among ``keys`` reached it: second phase."""
        sent = self._sent
        if sent is None:
            return
        received = self._received
        last: Held | None = None
        moved: Held | None = None
        for key in keys:
            held = sent.get(key)
            if held is None:
                continue
            if type(held) is tuple:
                s = held[1]
                if s.hop is None or s.hop.id != sender_id:
                    continue
                if s is not last:  # the pairs that shared one Held share a new one
                    last = s
                    moved = Held(s.envelope, s.upstreams, s.hop, deadline, s.attempts,
                                 s.excluded)
                del sent[key]
                received[key] = (held[0], moved)  # type: ignore[index,assignment]
                continue
            if held.hop is None or held.hop.id != sender_id:  # type: ignore[union-attr]
                continue
            del sent[key]
            held.deadline = deadline  # type: ignore[union-attr]
            received[key] = held  # type: ignore[index]

    def pop_run(self, keys: Sequence[Key], sender_id: int, origin_not: int | None
                ) -> tuple[tuple[NodeRef, ...], Sequence[Key]] | None:
        """``pop_all_done`` for the usual ack, in one pass and without a pair per key: if
        every one of ``keys`` is held in the same queue, given to ``sender_id``, received
        from the same upstreams and not originated by ``origin_not``, remove them all and
        return those upstreams and the keys (each once). Otherwise None, and nothing
        changed: ``pop_all_done`` sorts such an ack out key by key."""
        sent = self._sent
        if sent is None or not keys:
            return None
        d = sent if keys[0] in sent else self._received
        get = d.get  # type: ignore[union-attr]
        first = get(keys[0])
        if first is None:
            return None
        ups = _meta(first).upstreams
        last = None  # the Held whose hop and upstreams were checked last
        for key in keys:
            held = get(key)
            if held is None:
                return None
            if type(held) is tuple:
                env, h = held
            else:
                env, h = held.envelope, held  # type: ignore[union-attr]
            if h is not last:
                if h.hop is None or h.hop.id != sender_id:
                    return None
                u = h.upstreams
                if u is not ups and u != ups:  # (the envelopes of one read share one tuple)
                    return None
                last = h
            if env.origin == origin_not:
                return None
        before = len(d)  # type: ignore[arg-type]
        pop = d.pop  # type: ignore[union-attr]
        for key in keys:
            pop(key, None)
        n = before - len(d)  # type: ignore[arg-type]
        if n != len(keys):  # a key came twice: it counts once
            keys = list(dict.fromkeys(keys))
        self.count -= n
        if not sent and not self._received:
            self._sent = self._received = None
        return ups, keys

    def pop_all_done(self, keys: Iterable[Key], sender_id: int) -> list[tuple[Key, Held]]:
        """Remove and return the envelopes among ``keys`` that were given to ``sender_id``."""
        sent = self._sent
        if sent is None:
            return []
        received = self._received
        out = []
        for key in keys:
            held = sent.get(key)
            d = sent
            if held is None:
                d = received  # type: ignore[assignment]
                held = d.get(key)
                if held is None:
                    continue
            h = _meta(held)
            if h.hop is None or h.hop.id != sender_id:
                continue
            del d[key]
            out.append((key, _own(held)))
        self.count -= len(out)
        if not sent and not received:
            self._sent = self._received = None
        return out

    def remove(self, key: Key) -> Held | None:
        sent = self._sent
        if sent is None:
            return None
        held = sent.pop(key, None)
        if held is None:
            held = self._received.pop(key, None)  # type: ignore[union-attr]
        if held is None:
            return None
        self.count -= 1
        if not sent and not self._received:
            self._sent = self._received = None
        return _own(held)

    def held_by(self, hop_id: int) -> list[Key]:
        """Keys of the envelopes given to ``hop_id`` (a scan: only when a hop is suspected)."""
        if self._sent is None:
            return []
        return [k for d in (self._sent, self._received) for k, e in d.items()  # type: ignore[union-attr]
                if (h := _meta(e)).hop is not None and h.hop.id == hop_id]

    def next_deadline(self) -> float | None:
        if self._sent is None:
            return None
        best = None
        for d in (self._sent, self._received):
            if d:
                t = _meta(next(iter(d.values()))).deadline
                if best is None or t < best:
                    best = t
        return best

    def expired(self, now: float) -> tuple[list[Key], list[Key]]:
        """Keys whose deadline passed: (never confirmed received, received but not delivered)."""
        out: tuple[list[Key], list[Key]] = ([], [])
        if self._sent is None:
            return out
        for d, acc in ((self._sent, out[0]), (self._received, out[1])):
            for key, held in d.items():  # type: ignore[union-attr]
                if _meta(held).deadline > now:
                    break
                acc.append(key)
        return out


# Where a node that has held nothing yet looks for envelopes. Shared by every such node and
# never written to: a node swaps in a store of its own before holding its first envelope.
# Reading a count of zero here, in memory every node shares, is what a simulated node does
# after nearly every event (asking for its next deadline); its own store would be one more
# object to fetch, and 64 bytes, for each of 10^6 nodes that may never hold anything.
NOTHING_HELD = CustodyStore()
