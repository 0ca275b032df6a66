"""Retries over real broken connections: a proxy between client and server swallows answers
after the server processed the request, or refuses requests with 503."""

from __future__ import annotations

import time

import pytest

from eventodb.client import EventoDB, TransportError, UnexpectedResponse
from tests.client.conftest import (
    Client,
    Tenant,
    close_client,
    do,
    open_client,
    transport_only,
)
from tests.client.proxy import Proxy
from tests.support.ports import free_port
from tests.support.server import ADMIN_TOKEN, unique

FAST = {"backoff": 0.01, "max_backoff": 0.05}
IDENT = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"


@transport_only
async def test_a_write_whose_answer_is_lost_is_retried_and_stored_once(
    kind: str, tenant: Tenant, proxy: Proxy
) -> None:
    db = open_client(kind, proxy.url, tenant.token, **FAST)
    try:
        await do(db.write("account-1", "Opened", {}))
        proxy.cut_responses(2)
        result = await do(db.write("account-1", "Deposited", {"amount": 10}))
        assert proxy.cut == 2
        messages = await do(db.get_stream("account-1"))
    finally:
        await close_client(db)
    assert [m.type for m in messages] == ["Opened", "Deposited"]
    stored = messages[1]
    assert (result.id, result.position, result.global_position) == (
        stored.id,
        stored.position,
        stored.global_position,
    )


@transport_only
async def test_without_retries_the_lost_answer_surfaces_but_the_write_happened(
    kind: str, tenant: Tenant, proxy: Proxy
) -> None:
    db = open_client(kind, proxy.url, tenant.token, retries=0)
    try:
        await do(db.write("account-1", "Opened", {}))
        proxy.cut_responses()
        with pytest.raises(TransportError) as caught:
            await do(db.write("account-1", "Deposited", {}, id=IDENT))
        assert caught.value.__cause__ is not None
        assert caught.value.status is None
        # The server had stored it: resending the same id is answered with its positions.
        again = await do(db.write("account-1", "Deposited", {}, id=IDENT))
        assert again.position == 1
        assert await do(db.stream_version("account-1")) == 1
    finally:
        await close_client(db)


@transport_only
async def test_reads_are_retried_after_a_lost_answer(
    kind: str, tenant: Tenant, proxy: Proxy
) -> None:
    db = open_client(kind, proxy.url, tenant.token, **FAST)
    try:
        await do(db.write("account-1", "Opened", {}))
        proxy.cut_responses()
        assert [m.type for m in await do(db.get_stream("account-1"))] == ["Opened"]
        assert proxy.cut == 1
    finally:
        await close_client(db)


@transport_only
async def test_namespace_creation_is_not_resent_after_a_lost_answer(
    kind: str, proxy: Proxy
) -> None:
    admin = open_client(kind, proxy.url, ADMIN_TOKEN, **FAST)
    namespace = unique("lost")
    try:
        proxy.cut_responses()
        with pytest.raises(TransportError):
            await do(admin.create_namespace(namespace))
        assert proxy.cut == 1
        info = await do(admin.namespace_info(namespace))  # it was created, exactly once
        assert info.namespace == namespace
        await do(admin.delete_namespace(namespace))
    finally:
        await close_client(admin)


@transport_only
async def test_503_answers_are_retried_with_backoff_then_reported(
    kind: str, tenant: Tenant, proxy: Proxy
) -> None:
    db = open_client(kind, proxy.url, tenant.token, retries=2, **FAST)
    try:
        proxy.refuse_requests(2)
        await do(db.write("account-1", "Opened", {}))
        assert proxy.refused == 2
        proxy.refuse_requests(5)
        with pytest.raises(UnexpectedResponse) as caught:
            await do(db.write("account-1", "Deposited", {}))
        assert caught.value.status == 503
        assert proxy.refused == 5  # the first try and two retries
        assert await do(db.stream_version("account-1")) == 0  # two refusals left: retried
        assert proxy.refused == 7
    finally:
        await close_client(db)


async def test_an_unreachable_server_fails_after_the_retries(kind: str) -> None:
    db: Client = open_client(
        kind, f"http://127.0.0.1:{free_port()}", None, retries=3, backoff=0.05, max_backoff=1.0
    )
    started = time.monotonic()
    try:
        with pytest.raises(TransportError) as caught:
            await do(db.server_version())
    finally:
        await close_client(db)
    # Three waits of at least half of 0.05, 0.1, 0.2 seconds.
    assert time.monotonic() - started >= 0.17
    assert "ConnectError" in caught.value.message


def test_backoff_grows_and_is_capped() -> None:
    db = EventoDB("http://127.0.0.1:1", retries=9, backoff=0.1, max_backoff=1.0)
    delays = [db.config.delay(n) for n in range(6)]
    db.close()
    for n, delay in enumerate(delays):
        ceiling = min(1.0, 0.1 * 2**n)
        assert ceiling / 2 <= delay <= ceiling
