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

from dataclasses import dataclass

from .messages import Envelope, NodeRef

Key = tuple[int, int]  # (origin, msg_id)


@dataclass(slots=True)
class Held:
    envelope: Envelope  # as this node received (or originated) it, before forwarding
    upstreams: list[NodeRef]  # who to confirm delivery to; empty when originated here
    hop: NodeRef | None = None
    deadline: float = 0.0
    attempts: int = 0
    excluded: frozenset[int] = frozenset()  # hops given up on for this envelope (rare)


class CustodyStore:
    __slots__ = ("_sent", "_received", "by_hop")

    def __init__(self) -> None:
        self._sent: dict[Key, Held] = {}
        self._received: dict[Key, Held] = {}
        self.by_hop: dict[int, set[Key]] = {}

    def __len__(self) -> int:
        return len(self._sent) + len(self._received)

    def get(self, key: Key) -> Held | None:
        h = self._sent.get(key)
        return h if h is not None else self._received.get(key)

    def put_sent(self, key: Key, held: Held, hop: NodeRef, deadline: float) -> None:
        self._unlink(key, held)
        self._received.pop(key, None)
        self._sent.pop(key, None)
        held.hop = hop
        held.deadline = deadline
        self._sent[key] = held
        self.by_hop.setdefault(hop.id, set()).add(key)

    def mark_received(self, key: Key, sender_id: int, deadline: float) -> None:
        held = self._sent.get(key)
        if held is None or held.hop is None or held.hop.id != sender_id:
            return
        del self._sent[key]
        if not self._sent:
            self._sent.clear()
        held.deadline = deadline
        self._received[key] = held

    def pop_done(self, key: Key, sender_id: int) -> Held | None:
        """Remove and return the envelope if ``sender_id`` is the hop it was given to."""
        held = self.get(key)
        if held is None or held.hop is None or held.hop.id != sender_id:
            return None
        return self.remove(key)

    def remove(self, key: Key) -> Held | None:
        held = self._sent.pop(key, None)
        if held is None:
            held = self._received.pop(key, None)
        if held is not None:
            self._unlink(key, held)
            if not self._sent and not self._received:
                self._release()
        return held

    def _release(self) -> None:
        # An emptied dict keeps its hash table; clear() frees it. Most nodes of a large
        # simulation hold nothing most of the time, and 700 bytes each adds up.
        self._sent.clear()
        self._received.clear()
        self.by_hop.clear()

    def _unlink(self, key: Key, held: Held) -> None:
        if held.hop is not None:
            s = self.by_hop.get(held.hop.id)
            if s is not None:
                s.discard(key)
                if not s:
                    del self.by_hop[held.hop.id]

    def held_by(self, hop_id: int) -> list[Key]:
        return list(self.by_hop.get(hop_id, ()))

    def next_deadline(self) -> float | None:
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
        for d, acc in ((self._sent, out[0]), (self._received, out[1])):
            for key, held in d.items():
                if held.deadline > now:
                    break
                acc.append(key)
        return out
