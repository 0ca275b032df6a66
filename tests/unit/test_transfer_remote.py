"""Where a source server's global order stands, as the transfer commands learn it: ``ns.head``
where the server has it, else (the Go server) a search with one-message ``category.get`` reads.

The servers here are stand-ins answering the documented API over httpx's in-process transport:
a server without ``ns.head`` cannot be started in the test suite (the real servers are covered
in ``tests/api/test_transfer_cli.py``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from eventodb.core import tokens
from eventodb.transfer.remote import ErrorAnswer, Remote

UNKNOWN_METHOD = {"error": {"code": "METHOD_NOT_FOUND", "message": "Unknown method: ns.head"}}


def stand_in(
    positions: list[int], *, head: dict[str, Any] | None = None
) -> tuple[Remote, list[str]]:
    """A remote whose server holds messages at ``positions`` and answers ``ns.head`` with
    ``head`` (``None``: does not know the method, like the Go server); and the methods it is
    called with."""
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        method, *args = json.loads(request.content)
        calls.append(method)
        if method == "ns.head":
            return (
                httpx.Response(200, json=head) if head else httpx.Response(404, json=UNKNOWN_METHOD)
            )
        assert method == "category.get"
        start, size = args[1]["position"], args[1]["batchSize"]
        found = [g for g in positions if g >= start][:size]
        return httpx.Response(200, json=[["id", "s-1", "T", 0, g, {}, None, "t"] for g in found])

    return Remote("http://stand-in", tokens.generate("tenant"), httpx.MockTransport(answer)), calls


async def test_a_server_with_ns_head_is_asked_once() -> None:
    remote, calls = stand_in([1, 2, 3], head={"globalPosition": 3, "settled": False})
    async with remote:
        assert await remote.head() == (3, False)
    assert calls == ["ns.head"]


@pytest.mark.parametrize(
    "positions", [[], [1], [1, 2, 3], [5, 1_000_003, 2**40], list(range(7, 5_000, 3))]
)
async def test_without_ns_head_the_last_position_is_searched_for(positions: list[int]) -> None:
    remote, calls = stand_in(positions)
    async with remote:
        assert await remote.head() == (max(positions, default=0), None)
        assert await remote.last_global_position() == max(positions, default=0)
    searches, bits = 2, max(positions, default=1).bit_length()
    assert calls.count("category.get") <= searches * (2 * bits + 2)  # a search, not a scan


@pytest.mark.parametrize(
    "body", [b'{"message": "x"}', b'{"error": {}}', b'{"error": "x"}', b"[1]", b"<html>"]
)
async def test_an_error_without_the_envelope_is_reported_not_a_crash(body: bytes) -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=body)

    async with Remote(
        "http://stand-in", tokens.generate("tenant"), httpx.MockTransport(proxy)
    ) as remote:
        with pytest.raises(ErrorAnswer, match="HTTP 502") as raised:
            await remote.head()
        assert raised.value.code is None


async def test_other_errors_of_ns_head_are_not_taken_for_an_old_server() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"code": "AUTH_REQUIRED", "message": "no"}})

    async with Remote(
        "http://stand-in", tokens.generate("tenant"), httpx.MockTransport(refuse)
    ) as remote:
        with pytest.raises(ErrorAnswer, match="HTTP 401") as raised:
            await remote.head()
        assert raised.value.code == "AUTH_REQUIRED"
