"""ringmesh ring: the sans-IO Chord routing core and its drivers.

The core modules (keyspace, ids, messages, wire, routing, custody, config, events, node) take
messages and ``now`` and return addressed messages; they never touch sockets, tasks or clocks.
"""

from .config import RingConfig as RingConfig
from .keyspace import KeySpace as KeySpace
from .messages import Envelope as Envelope, Flags as Flags, NodeRef as NodeRef
from .node import NodeState as NodeState, RingNode as RingNode
