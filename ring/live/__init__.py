"""Live ring nodes: the sans-IO core driven by trio over mutual-TLS TCP links.

- ``LiveNode`` (server): one node; links, timer, joining, graceful leave, delivery hooks.
- ``PeerLink`` (link): one connection and its coalescing writer.
- ``RingTls`` (tls): contexts from the ring CA; peers' ids checked against their keys.
- ``serve_admin`` / ``admin_call`` (admin): the local status/route channel.
- ``LocalCluster`` (cluster): N nodes on loopback with their own CA.
"""

from .limits import LiveLimits as LiveLimits
from .server import JoinError as JoinError, LiveNode as LiveNode
from .tls import RingTls as RingTls, TlsFiles as TlsFiles
