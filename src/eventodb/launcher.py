"""Entry point of the ``eventodb`` command and ``python -m eventodb``.

The command needs the server's dependencies, which a client-only install (``pip install
eventodb``) leaves out; without them it says how to get them instead of failing with an import
error. Everything else is :mod:`eventodb.cli`.
"""

from __future__ import annotations

import sys

SERVER_MODULES = frozenset(
    {"orjson", "uuid_utils", "asyncpg", "uvicorn", "uvloop", "httptools", "prometheus_client"}
)
"""Top-level modules of the ``server`` extra."""


def main() -> int:
    """Run :func:`eventodb.cli.main`; exit status 1 with a hint when the server's dependencies
    are not installed."""
    try:
        from eventodb.cli import main as cli_main
    except ModuleNotFoundError as exc:
        if exc.name not in SERVER_MODULES:
            raise
        sys.stderr.write(
            f"Error: the eventodb command needs the server's dependencies ({exc.name} is not"
            " installed): pip install 'eventodb[server]'\n"
        )
        return 1
    return cli_main()
