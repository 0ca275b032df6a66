"""Log output of the server: one ordered stream of lines on stdout, console or JSON.

Every line — start-up messages, the token banner, request lines, warnings of any library —
goes through one :class:`LogOutput`, so lines come out in the order they were produced and in
one format. Request lines are many: formatting them as a :class:`logging.LogRecord` and writing
each with a flush cost several times more than the request itself on a small machine, so they
are formatted directly and written in batches at most :data:`FLUSH_INTERVAL` later. Any other
line writes out the pending batch first, then itself, at once.

``console``: ``2026-01-02T03:04:05.678Z INFO  eventodb.http: POST /rpc 200 1.20ms rpc=...``.
``json``: one object per line with ``time``, ``level``, ``logger``, ``msg`` and the line's
fields (see docs/CONFIGURATION.md, "Logging").
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

from eventodb.core import jsoncodec

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
"""Accepted ``--log-level`` values (``warn`` and ``warning`` are the same)."""

FLUSH_INTERVAL = 0.05
"""Seconds a batched line may wait before it is written."""

Fields = Mapping[str, Any]


class LogOutput:
    """Writes log lines to ``stream`` in the order they are emitted, from any thread.

    Args:
        fmt: ``console`` or ``json``.
    """

    def __init__(self, stream: TextIO, fmt: str = "console") -> None:
        self.stream = stream
        self.json = fmt == "json"
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self._second = -1
        self._prefix = ""

    def emit(
        self,
        created: float,
        level: str,
        logger: str,
        msg: str,
        fields: Fields | None = None,
        *,
        batch: bool = False,
    ) -> None:
        """Format and write one line.

        Args:
            created: Unix time of the event.
            level: lower-case level name (``info``, ``error``, ...).
            fields: extra key/values (JSON fields, ``key=value`` pairs on the console).
            batch: the line may wait up to :data:`FLUSH_INTERVAL`; only from the event loop.
        """
        with self._lock:
            self._lines.append(self._format(created, level, logger, msg, fields))
            if not batch:
                self._flush_locked()
            elif not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    def write_text(self, text: str) -> None:
        """Write preformatted text as it is (the console banner), after any pending lines."""
        with self._lock:
            self._lines.append(text if text.endswith("\n") else text + "\n")
            self._flush_locked()

    def flush(self) -> None:
        """Write pending lines now (also called at exit)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._scheduled = False
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except (OSError, ValueError):  # stdout closed or gone: logging must never fail a request
            pass

    def _stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"

    def _format(
        self, created: float, level: str, logger: str, msg: str, fields: Fields | None
    ) -> str:
        stamp = self._stamp(created)
        if self.json:
            entry: dict[str, Any] = {"time": stamp, "level": level, "logger": logger, "msg": msg}
            if fields:
                entry.update(fields)
            return jsoncodec.dumps_str(entry) + "\n"
        line = f"{stamp} {_LEVEL_TEXT.get(level) or f'{level.upper():<5}'} {logger}: {msg}"
        if fields:
            line += "".join(f" {k}={console_value(v)}" for k, v in fields.items() if v is not None)
        return line + "\n"


_LEVEL_TEXT = {name: f"{name.upper():<5}" for name in ("debug", "info", "warning", "error")}
"""The console's level column, formatted once."""

_PLAIN = re.compile(r'[^\s"=]+')


def console_value(value: Any) -> str:
    """The value as is, or quoted (JSON string syntax) when it has blanks, quotes or ``=``."""
    text = value if type(value) is str else str(value)
    return text if _PLAIN.fullmatch(text) else jsoncodec.dumps_str(text)


_TRACEBACK = logging.Formatter()


class _Handler(logging.Handler):
    """Routes :mod:`logging` records to the :class:`LogOutput`.

    Structured fields travel as ``extra={"fields": {...}}``.
    """

    def __init__(self, output: LogOutput) -> None:
        super().__init__()
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
            if record.exc_info:
                trace = _TRACEBACK.formatException(record.exc_info)
                if self.output.json:
                    fields["exception"] = trace
                else:
                    msg = f"{msg}\n{trace}"
            self.output.emit(record.created, record.levelname.lower(), record.name, msg, fields)
        except Exception:  # noqa: BLE001 - logging's own convention for a failing handler
            self.handleError(record)


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> LogOutput:
    """Send every logger to one :class:`LogOutput` on ``stream`` (stdout by default).

    Args:
        level: a key of :data:`LEVELS` (the CLI refuses anything else).
        fmt: ``console`` or ``json``.
    """
    output = LogOutput(stream or sys.stdout, fmt)
    root = logging.getLogger()
    root.handlers[:] = [_Handler(output)]
    root.setLevel(LEVELS[level])
    # uvicorn's own start/stop lines duplicate ours.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    atexit.register(output.flush)
    return output
