"""Shell sessions in Markdown, run for real: the ```` ```console ```` blocks of our docs.

A console block is a terminal transcript: a line starting with ``$ `` is a command (continued on
the next line while it ends with ``\\``), the lines up to the next command are what it prints.
:class:`Shell` runs the commands of a document in order, in one bash process, so variables set
by one command (``TOKEN=$(...)``) serve the next ones, exactly as a reader pasting them would.

Outputs are compared after :func:`normalise` (ids, times, tokens and durations differ at every
run) and, where the documented output is JSON, as JSON (so the docs may pretty-print it). An
output that starts with ``HTTP/`` (``curl -i``) is a status line, headers and a body: the status
line and body must match, and every header the docs show must be in the response (a real one
has a few more, e.g. ``date``).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CURL_TIMEOUT_STATUS = 28
"""curl's exit status when ``--max-time`` ended it: the expected end of an SSE example."""


@dataclass(frozen=True)
class Command:
    """One ``$`` command of a console block and its documented output."""

    text: str
    expected: str
    line: int
    """Line of the ``$`` in the Markdown file (for failure messages)."""


def console_commands(markdown: str) -> list[Command]:
    """Every command of every ```` ```console ```` block, in document order."""
    commands: list[Command] = []
    in_block = False
    current: list[str] | None = None
    output: list[str] = []
    start = 0

    def finish() -> None:
        nonlocal current, output
        if current is not None:
            commands.append(Command("\n".join(current), "\n".join(output), start))
        current, output = None, []

    continuing = False
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.startswith("```"):
            if in_block:
                finish()
            in_block = line.strip() == "```console" and not in_block
            continuing = False
            continue
        if not in_block:
            continue
        if continuing:
            assert current is not None
            current.append(line)
        elif line.startswith("$ "):
            finish()
            current, start = [line[2:]], number
        elif current is not None:
            output.append(line)
        continuing = current is not None and not output and line.rstrip().endswith("\\")
    return commands


_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
_TOKEN_RANDOM = re.compile(r"\b(ns_[A-Za-z0-9_-]+?)_[0-9a-f]{64}\b")
_ELAPSED = re.compile(r'("elapsed":\s*)"\d+\.\ds"')
_MILLISECONDS = re.compile(r'("duration_ms":\s*)\d+(?:\.\d+)?')
_REQUEST_ID = re.compile(r"(?im)^(x-request-id:\s*)\S+")


def normalise(text: str) -> str:
    """Replace what differs at every run: UUIDs, times, the random part of tokens, durations,
    generated request ids."""
    text = _UUID.sub("<uuid>", text)
    text = _TIME.sub("<time>", text)
    text = _TOKEN_RANDOM.sub(r"\1_<random>", text)
    text = _ELAPSED.sub(r'\1"<elapsed>"', text)
    text = _MILLISECONDS.sub(r"\g<1>0", text)
    return _REQUEST_ID.sub(r"\1<request-id>", text)


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _as_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()


def _bodies_match(expected: str, actual: str) -> bool:
    expected_json = _as_json(expected)
    if expected_json is not _NOT_JSON and expected.strip():
        return bool(expected_json == _as_json(actual))
    return _lines(expected) == _lines(actual)


def outputs_match(expected: str, actual: str) -> bool:
    """Whether ``actual`` is what the docs show (both already normalised)."""
    if not expected.startswith("HTTP/"):
        return _bodies_match(expected, actual)
    exp_head, _, exp_body = expected.replace("\r\n", "\n").partition("\n\n")
    act_head, _, act_body = actual.replace("\r\n", "\n").partition("\n\n")
    exp_status, *exp_headers = _lines(exp_head)
    act_status, *act_headers = _lines(act_head)
    if exp_status != act_status:
        return False
    present = {_header_key(h) for h in act_headers}
    if any(_header_key(h) not in present for h in exp_headers):
        return False
    return _bodies_match(exp_body, act_body)


def _header_key(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


class Shell:
    """One bash process running a document's commands in order.

    Args:
        env: the whole environment of the shell.
        rewrite: text replacements applied to every command (e.g. the documented
            ``localhost:8080`` to the test server's address).
    """

    def __init__(self, cwd: Path, env: Mapping[str, str], rewrite: Mapping[str, str]) -> None:
        self.rewrite = dict(rewrite)
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
        )
        self._selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)

    def run(self, command: str, timeout: float = 30.0) -> tuple[int, str]:
        """Run one command; returns its exit status and everything it printed."""
        for old, new in self.rewrite.items():
            command = command.replace(old, new)
        marker = f"__done_{uuid.uuid4().hex}__"
        script = f"{command}\nprintf '\\n{marker} %s\\n' \"$?\"\n"
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(script.encode())
        self.proc.stdin.flush()
        received = b""
        deadline = time.monotonic() + timeout
        pattern = re.compile(rb"\n" + marker.encode() + rb" (\d+)\n")
        while (match := pattern.search(received)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise AssertionError(f"no end of {command!r} after {timeout} s:\n{received!r}")
            if self._selector.select(min(left, 1.0)):
                received += self.proc.stdout.read() or b""
        return int(match.group(1)), received[: match.start()].decode("utf-8", "replace")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._selector.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def check_session(shell: Shell, commands: list[Command], source: str) -> None:
    """Run every command and compare its output with the documented one.

    A command must exit 0 — except an example that stops itself with ``--max-time`` (an SSE
    stream), which ends with curl's timeout status.
    """
    for command in commands:
        status, output = shell.run(command.text)
        where = f"{source}:{command.line}: {command.text}"
        allowed = {0, CURL_TIMEOUT_STATUS} if "--max-time" in command.text else {0}
        assert status in allowed, f"{where}\nexit status {status}, output:\n{output}"
        expected, actual = normalise(command.expected), normalise(output)
        assert outputs_match(expected, actual), (
            f"{where}\n--- documented ---\n{expected}\n--- actual ---\n{actual}"
        )
