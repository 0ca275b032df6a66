"""One member of a consumer group that shares the ``account`` category between processes.

    python examples/sdk_group_worker.py 0 3 &   # member 0 of 3
    python examples/sdk_group_worker.py 1 3 &
    python examples/sdk_group_worker.py 2 3 &

Every message goes to exactly one member (all messages of one account to the same member, in
order). Each member keeps its own position (``account:position-workers+<member>of<size>``), so
any of them can be stopped and started again without disturbing the others.
"""

from __future__ import annotations

import sys

from eventodb.client import Consumer, EventoDB, Message


def main() -> None:
    member, size = int(sys.argv[1]), int(sys.argv[2])

    def handle(message: Message) -> None:
        print(f"member {member}/{size} handled {message.global_position}", flush=True)

    with EventoDB.from_env() as db:
        Consumer(db, "account", handle, name="workers", group=(member, size)).run()


if __name__ == "__main__":
    main()
