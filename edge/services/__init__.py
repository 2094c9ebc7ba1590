"""Built-in ring entities: pure functions from a stanza to the reply stanzas.

Each module is one feature (disco, ping, version, echo) with the namespaces it answers;
:mod:`.dispatch` routes a stanza addressed to a ring domain or entity to them and applies
the RFC 6121 default for addresses nobody serves.
"""

from .dispatch import RingServices

__all__ = ["RingServices"]
