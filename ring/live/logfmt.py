"""One structured line per meaningful event: ``ts level event key=value ...``.

Operators grep and ship these lines, so every value is a single token: values with spaces,
quotes or ``=`` are quoted JSON-style. ``log_event`` is the only way the live shell logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def _token(v: object) -> str:
    s = v if isinstance(v, str) else str(v)
    if not s or any(c in s for c in ' "=\t\n\r\\'):
        return json.dumps(s)
    return s


def format_fields(event: str, fields: dict[str, object]) -> str:
    parts = [f"event={event}"]
    parts.extend(f"{k}={_token(v)}" for k, v in fields.items() if v is not None)
    return " ".join(parts)


def log_event(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, "%s", format_fields(event, fields))


class LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"ts={t}.{int(record.msecs):03d}Z level={record.levelname.lower()} {record.getMessage()}"
        if record.exc_info:
            line += " exc=" + _token(self.formatException(record.exc_info).splitlines()[-1])
        return line


def setup_logging(level: str = "info", stream=None) -> None:  # noqa: ANN001 - any text stream
    """Route the ``ringmesh`` loggers to ``stream`` (stderr) at ``level``."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: choose one of {', '.join(LEVELS)}")
    root = logging.getLogger("ringmesh")
    for h in list(root.handlers):
        root.removeHandler(h)
    h = logging.StreamHandler(stream or sys.stderr)
    h.setFormatter(LineFormatter())
    root.addHandler(h)
    root.setLevel(LEVELS[level])
    root.propagate = False
