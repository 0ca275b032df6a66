"""``eventodb export``, ``eventodb import`` and ``eventodb copy``.

All three are clients of running servers (and, for ``import --from-message-db``, of a Message
DB database): export pages through ``category.get`` (there is no export endpoint), import
streams to ``POST /import``, copy does both without a file. Each shows progress, can resume,
and verifies the target at the end (docs/MIGRATION.md, "Export, import and copy").
"""

from __future__ import annotations

import asyncio
import gzip
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

from eventodb.config import (
    COPY_FLAGS,
    EXPORT_FLAGS,
    IMPORT_FLAGS,
    Flag,
    FlagError,
    HelpRequested,
    parse_flags,
    usage,
)
from eventodb.core import timefmt
from eventodb.core.errors import EventoDBError
from eventodb.transfer.progress import Progress
from eventodb.transfer.remote import Remote, TransferError
from eventodb.transfer.sources import Batch, FileSource, MessageDBSource, ServerSource


class Source(Protocol):
    unit: str
    total: int | None

    def batches(self) -> AsyncIterator[Batch]: ...


def parse_flags_or_exit(
    command: str,
    args: Sequence[str],
    flags: Sequence[Flag],
    env: Mapping[str, str],
    required: Sequence[str],
) -> dict[str, Any] | int:
    """The flag values, or the exit status when usage or an error was printed instead."""
    text = f"Usage: eventodb {command} [flags]\n\n{usage(flags)}\n"
    try:
        values, _ = parse_flags(args, flags, env)
    except HelpRequested:
        sys.stdout.write(text)
        return 0
    except FlagError as exc:
        sys.stderr.write(f"{text}\n{exc}\n")
        return 2
    for name in required:
        if not values[name]:
            sys.stderr.write(f"Error: --{name} is required\n")
            return 1
    return values


def fail(error: BaseException) -> int:
    sys.stderr.write(f"Error: {error}\n")
    return 1


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


def _categories(text: str | None) -> list[str]:
    found = [c.strip() for c in str(text or "").split(",")]
    return [c for c in found if c] or [""]


def _rate(count: int, seconds: float) -> str:
    return f"{count / max(seconds, 1e-9):,.0f} msg/s"


def _run(work: Callable[[], Any]) -> int:
    """Run the command's coroutine; every expected failure prints one ``Error:`` line."""
    try:
        result: int = asyncio.run(work())
    except (TransferError, EventoDBError, OSError, EOFError) as exc:
        return fail(exc)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        return 130
    return result


async def _source_head(remote: Remote) -> int:
    """Where to stop reading the source (its ``ns.head``), saying when the source cannot vouch
    that nothing more will appear below it."""
    head, settled = await remote.head()
    if settled is False:
        sys.stderr.write(
            f"Warning: the source cannot vouch that nothing more will appear at or below global"
            f" position {head} (writes still in flight after waiting for them): such a message"
            " would be missing here, and --resume would not add it.\n"
        )
    elif settled is None:
        sys.stderr.write(
            "Note: the source has no ns.head (the Go server): a write it commits below global"
            f" position {head} after this point would be missing here (stop its writers when"
            " that matters).\n"
        )
    return head


# -- export ------------------------------------------------------------------------------------


class _Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


def run_export(args: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    """``eventodb export``; returns the exit status."""
    values = parse_flags_or_exit("export", args, EXPORT_FLAGS, env, ("url", "token"))
    if isinstance(values, int):
        return values
    with ExitStack() as files:
        try:
            out: _Writer
            if values["output"]:
                out = files.enter_context(open(values["output"], "wb"))
            else:
                out = sys.stdout.buffer
            if values["gzip"]:
                compressed = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6)
                files.callback(compressed.close)
                out = compressed
        except OSError as exc:
            return fail(exc)
        status = _run(lambda: _export(values, out))
        if status == 0:
            out.flush()
    return status


async def _export(values: Mapping[str, Any], out: _Writer) -> int:
    since = parse_bound(values["since"], "since") if values["since"] else None
    until = parse_bound(values["until"], "until") if values["until"] else None
    categories = _categories(values["categories"])
    async with Remote(values["url"], values["token"]) as remote:
        last = await _source_head(remote)
        source = ServerSource(
            remote,
            categories,
            1,
            last,
            since=since,
            until=until,
            whole=bool(values["whole-seconds"]),
        )
        total = None
        if categories == [""] and since is None and until is None and last:
            total = source.total
        progress = Progress("Exported", total=total, interval=float(values["progress-interval"]))
        try:
            async for batch in source.batches():
                out.write(batch.body)
                progress.advance(batch.records)
        finally:
            progress.close()
    sys.stderr.write(
        f"Exported {progress.messages:,} messages (global positions up to {last}) in"
        f" {progress.elapsed:.1f}s ({_rate(progress.messages, progress.elapsed)})\n"
    )
    return 0


# -- import and copy: the common part ----------------------------------------------------------


@dataclass(slots=True)
class _Target:
    """The target namespace before the transfer (what verification compares against)."""

    remote: Remote
    count: int
    last: int


async def _prepare_target(
    remote: Remote, *, force: bool, resume: bool, yes: bool, verb: str
) -> _Target:
    """Confirm ``--force``, refuse a non-empty target without ``--resume``/``--force``.

    Raises:
        TransferError: cancelled, unconfirmable, or the target holds messages.
    """
    if force and resume:
        raise TransferError("--force and --resume exclude each other")
    if force:
        _confirm_force(remote.namespace, yes, verb)
        return _Target(remote, 0, 0)
    last = await remote.last_global_position()
    namespace = remote.namespace
    count = await remote.message_count() if last else 0
    if last and not resume:
        raise TransferError(
            f"namespace {namespace!r} at {remote.url} already holds {count:,} messages (up to"
            f" global position {last}): add --resume to continue an interrupted {verb.lower()},"
            " or --force to delete them first"
        )
    if last:
        sys.stderr.write(f"Resuming after global position {last} ({count:,} messages there).\n")
    return _Target(remote, count, last)


def _confirm_force(namespace: str, yes: bool, verb: str) -> None:
    if yes:
        return
    question = f"--force deletes ALL messages of namespace {namespace!r} first."
    if not sys.stdin.isatty():
        raise TransferError(f"{question} Add --yes to confirm (stdin is not a terminal).")
    sys.stderr.write(f"WARNING: {question}\nContinue? [y/N]: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise TransferError(f"{verb} cancelled.")


async def _transfer(
    source: Source,
    target: _Target,
    *,
    force: bool,
    verb: str,
    interval: float,
    where: Callable[[int], str],
) -> tuple[int, int]:
    """Upload ``source`` to the target, then verify it.

    Returns:
        Records sent and the highest global position among them.

    Raises:
        TransferError: the upload or the verification failed.
    """
    progress = Progress(verb, total=source.total, unit=source.unit, interval=interval)
    sent = highest = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, highest
        done = 0
        async for batch in source.batches():
            yield batch.body
            sent += batch.records
            highest = max(highest, batch.highest)
            progress.advance(batch.records, batch.progress - done)
            done = batch.progress

    try:
        imported = await target.remote.upload(body(), force=force, where=where)
    finally:
        progress.close()
    elapsed = progress.elapsed
    sys.stderr.write(
        f"{verb} {imported:,} messages in {elapsed:.1f}s ({_rate(imported, elapsed)})\n"
    )
    if imported != sent:
        raise TransferError(
            f"verification failed: sent {sent:,} messages, the server imported {imported:,}"
        )
    await _verify(target, sent, highest)
    return sent, highest


async def _verify(target: _Target, sent: int, highest: int) -> None:
    """The target must now hold what it held plus what was sent, up to the expected position."""
    count = await target.remote.message_count()
    last = await target.remote.last_global_position()
    expected_count = target.count + sent
    expected_last = max(target.last, highest)
    if (count, last) != (expected_count, expected_last):
        raise TransferError(
            f"verification failed: namespace {target.remote.namespace!r} holds {count:,} messages"
            f" up to global position {last}, expected {expected_count:,} up to {expected_last}"
            " (was it written to meanwhile?)"
        )
    sys.stderr.write(f"Verified: {count:,} messages, last global position {last}.\n")


# -- import ------------------------------------------------------------------------------------


def run_import(args: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    """``eventodb import``; returns the exit status."""
    values = parse_flags_or_exit("import", args, IMPORT_FLAGS, env, ("url", "token"))
    if isinstance(values, int):
        return values
    if values["from-message-db"]:
        if values["input"] or values["gzip"]:
            return fail(TransferError("--from-message-db reads no file: drop --input and --gzip"))
        return _run(lambda: _import(values, None))
    with ExitStack() as files:
        try:
            raw = files.enter_context(open(values["input"], "rb")) if values["input"] else None
        except OSError as exc:
            return fail(exc)
        return _run(lambda: _import(values, raw or sys.stdin.buffer))


async def _import(values: Mapping[str, Any], raw: BinaryIO | None) -> int:
    interval = float(values["progress-interval"])
    async with AsyncExitStack() as stack:
        remote = await stack.enter_async_context(Remote(values["url"], values["token"]))
        target = await _prepare_target(
            remote,
            force=bool(values["force"]),
            resume=bool(values["resume"]),
            yes=bool(values["yes"]),
            verb="Import",
        )
        if raw is None:
            return await _import_message_db(values["from-message-db"], target, values, stack)
        source = FileSource(raw, compressed=bool(values["gzip"]), after=target.last)
        await _transfer(
            source,
            target,
            force=bool(values["force"]),
            verb="Imported",
            interval=interval,
            where=lambda line: f"line {line}",
        )
        if source.skipped:
            sys.stderr.write(f"Skipped {source.skipped:,} records already present.\n")
    return 0


async def _import_message_db(
    url: str, target: _Target, values: Mapping[str, Any], stack: AsyncExitStack
) -> int:
    from eventodb.store.postgres.snapshot import MessageDBReader

    reader = await MessageDBReader.open(url)
    stack.push_async_callback(reader.close)
    count, last = await reader.snapshot(target.last)
    if not reader.prefix_guaranteed:
        sys.stderr.write(
            "Note: could not lock the source table for a moment (no privilege, or busy):"
            " a write committing during the copy below its highest position may be missed.\n"
        )
    source = MessageDBSource(reader, target.last)
    source.total = count
    await _transfer(
        source,
        target,
        force=bool(values["force"]),
        verb="Imported",
        interval=float(values["progress-interval"]),
        where=lambda line: f"global position {source.gpos[line - 1]}",
    )
    sys.stderr.write(f"Copied schema {reader.schema} up to global position {last}.\n")
    return 0


# -- copy --------------------------------------------------------------------------------------


def run_copy(args: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    """``eventodb copy``; returns the exit status."""
    values = parse_flags_or_exit(
        "copy", args, COPY_FLAGS, env, ("from", "from-token", "to", "to-token")
    )
    if isinstance(values, int):
        return values
    return _run(lambda: _copy(values))


async def _copy(values: Mapping[str, Any]) -> int:
    categories = _categories(values["categories"])
    async with (
        Remote(values["from"], values["from-token"]) as origin,
        Remote(values["to"], values["to-token"]) as destination,
    ):
        target = await _prepare_target(
            destination,
            force=bool(values["force"]),
            resume=bool(values["resume"]),
            yes=bool(values["yes"]),
            verb="Copy",
        )
        stop = await _source_head(origin)
        source = ServerSource(origin, categories, target.last + 1, stop)
        if categories == [""] and stop:
            source.total = max(await origin.message_count() - target.count, 0) or None
        await _transfer(
            source,
            target,
            force=bool(values["force"]),
            verb="Copied",
            interval=float(values["progress-interval"]),
            where=lambda line: f"global position {source.gpos[line - 1]}",
        )
        now = await origin.last_global_position()
        sys.stderr.write(f"Copied up to global position {stop} of {origin.url}.\n")
        if now > stop:
            sys.stderr.write(
                f"The source has moved on to global position {now} since the copy began:"
                " run the same command with --resume to copy the rest.\n"
            )
    return 0
