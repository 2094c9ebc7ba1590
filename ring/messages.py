"""The messages ring nodes exchange, one frozen dataclass per kind.

Nodes are named by ``NodeRef`` (id plus an opaque address: ``host:port`` for a live node, any
string in a simulation). The sender of a message is not part of it: the link it arrived on
names the sender (a TLS-authenticated peer, or the simulator's bookkeeping), so a node cannot
claim to speak for another.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

WIRE_VERSION = 2

# The messages every maintenance round makes write their own __init__ (init=False): the
# dataclasses module writes one at import that stays interpreted in the compiled build (see
# ring.compiled), where it was most of what making such a message cost. Frozen all the same:
# the fields are set through object.__setattr__, as the generated one does.
_set = object.__setattr__


@dataclass(frozen=True, slots=True)
class NodeRef:
    id: int
    addr: str
    # A driver's own number for the node (the simulator's index of it; -1: none). Not part
    # of the reference: never compared, hashed or sent. It spares the simulator a look-up
    # by address for every message it carries.
    slot: int = field(default=-1, compare=False, repr=False)


class Flags(enum.IntFlag):
    NONE = 0
    TRACE = 1  # every node on the path appends its id to ``trace``
    ERROR = 2  # payload is an ErrorReport about an envelope this node's origin sent
    FINAL = 4  # the sender believes the receiver is responsible for ``dest``
    PROBE = 8  # a routing probe: delivered to the node, never to an application
    REPLY = 16  # the answer to a probe, travelling back to the probe's origin
    LOOKUP = 32  # a probe asking who is responsible: answered directly to the asker


# The same bits as plain ints: an IntFlag operation builds a new enum member (about 0.4 us),
# and envelopes test their flags several times per hop.
F_TRACE, F_ERROR, F_FINAL, F_PROBE, F_REPLY, F_LOOKUP = (int(f) for f in (
    Flags.TRACE, Flags.ERROR, Flags.FINAL, Flags.PROBE, Flags.REPLY, Flags.LOOKUP))
F_KNOWN = F_TRACE | F_ERROR | F_FINAL | F_PROBE | F_REPLY | F_LOOKUP


class ErrorCode(enum.IntEnum):
    TTL_EXPIRED = 1
    NO_ROUTE = 2
    LOOP = 3
    RETRIES_EXHAUSTED = 4
    NODE_LEAVING = 5
    CONGESTED = 6


class Envelope(NamedTuple):
    """A stanza (or any opaque payload) travelling hop by hop towards ``dest``.

    The one message built twice per hop for every stanza (decoded, then forwarded), so it is
    an immutable NamedTuple rather than a frozen dataclass: construction costs about 180 ns
    instead of 650 ns. Change a field with ``env._replace(...)``.
    """

    msg_id: int
    origin: int
    dest: int
    ttl: int
    hops: int
    flags: int  # bits of Flags, kept a plain int for speed
    payload: bytes
    trace: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """Why an envelope could not be delivered; carried as the payload of an ERROR envelope."""

    code: ErrorCode
    msg_id: int
    dest: int
    at_node: int


class AckKind(enum.IntEnum):
    RECEIVED = 0  # the next hop has them and is alive: keep waiting
    DELIVERED = 1  # they reached their destination: drop the copies
    FAILED = 2  # given up downstream (the origin gets an error report): drop the copies


def envelope_key(origin: int, msg_id: int) -> int:
    """The one integer naming an envelope everywhere: origin id and message id side by side.

    Exact (no hashing), cheaper than an (origin, msg_id) tuple as a dict key, and its
    big-endian bytes are the ack record on the wire.
    """
    return (origin << 64) | msg_id


@dataclass(frozen=True, slots=True, init=False)
class Ack:
    """Acknowledgements of envelopes, batched: ``ids`` are envelope keys (``envelope_key``).

    A sender keeps its copy until DELIVERED or FAILED comes back, not merely RECEIVED:
    holding a copy until the outcome is known is what lets an envelope survive the death
    of any node on its path.
    """

    kind: AckKind
    ids: tuple[int, ...]

    def __init__(self, kind: AckKind, ids: tuple[int, ...]) -> None:
        _set(self, "kind", kind)
        _set(self, "ids", ids)


@dataclass(frozen=True, slots=True)
class FindSuccessor:
    """Recursive lookup: who is responsible for ``key``? The answer goes to ``requester``."""

    req_id: int
    key: int
    requester: NodeRef
    hops: int
    ttl: int


@dataclass(frozen=True, slots=True)
class FoundSuccessor:
    req_id: int
    key: int
    successor: NodeRef
    hops: int


@dataclass(frozen=True, slots=True, init=False)
class GetNeighbours:
    """Asks a node for its predecessor and successor list (stabilize, finger checks).

    ``notify``: the asker thinks it is the node's predecessor (Chord's notify, carried by
    the stabilize question instead of a message of its own)."""

    req_id: int
    notify: bool

    def __init__(self, req_id: int, notify: bool = False) -> None:
        _set(self, "req_id", req_id)
        _set(self, "notify", notify)


@dataclass(frozen=True, slots=True, init=False)
class Neighbours:
    req_id: int
    predecessor: NodeRef | None
    successors: tuple[NodeRef, ...]

    def __init__(self, req_id: int, predecessor: NodeRef | None,
                 successors: tuple[NodeRef, ...]) -> None:
        _set(self, "req_id", req_id)
        _set(self, "predecessor", predecessor)
        _set(self, "successors", successors)


@dataclass(frozen=True, slots=True)
class GetFingers:
    """A node that has just joined asks its successor for its fingers, as hints for its own:
    two nodes side by side have mostly the same fingers (Chord's join, "init_finger_table")."""

    req_id: int


@dataclass(frozen=True, slots=True)
class Fingers:
    req_id: int
    fingers: tuple[NodeRef, ...]


@dataclass(frozen=True, slots=True)
class Notify:
    """"I think I am your predecessor." """


@dataclass(frozen=True, slots=True, init=False)
class Ping:
    req_id: int

    def __init__(self, req_id: int) -> None:
        _set(self, "req_id", req_id)


@dataclass(frozen=True, slots=True, init=False)
class Pong:
    req_id: int

    def __init__(self, req_id: int) -> None:
        _set(self, "req_id", req_id)


@dataclass(frozen=True, slots=True)
class Leave:
    """Graceful departure: here are my neighbours, take them over."""

    predecessor: NodeRef | None
    successors: tuple[NodeRef, ...]


@dataclass(frozen=True, slots=True)
class Hello:
    """First message on a link: who the sender says it is (checked against its certificate)."""

    node: NodeRef


Message = (
    Envelope
    | Ack
    | FindSuccessor
    | FoundSuccessor
    | GetNeighbours
    | Neighbours
    | GetFingers
    | Fingers
    | Notify
    | Ping
    | Pong
    | Leave
    | Hello
)
