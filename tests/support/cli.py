"""The ``eventodb`` command run to completion in a subprocess, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CLI_TIMEOUT = 60.0


def _run(
    args: tuple[str, ...], *, text: bool, stdin: bytes, cwd: Path | None, env: dict[str, str] | None
) -> subprocess.CompletedProcess[Any]:
    # The tests' own EVENTODB_* settings (the Postgres URL of the session) must not configure
    # the command under test: only ``env`` does.
    base = {k: v for k, v in os.environ.items() if not k.startswith("EVENTODB_")}
    return subprocess.run(
        [sys.executable, "-m", "eventodb", *args],
        input=stdin.decode() if text else stdin,
        capture_output=True,
        text=text,
        timeout=CLI_TIMEOUT,
        cwd=cwd,
        env=base | (env or {}),
        check=False,
    )


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command's exit status and output as text (newlines normalised)."""
    result: subprocess.CompletedProcess[str] = _run(args, text=True, stdin=b"", cwd=cwd, env=env)
    return result


def run_cli_bytes(
    *args: str, stdin: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The command's exit status and output as bytes, with ``stdin`` as its input (the
    export/import tests compare output byte for byte)."""
    result: subprocess.CompletedProcess[bytes] = _run(
        args, text=False, stdin=stdin, cwd=cwd, env=None
    )
    return result
