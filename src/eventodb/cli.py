"""The ``eventodb`` command (SPEC §10): ``serve`` (also implied by leading flags), ``version``,
``help``, and the NDJSON clients ``export``/``import`` (:mod:`eventodb.transfer`).

Flags follow Go's syntax (see :mod:`eventodb.config` for why we parse them ourselves).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence

from eventodb import __version__
from eventodb.config import (
    FlagError,
    HelpRequested,
    UnsupportedScheme,
    load_settings,
    resolve_backend,
    usage,
)
from eventodb.core import jsoncodec

log = logging.getLogger("eventodb")

BANNER = f"EventoDB {__version__} - a Message DB compatible event store (Python)"

HELP = f"""{BANNER}

Usage:
  eventodb [flags]                 run the server (same as 'serve')
  eventodb serve [flags]           run the server
  eventodb export --url U --token T [--categories a,b] [--since T] [--until T]
                  [--gzip] [--output FILE]
                                   write a namespace's messages as NDJSON
  eventodb import --url U --token T [--input FILE] [--gzip] [--force]
                                   load NDJSON into the token's namespace
  eventodb version [--full]        print the version
  eventodb help                    show this help

Server flags (-name value, -name=value, --name value, --name=value; booleans -name):
{usage()}

Without --db-url and without --test-mode the server keeps its data in SQLite files under
--data-dir (default ./eventodb-data). --test-mode alone runs in memory.
"""

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _JSONFormatter(logging.Formatter):
    """One compact JSON object per line (``--log-format json``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "level": record.levelname.lower(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return jsoncodec.dumps_str(entry)


def configure_logging(level: str, fmt: str) -> None:
    """Logs go to stdout (SPEC §10.3); unknown levels mean info."""
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(_JSONFormatter())
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%SZ"
        )
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # uvicorn's own start/stop lines duplicate ours.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


def _fail(message: str) -> int:
    sys.stderr.write(f"Error: {message}\n")
    return 1


def run_serve(args: Sequence[str]) -> int:
    from eventodb.api.server import StartupError, serve

    try:
        settings = load_settings(args, os.environ)
    except HelpRequested:
        sys.stdout.write(HELP)
        return 0
    except FlagError as exc:
        sys.stderr.write(f"{exc}\n\n{HELP}")
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.extra:
        log.warning("ignoring extra arguments: %s", " ".join(settings.extra))
    try:
        backend = resolve_backend(settings)
    except UnsupportedScheme as exc:
        log.critical("%s", exc)
        return _fail(str(exc))
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(serve(settings, backend))
    except StartupError as exc:
        log.critical("start-up failed: %s", exc)
        return _fail(str(exc))


def run_version(args: Sequence[str]) -> int:
    if any(a in ("--full", "-full", "-f", "--f") for a in args):
        sys.stdout.write(f"{BANNER}\nVersion: {__version__}\nCommit: unknown\nBuilt: unknown\n")
    else:
        sys.stdout.write(f"{__version__}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``eventodb`` command; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        sys.stdout.write(HELP)
        return 0
    command, rest = args[0], args[1:]
    if command in ("version", "--version", "-version", "-v", "--v"):
        return run_version(rest)
    if command in ("help", "--help", "-help", "-h", "--h"):
        sys.stdout.write(HELP)
        return 0
    if command == "serve":
        return run_serve(rest)
    if command in ("export", "import"):
        from eventodb import transfer

        return (transfer.run_export if command == "export" else transfer.run_import)(rest)
    if command.startswith("-"):
        return run_serve(args)
    sys.stderr.write(f"Unknown command: {command}\n\n{HELP}")
    return 2
