"""Keep account balances up to date with a consumer of the ``account`` category.

    EVENTODB_URL=http://localhost:8080 EVENTODB_TOKEN=ns_... python examples/sdk_consumer.py

It starts where it left off (its position is kept in the stream ``account:position-balances``),
handles each deposit, then waits for new ones; Ctrl-C or SIGTERM stops it after the message in
hand. Killed harder than that, it handles again at most ``--interval`` messages when restarted.
"""

from __future__ import annotations

import argparse
from collections import Counter

from eventodb.client import Consumer, EventoDB, Message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="balances", help="consumer name (position stream)")
    parser.add_argument("--interval", type=int, default=100, help="position update interval")
    args = parser.parse_args()
    balances: Counter[str] = Counter()

    def handle(message: Message) -> None:
        if message.type == "Deposited":
            balances[message.stream_name] += message.data["amount"]
        print(f"handled {message.global_position} {message.stream_name} {message.type}", flush=True)

    with EventoDB.from_env() as db:
        consumer = Consumer(
            db, "account", handle, name=args.name, position_update_interval=args.interval
        )
        consumer.run()
    print(f"stopped at position {consumer.position}", flush=True)


if __name__ == "__main__":
    main()
