"""Fan-out of pokes from the store to live subscriptions (owned by the subscriptions work).

Agreed interface (placeholder until that work lands):

- ``Broker(store)``: ``await broker.start()`` registers with ``store.add_listener``;
  ``await broker.close()`` ends every subscription (graceful shutdown);
  ``broker.close_namespace(ns)`` ends the subscriptions of a deleted namespace.
"""

from __future__ import annotations

from eventodb.store.base import Store


class Broker:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def close_namespace(self, namespace: str) -> None:
        return None
