"""Relayed envelope frames, as the core hands them to the live shell.

A module of its own, never compiled (see ring.compiled): a compiled module cannot define a
subclass of list.
"""

from __future__ import annotations


class RelayedFrames(list):  # type: ignore[type-arg]
    """Envelope frames relayed to one hop, as ``RingNode.handle_messages`` outputs them:
    byte strings (views of the read they came in), each one or more whole frames back to
    back, to be sent as they are; ``frames`` counts the frames. (A module of its own:
    a compiled module cannot define a subclass of list.)"""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0
