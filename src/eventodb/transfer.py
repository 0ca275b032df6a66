"""``eventodb export`` and ``eventodb import``: NDJSON over HTTP (SPEC §7.1, §7.3, §7.4).

Both are clients of a running server. Export pages through ``category.get`` (there is no export
endpoint); import streams the file to ``POST /import`` without loading it into memory and reads
the server's ``data:`` events.
"""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from eventodb.config import (
    EXPORT_FLAGS,
    IMPORT_FLAGS,
    Flag,
    FlagError,
    HelpRequested,
    parse_flags,
    usage,
)
from eventodb.core import jsoncodec, timefmt

HTTP_TIMEOUT = 30.0
PAGE_SIZE = 1000
UPLOAD_CHUNK = 64 * 1024


class _Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


class _Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...
    def seek(self, offset: int, /) -> object: ...


class TransferError(Exception):
    """A run-time failure: printed as ``Error: <text>``, exit status 1."""


class _Progress:
    """``\\r``-rewritten status line on stderr; errors start on a line of their own."""

    def __init__(self) -> None:
        self.open = False

    def show(self, text: str) -> None:
        sys.stderr.write(f"\r{text}")
        sys.stderr.flush()
        self.open = True

    def finish(self, text: str) -> None:
        sys.stderr.write(f"\r{text}\n")
        self.open = False

    def fail(self, error: BaseException) -> int:
        sys.stderr.write(("\n" if self.open else "") + f"Error: {error}\n")
        return 1


def _flags(
    command: str, args: Sequence[str], flags: Sequence[Flag], env: Mapping[str, str]
) -> dict[str, Any] | int:
    """The flag values, or the exit status when usage was printed instead."""
    text = f"Usage: eventodb {command} [flags]\n\n{usage(flags)}\n"
    try:
        values, _ = parse_flags(args, flags, env)
    except HelpRequested:
        sys.stdout.write(text)
        return 0
    except FlagError as exc:
        sys.stderr.write(f"{exc}\n\n{text}")
        return 2
    for name in ("url", "token"):
        if not values[name]:
            sys.stderr.write(f"Error: --{name} is required\n")
            return 1
    return values


def _client(token: str) -> httpx.Client:
    return httpx.Client(timeout=HTTP_TIMEOUT, headers={"Authorization": f"Bearer {token}"})


def _body_text(response: httpx.Response) -> str:
    return response.content.decode("utf-8", "replace").strip()


# -- export ------------------------------------------------------------------------------------


def parse_bound(text: str, flag: str) -> datetime:
    """``--since``/``--until``: RFC 3339, or ``YYYY-MM-DD`` meaning UTC midnight.

    Raises:
        TransferError: neither form.
    """
    try:
        if len(text) == 10:
            return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
        return timefmt.parse_time(text)
    except ValueError:
        raise TransferError(
            f"invalid --{flag} value {text!r}: use RFC 3339 or YYYY-MM-DD"
        ) from None


def export_record(message: list[Any]) -> bytes:
    """A ``category.get`` message → one NDJSON line (keys in §7.1 order, whole-second time)."""
    message_id, stream, kind, position, global_position, data, metadata, time = message
    record = {
        "id": message_id,
        "stream": stream,
        "type": kind,
        "pos": position,
        "gpos": global_position,
        "data": data,
        "meta": metadata,
        "time": timefmt.format_seconds(timefmt.parse_time(time)),
    }
    return jsoncodec.dumps(record) + b"\n"


def _export(values: Mapping[str, Any], out: _Writer, progress: _Progress) -> int:
    categories = [c.strip() for c in str(values["categories"] or "").split(",")]
    categories = [c for c in categories if c] or [""]
    since = parse_bound(values["since"], "since") if values["since"] else None
    until = parse_bound(values["until"], "until") if values["until"] else None
    url = str(values["url"]).rstrip("/") + "/rpc"
    exported = 0
    with _client(str(values["token"])) as client:
        for category in categories:
            position = 0
            while True:
                request = ["category.get", category, {"position": position, "batchSize": PAGE_SIZE}]
                response = client.post(url, content=jsoncodec.dumps(request))
                if response.status_code != 200:
                    raise TransferError(f"HTTP {response.status_code}: {_body_text(response)}")
                page = jsoncodec.loads(response.content)
                if not page:
                    break
                for message in page:
                    if since is not None or until is not None:
                        when = timefmt.parse_time(message[7])
                        if (since is not None and when < since) or (
                            until is not None and when >= until
                        ):
                            continue
                    out.write(export_record(message))
                    exported += 1
                progress.show(f"Exported: {exported} events...")
                position = int(page[-1][4]) + 1
    return exported


def run_export(args: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    """``eventodb export`` (SPEC §7.3); returns the exit status."""
    values = _flags("export", args, EXPORT_FLAGS, env)
    if isinstance(values, int):
        return values
    progress = _Progress()
    try:
        with ExitStack() as stack:
            if values["output"]:
                out: _Writer = stack.enter_context(open(values["output"], "wb"))
            else:
                out = sys.stdout.buffer
            if values["gzip"]:
                out = stack.enter_context(gzip.GzipFile(fileobj=out, mode="wb"))
            exported = _export(values, out, progress)
            out.flush()
    except (TransferError, OSError, httpx.HTTPError, jsoncodec.JSONError) as exc:
        return progress.fail(exc)
    progress.finish(f"Exported: {exported} events total")
    return 0


# -- import ------------------------------------------------------------------------------------


def _chunks(source: _Reader) -> Iterator[bytes]:
    while chunk := source.read(UPLOAD_CHUNK):
        yield chunk


def _confirmed() -> bool:
    sys.stderr.write(
        "WARNING: --force deletes ALL existing messages in the namespace before importing.\n"
        "Continue? [y/N]: "
    )
    sys.stderr.flush()
    # The binary buffer, not sys.stdin: the text layer would read ahead into piped data.
    answer = sys.stdin.buffer.readline().decode("utf-8", "replace").strip().lower()
    return answer in ("y", "yes")


def _import(values: Mapping[str, Any], source: _Reader, progress: _Progress) -> None:
    """Upload ``source`` and follow the events. Raises: TransferError, httpx.HTTPError."""
    url = str(values["url"]).rstrip("/") + "/import"
    params = {"force": "true"} if values["force"] else None
    headers = {"Content-Type": "application/x-ndjson"}
    with (
        _client(str(values["token"])) as client,
        client.stream(
            "POST", url, params=params, headers=headers, content=_chunks(source)
        ) as response,
    ):
        if response.status_code != 200:
            response.read()
            raise TransferError(
                f"server error (HTTP {response.status_code}): {_body_text(response)}"
            )
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = jsoncodec.loads(line[6:])
            if "error" in event:
                where = f" (line {event['line']})" if event.get("line") else ""
                raise TransferError(f"{event['error']}: {event.get('message', '')}{where}")
            if event.get("done"):
                progress.finish(f"Imported: {event['imported']} events in {event['elapsed']}")
                return
            progress.show(f"Imported: {event['imported']} events (gpos: {event['gpos']})...")
    raise TransferError("the server ended the import without a result")


def run_import(args: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    """``eventodb import`` (SPEC §7.4); returns the exit status."""
    values = _flags("import", args, IMPORT_FLAGS, env)
    if isinstance(values, int):
        return values
    progress = _Progress()
    try:
        with ExitStack() as stack:
            if values["input"]:
                source: _Reader = stack.enter_context(open(values["input"], "rb"))
            else:
                source = sys.stdin.buffer
            if values["force"] and not _confirmed():
                sys.stderr.write("Import cancelled.\n")
                return 0
            if values["gzip"]:
                source = stack.enter_context(gzip.GzipFile(fileobj=source, mode="rb"))
            _import(values, source, progress)
    except (TransferError, OSError, httpx.HTTPError, jsoncodec.JSONError, EOFError) as exc:
        return progress.fail(exc)
    return 0
