"""Ring parameters: every interval, timeout and limit of the node core in one frozen object.

Defaults suit a live ring on a LAN (sub-millisecond links). Simulations with wide-area
latencies scale the timeouts; the Chord experiments set the stabilization interval to 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .keyspace import KeySpace
from .routing import default_successor_list_length


@dataclass(frozen=True)
class RingConfig:
    space: KeySpace = field(default_factory=KeySpace)
    expected_nodes: int = 1024
    successor_list_length: int | None = None  # None: 2*ceil(log2 expected_nodes), >= 8

    # The three maintenance intervals are run by one tick (the shortest of them); the others
    # are rounded to whole multiples of it (see maintenance_plan).
    stabilize_interval: float = 1.0
    fix_fingers_interval: float = 0.5
    check_predecessor_interval: float = 2.0
    jitter: float = 0.5  # each maintenance tick is drawn from tick * [1 - jitter, 1 + jitter]

    rpc_timeout: float = 1.0  # a maintenance request unanswered this long: peer suspected
    lookup_timeout: float = 4.0  # a recursive lookup unanswered this long has failed
    join_attempts: int = 5

    ack_timeout: float = 1.0  # next hop did not confirm receipt: suspected, re-route
    custody_timeout: float = 10.0  # receipt confirmed but not delivered: send again
    max_retries: int = 4  # sends again of one envelope (delivery unconfirmed) before giving up
    # Silent next hops one envelope is re-routed around before giving up. Counted apart from
    # max_retries: each is dropped from the table as it is found, so the next choice has
    # learnt from it, and after a mass failure several candidates in a row may be dead.
    max_reroutes: int = 16

    default_ttl: int = 64
    max_custody: int = 100_000  # envelopes held awaiting delivery confirmation
    seen_capacity: int = 200_000  # (origin, msg_id) pairs remembered for duplicates
    seen_ttl: float = 120.0

    # (tick, k_stabilize, k_fingers, k_check_predecessor): the node runs one maintenance
    # timer of period ``tick`` (the shortest interval, jittered) and each task on every k-th
    # tick, k = its interval / tick rounded to a whole number. Tasks sharing a tick share
    # their wake-ups, and one wake-up serves all their requests' time limits. Worked out once
    # here (a property, compiled, would work it out again at every tick of every node).
    maintenance_plan: tuple[float, int, int, int] = field(init=False, repr=False,
                                                          compare=False)

    def __post_init__(self) -> None:
        if self.successor_list_length is not None and self.successor_list_length < 1:
            raise ValueError("successor_list_length must be at least 1")
        for name in ("stabilize_interval", "fix_fingers_interval", "check_predecessor_interval",
                     "rpc_timeout", "lookup_timeout", "ack_timeout", "custody_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if not 1 <= self.default_ttl <= 255:
            raise ValueError("default_ttl must be in 1..255")
        if self.max_retries < 0 or self.max_reroutes < 0:
            raise ValueError("max_retries and max_reroutes must be >= 0")
        tick = min(self.stabilize_interval, self.fix_fingers_interval,
                   self.check_predecessor_interval)
        plan = (tick, max(1, round(self.stabilize_interval / tick)),
                max(1, round(self.fix_fingers_interval / tick)),
                max(1, round(self.check_predecessor_interval / tick)))
        object.__setattr__(self, "maintenance_plan", plan)

    @property
    def r(self) -> int:
        if self.successor_list_length is not None:
            return self.successor_list_length
        return default_successor_list_length(self.expected_nodes)
