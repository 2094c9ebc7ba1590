"""Operator signals for a serving process: the first SIGINT/SIGTERM leaves gracefully, a
second stops at once (crash-only: the ring heals either way)."""

from __future__ import annotations

import logging
import math
import signal
from collections.abc import Awaitable, Callable

import trio

from .logfmt import log_event


async def serve_until_signalled(serve: Callable[[], Awaitable[object]],
                                shutdown: Callable[[], Awaitable[object]],
                                stop: Callable[[], object], log: logging.Logger) -> None:
    """Run ``serve()``; on the first signal start ``shutdown()``, on the second call ``stop()``."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async def watch() -> None:
                count = 0
                async for sig in signals:
                    count += 1
                    log_event(log, logging.INFO, "signal", signal=signal.Signals(sig).name,
                              action="leave" if count == 1 else "stop")
                    if count == 1:
                        nursery.start_soon(shutdown)
                    else:
                        stop()

            nursery.start_soon(watch)
            await serve()
            nursery.cancel_scope.cancel()


async def hold_until_interrupted(signals: trio.abc.ReceiveChannel | object, duration: float | None,
                                 shutdown: Callable[[], Awaitable[object]]) -> None:
    """For the local-cluster commands: say so, wait for a signal (or ``duration`` seconds),
    then leave gracefully."""
    print("running; Ctrl-C to leave the ring gracefully and stop", flush=True)
    with trio.move_on_after(duration if duration else math.inf):
        async for _ in signals:  # type: ignore[attr-defined]
            break
    print("leaving...", flush=True)
    await shutdown()
