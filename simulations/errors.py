"""The simulator's errors, kept apart from the kernel that raises them: the kernel may be
compiled (see ``ring.compiled``), and a compiled class cannot derive from RuntimeError."""

from __future__ import annotations


class EventLimitExceeded(RuntimeError):
    """A run processed more events than its limit: a runaway scenario, stopped on purpose."""
