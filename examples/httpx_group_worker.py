"""One worker of a consumer group, with httpx: ``--member M --size N`` handles the streams of
the category that belong to member M of N, so N workers share the work without ever handling
the same stream (the messages of one stream stay in order, in one worker).

    EVENTODB_URL=http://localhost:8080 EVENTODB_TOKEN=ns_... \\
        python examples/httpx_group_worker.py account --member 0 --size 2 &
    EVENTODB_URL=http://localhost:8080 EVENTODB_TOKEN=ns_... \\
        python examples/httpx_group_worker.py account --member 1 --size 2

Each worker keeps the balance of its accounts and its own position (``--position-file``, one
per member). Which member a stream belongs to is decided by the server from the stream's id
(docs/API.md, "Streams, categories and messages"), the same for reads (``consumerGroup``) and
subscriptions (``consumer``/``size``). Changing ``--size`` moves streams between members: stop
every worker first, and start the new ones from the lowest position the old ones reached.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from httpx_consumer import follow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("category", help="category to work on, e.g. account")
    parser.add_argument("--member", type=int, required=True, help="this worker, 0 .. size-1")
    parser.add_argument("--size", type=int, required=True, help="number of workers")
    parser.add_argument("--position-file", type=Path, help="keep this member's position here")
    parser.add_argument("--max-messages", type=int, help="stop after this many messages")
    args = parser.parse_args()
    balances: Counter[str] = Counter()

    def handle(message: list[Any]) -> None:
        _id, stream, kind, position, global_position, data, _meta, _time = message
        if kind == "Deposited":
            balances[stream] += data["amount"]
        print(
            f"member {args.member}: {global_position} {stream}@{position} {kind}"
            f" balance {balances[stream]}",
            flush=True,
        )

    position = follow(
        args.category,
        handle,
        group=(args.member, args.size),
        position_file=args.position_file,
        limit=args.max_messages,
    )
    print(f"member {args.member}: next position {position}", file=sys.stderr)


if __name__ == "__main__":
    main()
