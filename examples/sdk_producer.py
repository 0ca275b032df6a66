"""Write deposits to a few accounts with the EventoDB Python client.

    EVENTODB_URL=http://localhost:8080 EVENTODB_TOKEN=ns_... python examples/sdk_producer.py 20

Each write carries an id chosen by the client, so a write retried after a network failure is
stored once. Prints one line per message written.
"""

from __future__ import annotations

import sys

from eventodb.client import EventoDB


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with EventoDB.from_env() as db:
        for n in range(count):
            account = f"account-{n % 5}"
            result = db.write(account, "Deposited", {"amount": 10 + n})
            print(f"wrote {account} position={result.position} global={result.global_position}")


if __name__ == "__main__":
    main()
