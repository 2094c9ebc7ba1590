"""What the node core tells its driver, one frozen dataclass per kind."""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Envelope, ErrorReport, NodeRef


@dataclass(frozen=True, slots=True)
class Delivered:
    """An envelope reached the node responsible for its destination key (this one)."""

    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Confirmed:
    """An envelope this node originated was delivered (the confirmation came back)."""

    msg_id: int
    dest: int


@dataclass(frozen=True, slots=True)
class Undeliverable:
    """An envelope this node originated could not be delivered."""

    report: ErrorReport


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """A routing probe came back: the nodes it crossed, origin first, responsible node last."""

    msg_id: int
    dest: int
    trace: tuple[int, ...]
    hops: int


@dataclass(frozen=True, slots=True)
class LookupDone:
    req_id: int
    key: int
    successor: NodeRef
    hops: int


@dataclass(frozen=True, slots=True)
class LookupFailed:
    req_id: int
    key: int


@dataclass(frozen=True, slots=True)
class Joined:
    successor: NodeRef


@dataclass(frozen=True, slots=True)
class JoinFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class SuccessorChanged:
    old: NodeRef | None
    new: NodeRef | None


@dataclass(frozen=True, slots=True)
class PredecessorChanged:
    old: NodeRef | None
    new: NodeRef | None


@dataclass(frozen=True, slots=True)
class PeerSuspected:
    peer: NodeRef
    reason: str


Event = (
    Delivered | Confirmed | Undeliverable | ProbeResult | LookupDone | LookupFailed | Joined
    | JoinFailed | SuccessorChanged | PredecessorChanged | PeerSuspected
)
