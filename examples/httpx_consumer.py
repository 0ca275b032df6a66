"""Follow a category with httpx: catch up from a stored position, then handle new messages as
pokes announce them, reconnecting with back-off whenever the connection ends.

    EVENTODB_URL=http://localhost:8080 EVENTODB_TOKEN=ns_... \\
        python examples/httpx_consumer.py account --position-file account.position

prints every message of the category once, in global-position order, and keeps the next
global position to read in the file, so that a restart continues where it stopped. This is the
recipe of docs/API.md ("Reconnecting"): pokes only say *that* something was written; the
consumer reads from its own position with ``category.get``, so a lost, repeated or coalesced
poke costs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from httpx_eventodb import EventoDBError, connect, rpc, subscribe

Handler = Callable[[list[Any]], None]
"""Called with each message: ``[id, stream, type, position, globalPosition, data, metadata,
time]``."""


class CategoryConsumer:
    """Handles every message of a category (or of one consumer-group member's share) once.

    Args:
        group: ``(member, size)`` to handle only this member's streams.
        position_file: where the next global position to read is kept (none: start at 1).
        limit: stop after handling this many messages (none: run until interrupted).
    """

    def __init__(
        self,
        client: httpx.Client,
        category: str,
        handle: Handler,
        *,
        group: tuple[int, int] | None = None,
        position_file: Path | None = None,
        limit: int | None = None,
        batch_size: int = 100,
    ) -> None:
        self.client = client
        self.category = category
        self.handle = handle
        self.group = group
        self.position_file = position_file
        self.limit = limit
        self.batch_size = batch_size
        self.handled = 0
        self.position = 1
        if position_file is not None and position_file.exists():
            self.position = int(position_file.read_text())

    @property
    def done(self) -> bool:
        return self.limit is not None and self.handled >= self.limit

    def catch_up(self) -> None:
        """Read and handle everything from our position on, page by page."""
        options: dict[str, Any] = {"batchSize": self.batch_size}
        if self.group is not None:
            options["consumerGroup"] = {"member": self.group[0], "size": self.group[1]}
        while not self.done:
            page = rpc(
                self.client, "category.get", self.category, options | {"position": self.position}
            )
            for message in page:
                self.handle(message)
                self.handled += 1
                self._advance(message[4] + 1)
                if self.done:
                    return
            if len(page) < self.batch_size:
                return

    def _advance(self, position: int) -> None:
        self.position = position
        if self.position_file is not None:  # written whole, then renamed: never half a number
            temporary = self.position_file.with_suffix(".tmp")
            temporary.write_text(str(position))
            os.replace(temporary, self.position_file)

    def run(self) -> None:
        """Subscribe, catch up once the subscription is registered, then catch up at every
        poke of a message we have not read; after a disconnect, back off and do it again."""
        backoff = 0.5
        while not self.done:
            params: dict[str, str | int] = {"category": self.category, "position": self.position}
            if self.group is not None:
                params |= {"consumer": self.group[0], "size": self.group[1]}
            try:
                for event in subscribe(self.client, params):
                    if "ready" in event:
                        backoff = 0.5
                    if "ready" in event or event["globalPosition"] >= self.position:
                        self.catch_up()
                    if self.done:
                        return
                reason = "the server ended the subscription"
            except httpx.TransportError as exc:
                reason = f"connection failed: {exc!r}"
            except EventoDBError as exc:
                if exc.status < 500:  # a bad token or parameter: retrying will not help
                    raise
                reason = str(exc)
            print(f"{reason}; reconnecting in {backoff:g} s", file=sys.stderr, flush=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


def follow(
    category: str,
    handle: Handler,
    *,
    group: tuple[int, int] | None = None,
    position_file: Path | None = None,
    limit: int | None = None,
) -> int:
    """Run a :class:`CategoryConsumer` on ``EVENTODB_URL`` until ``limit`` or Ctrl-C; returns
    the next global position it would read."""
    with connect() as client:
        consumer = CategoryConsumer(
            client, category, handle, group=group, position_file=position_file, limit=limit
        )
        with contextlib.suppress(KeyboardInterrupt):
            consumer.run()
    return consumer.position


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("category", help="category to follow, e.g. account")
    parser.add_argument("--position-file", type=Path, help="keep the position here")
    parser.add_argument("--max-messages", type=int, help="stop after this many messages")
    args = parser.parse_args()

    def show(message: list[Any]) -> None:
        _id, stream, kind, position, global_position, data, _meta, _time = message
        print(f"{global_position} {stream}@{position} {kind} {data}", flush=True)

    position = follow(
        args.category, show, position_file=args.position_file, limit=args.max_messages
    )
    print(f"next position {position}", file=sys.stderr)


if __name__ == "__main__":
    main()
