"""``eventodb adopt``: serve an existing Message DB schema as a namespace, in place
(:mod:`eventodb.store.postgres.adopt`; docs/MIGRATION.md, "Adopting a Message DB database")."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from eventodb.config import ADOPT_FLAGS
from eventodb.core import tokens
from eventodb.core.errors import EventoDBError
from eventodb.store.postgres import adopt as adoption
from eventodb.transfer.commands import fail, parse_flags_or_exit


def run_adopt(args: Sequence[str], env: Mapping[str, str] = os.environ) -> int:
    """``eventodb adopt``; returns the exit status."""
    values = parse_flags_or_exit("adopt", args, ADOPT_FLAGS, env, ("db-url", "namespace"))
    if isinstance(values, int):
        return values
    try:
        if values["release"]:
            return asyncio.run(_release(values))
        return asyncio.run(_adopt(values))
    except (EventoDBError, tokens.TokenFormatError) as exc:
        return fail(exc)


async def _release(values: Mapping[str, Any]) -> int:
    namespace = str(values["namespace"])
    schema = await adoption.release(str(values["db-url"]), namespace)
    sys.stdout.write(
        f"Released namespace {namespace!r}: schema {schema} and its messages are untouched.\n"
    )
    return 0


async def _adopt(values: Mapping[str, Any]) -> int:
    namespace = str(values["namespace"])
    token = values["token"] or tokens.generate(namespace)
    if tokens.parse(token) != namespace:
        return fail(EventoDBError(f"--token is for namespace {tokens.parse(token)!r}"))
    report = await adoption.adopt(
        str(values["db-url"]),
        str(values["schema"]),
        namespace,
        tokens.hash_token(token),
        dry_run=bool(values["dry-run"]),
    )
    out = sys.stdout
    head = "Would adopt" if report.dry_run else "Adopted"
    out.write(
        f"{head} schema {report.schema} (Message DB {report.version}, {report.message_count:,}"
        f" messages up to global position {report.last_global_position})"
        f" as namespace {namespace!r}.\n"
    )
    if report.migrations:
        out.write(f"Migrations: {', '.join(report.migrations)}\n")
    out.write("Changes:\n" + "".join(f"  {change}\n" for change in report.changes))
    if report.dry_run:
        out.write("Dry run: nothing was changed.\n")
    elif not values["token"]:
        out.write(f"NAMESPACE TOKEN (shown only now, keep it):\n{token}\n")
    return 0
