"""One log line per HTTP request, cheap enough for the hot path.

A line carries the method, path, RPC method, status, duration, namespace and request id (never
the query string, which may hold a token, nor any payload). Status 500 and above is logged at
error level with the cause, at once; other lines are batched by :class:`eventodb.logs.LogOutput`
(written at most 50 ms later, still in order with every other log line).
"""

from __future__ import annotations

import logging
import time

from eventodb.logs import LogOutput, console_value

log = logging.getLogger("eventodb.http")

QUOTED_LIMIT = 1024
"""Console spellings of RPC method names and namespaces kept (see RequestLog._console_text)."""


class RequestLog:
    """Records request lines.

    Args:
        output: where lines go; ``None`` sends them through :mod:`logging` (in-process use,
            tests).
        enabled: ``False`` drops the lines of requests below status 500 (log level above info).
    """

    def __init__(self, output: LogOutput | None = None, *, enabled: bool = True) -> None:
        self.output = output
        self.enabled = enabled
        self._quoted: dict[str, str] = {}

    def __call__(
        self,
        method: str,
        path: str,
        status: int,
        millis: float,
        rpc: str | None,
        namespace: str | None,
        request_id: str,
        error: str | None,
    ) -> None:
        """Log one finished request; ``error`` is the cause of a 5xx (exception class: message)."""
        level = _level_of(status)
        if level == "info" and not self.enabled:
            return
        message = f"{method} {path} {status} {millis:.2f}ms"
        output = self.output
        if output is not None and not output.json:
            # The console message already says method, path, status and duration; the other
            # fields follow as key=value pairs, written straight into the line (no mapping of
            # fields per request: this runs for every request).
            if rpc is not None:
                message += f" rpc={self._console_text(rpc)}"
            if namespace is not None:
                message += f" ns={self._console_text(namespace)}"
            message += f" id={console_value(request_id)}"
            if error is not None:
                message += f" error={console_value(error)}"
            output.emit(time.time(), level, "eventodb.http", message, batch=level == "info")
            return
        fields: dict[str, object] = {
            "method": method,
            "path": path,
            "rpc": rpc,
            "status": status,
            "duration_ms": round(millis, 2),
            "namespace": namespace,
            "request_id": request_id,
        }
        if error is not None:
            fields["error"] = error
        if output is None:
            log.log(_LOGGING_LEVELS[level], message, extra={"fields": fields})
        else:
            output.emit(time.time(), level, "eventodb.http", message, fields, batch=level == "info")

    def _console_text(self, value: str) -> str:
        """``value`` as the console shows it, remembered: RPC method names and namespaces repeat
        from request to request (at most :data:`QUOTED_LIMIT` are kept)."""
        text = self._quoted.get(value)
        if text is None:
            if len(self._quoted) >= QUOTED_LIMIT:
                self._quoted.clear()
            text = self._quoted[value] = console_value(value)
        return text

    def flush(self) -> None:
        """Write pending lines now (at shutdown)."""
        if self.output is not None:
            self.output.flush()


_LOGGING_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _level_of(status: int) -> str:
    """How a finished request is logged.

    A 500 is a fault of the server or its store: ``error``, always logged with its cause. A 503
    says "not now" (the in-flight cap, ``/ready`` while the store is away): ``warning``, still
    logged when request lines are off, but not an error — the cap answers before any token is
    checked, so anyone could otherwise fill the error log with it. Everything else is
    ``info``, logged only when request lines are on.
    """
    if status == 503:
        return "warning"
    return "error" if status >= 500 else "info"
