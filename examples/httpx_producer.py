"""Write messages to EventoDB with nothing but httpx.

    EVENTODB_URL=http://localhost:8080 EVENTODB_TOKEN=ns_... \\
        python examples/httpx_producer.py account --streams 3 --count 6

writes 6 ``Deposited`` messages round-robin to ``account-1`` .. ``account-3`` and prints where
each one landed. Each message gets its id here, before it is sent: when the answer is lost (a
timeout, a dropped connection) the write is sent again with the same id, and the server answers
a repeated id with the original positions instead of writing twice (docs/API.md,
"stream.write").
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

import httpx
from httpx_eventodb import connect, rpc


def write(client: httpx.Client, stream: str, message: dict[str, Any], attempts: int = 5) -> Any:
    """Write one message, retrying lost requests with the same id (so it is written once)."""
    options = {"id": str(uuid.uuid4())}
    for attempt in range(1, attempts + 1):
        try:
            return rpc(client, "stream.write", stream, message, options)
        except httpx.TransportError as exc:
            if attempt == attempts:
                raise
            print(f"retrying {stream} after {exc!r}", file=sys.stderr)
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("category", help="category to write to, e.g. account")
    parser.add_argument("--streams", type=int, default=3, help="write to <category>-1 .. -N")
    parser.add_argument("--count", type=int, default=6, help="messages to write")
    args = parser.parse_args()
    with connect() as client:
        for n in range(args.count):
            stream = f"{args.category}-{n % args.streams + 1}"
            result = write(client, stream, {"type": "Deposited", "data": {"amount": n + 1}})
            print(f"{stream} position {result['position']} global {result['globalPosition']}")


if __name__ == "__main__":
    main()
