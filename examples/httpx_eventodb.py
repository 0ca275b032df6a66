"""The little HTTP the httpx examples share: an RPC call and a subscription, nothing more.

EventoDB needs no SDK: ``POST /rpc`` takes a JSON array and answers JSON, ``GET /subscribe``
is a Server-Sent Events stream of pokes. This module shows both with plain httpx; the example
programs next to it (``httpx_producer.py``, ``httpx_consumer.py``, ``httpx_group_worker.py``)
import it. The protocol is described in docs/API.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

HEARTBEAT = 15.0
"""The server's default ``--sse-heartbeat``: a quiet subscription gets ``: ping`` this often."""


class EventoDBError(Exception):
    """An error answer: ``code`` (e.g. ``STREAM_VERSION_CONFLICT``) is what programs branch on."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message} (HTTP {status})")
        self.status = status
        self.code = code


def connect() -> httpx.Client:
    """A client for ``EVENTODB_URL`` (default ``http://localhost:8080``) that sends the token
    in ``EVENTODB_TOKEN`` with every request."""
    return httpx.Client(
        base_url=os.environ.get("EVENTODB_URL", "http://localhost:8080"),
        headers={"Authorization": f"Bearer {os.environ['EVENTODB_TOKEN']}"},
        timeout=10.0,
    )


def rpc(client: httpx.Client, *request: Any) -> Any:
    """One call of ``POST /rpc``, e.g. ``rpc(client, "stream.get", "account-1")``.

    Raises:
        EventoDBError: the server answered with an error envelope.
        httpx.TransportError: the request or its answer was lost.
    """
    response = client.post("/rpc", json=list(request))
    if response.status_code != 200:
        error = response.json()["error"]
        raise EventoDBError(response.status_code, error["code"], error["message"])
    return response.json()


def subscribe(client: httpx.Client, params: Mapping[str, str | int]) -> Iterator[dict[str, Any]]:
    """Open ``GET /subscribe`` and yield its events until the server ends the stream:
    ``{"ready": True}`` once the subscription is registered, then one dict per poke
    (``stream``, ``position``, ``globalPosition``).

    A read timeout of three heartbeats notices a connection that died silently.

    Raises:
        EventoDBError: the subscription was refused (400 bodies are plain text).
        httpx.TransportError: the connection failed or went quiet.
    """
    timeout = httpx.Timeout(10.0, read=3 * HEARTBEAT)
    with client.stream("GET", "/subscribe", params=dict(params), timeout=timeout) as response:
        if response.status_code != 200:
            body = response.read().decode()
            code = json.loads(body)["error"]["code"] if body.startswith("{") else "INVALID_REQUEST"
            raise EventoDBError(response.status_code, code, body)
        event = ""
        for line in response.iter_lines():
            if line == ": ready":
                yield {"ready": True}
            elif line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: ") and event == "poke":
                yield json.loads(line[len("data: ") :])
            elif not line:
                event = ""
