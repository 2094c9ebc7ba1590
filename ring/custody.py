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


class CustodyStore:
    """The two timer queues.

    The dicts exist only while something is held (most nodes of a large simulation hold
    nothing most of the time). There is no index by hop: finding what a suspected hop holds
    scans the store, which is rare, and an index would cost a set operation per envelope.
    """

    __slots__ = ("_sent", "_received", "count")

    def __init__(self) -> None:
        self._sent: dict[Key, Held] | None = None
        self._received: dict[Key, Held] | None = None
        self.count = 0  # envelopes held (a plain attribute: read for every envelope)

    def __len__(self) -> int:
        return self.count

    def get(self, key: Key) -> Held | None:
        sent = self._sent
        if sent is None:
            return None
        h = sent.get(key)
        return h if h is not None else self._received.get(key)  # type: ignore[union-attr]

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

    def queues(self) -> tuple[dict[Key, Held], dict[Key, Held]]:
        """Both queues (made if need be), for a caller that holds many new envelopes at
        once itself, as ``add`` would (``RingNode.handle_messages``): a key is new unless
        it is in either queue; a new one goes at the end of the first, its hop and
        deadline set. The caller then adds them to ``count`` and calls ``tidy``."""
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
        for key in keys:
            held = sent.get(key)
            if held is None or held.hop is None or held.hop.id != sender_id:
                continue
            del sent[key]
            held.deadline = deadline
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
        ups = first.upstreams
        for key in keys:
            held = get(key)
            if (held is None or held.hop is None or held.hop.id != sender_id
                    or held.envelope.origin == origin_not):
                return None
            u = held.upstreams
            if u is not ups and u != ups:  # (the envelopes of one read share one tuple)
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
            if held.hop is None or held.hop.id != sender_id:
                continue
            del d[key]
            out.append((key, held))
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
        if held is not None:
            self.count -= 1
            if not sent and not self._received:
                self._sent = self._received = None
        return held

    def held_by(self, hop_id: int) -> list[Key]:
        """Keys of the envelopes given to ``hop_id`` (a scan: only when a hop is suspected)."""
        if self._sent is None:
            return []
        return [k for d in (self._sent, self._received) for k, h in d.items()  # type: ignore[union-attr]
                if h.hop is not None and h.hop.id == hop_id]

    def next_deadline(self) -> float | None:
        if self._sent is None:
            return None
        best = None
        for d in (self._sent, self._received):
            if d:
                t = next(iter(d.values())).deadline
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
                if held.deadline > now:
                    break
                acc.append(key)
        return out
