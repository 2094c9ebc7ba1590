"""The errors of ring.wire, in a module of their own: never compiled (see ring.compiled),
as a compiled module cannot define a subclass of RuntimeError. Import them from ring.wire."""

from __future__ import annotations


class WireError(Exception):
    """The peer sent bytes that are not a valid ringmesh frame (a remote error)."""


class FrameTooLarge(WireError):
    pass


class MalformedMessage(WireError):
    pass


class UnsupportedVersion(MalformedMessage):
    pass


class DecoderClosed(RuntimeError):
    """Local misuse: the decoder already failed fatally and must not be fed again."""
