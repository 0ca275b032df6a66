"""``GET /subscribe`` (SPEC §6), owned by the subscriptions work (placeholder until it lands).

Agreed interface: the app authenticates first (auth errors are the app's JSON 401/403), then
calls :func:`handle_subscribe` with the resolved namespace.
"""

from __future__ import annotations

from typing import Any

from eventodb.api.broker import Broker
from eventodb.store.base import Store

Scope = dict[str, Any]


async def handle_subscribe(
    scope: Scope,
    receive: Any,
    send: Any,
    *,
    store: Store,
    broker: Broker,
    namespace: str,
    heartbeat: float = 15.0,
) -> None:
    """Validate the query (plain-text 400s of §6.2), then stream pokes until disconnect."""
    body = b"Subscriptions are not implemented yet"
    await send(
        {
            "type": "http.response.start",
            "status": 501,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})
