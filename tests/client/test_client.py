"""Every RPC method and every error, through both clients, against the real server on SQLite and
Postgres: the same test body runs once with :class:`EventoDB` and once with
:class:`AsyncEventoDB`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eventodb.client import (
    AsyncEventoDB,
    AuthInvalidToken,
    AuthRequired,
    AuthUnauthorized,
    ConsumerGroup,
    DuplicateMessageId,
    EventoDB,
    ExpectedVersionError,
    Head,
    InvalidRequest,
    Message,
    MethodNotFound,
    NamespaceExists,
    NamespaceNotFound,
    NewMessage,
    NotFound,
)
from eventodb.core import tokens
from tests.client.conftest import (
    Client,
    Tenant,
    close_client,
    collect,
    do,
    open_client,
)
from tests.support.server import ADMIN_TOKEN, Server, unique


def recent(moment: datetime) -> bool:
    now = datetime.now(UTC)
    return moment.tzinfo is not None and now - timedelta(minutes=1) < moment <= now


async def test_write_then_read_back_every_field(db: Client) -> None:
    first = await do(db.write("account-1", "Opened", {"owner": "ann"}))
    second = await do(
        db.write(
            "account-1",
            "Deposited",
            {"amount": 10, "big": 2**60, "text": "é€"},
            metadata={"correlationStreamName": "order-9"},
            expected_version=0,
        )
    )
    assert (first.position, second.position) == (0, 1)
    assert second.global_position > first.global_position

    messages = await do(db.get_stream("account-1"))
    assert [m.id for m in messages] == [first.id, second.id]
    message = messages[1]
    assert message.stream_name == "account-1"
    assert message.category == "account"
    assert message.type == "Deposited"
    assert (message.position, message.global_position) == (1, second.global_position)
    assert message.data == {"amount": 10, "big": 2**60, "text": "é€"}
    assert message.metadata == {"correlationStreamName": "order-9"}
    assert messages[0].metadata is None
    assert recent(message.time)
    assert message.time.tzinfo == UTC

    assert await do(db.get_last("account-1")) == message
    assert await do(db.get_last("account-1", type="Opened")) == messages[0]
    assert await do(db.get_last("account-1", type="Closed")) is None
    assert await do(db.get_last("account-2")) is None
    assert await do(db.stream_version("account-1")) == 1
    assert await do(db.stream_version("account-2")) is None
    assert await do(db.get_stream("account-1", position=1)) == [message]
    assert await do(db.get_stream("account-1", global_position=second.global_position)) == [message]
    assert await do(db.get_stream("account-1", batch_size=1)) == messages[:1]


async def test_a_message_id_is_generated_by_the_client_as_a_uuid7(db: Client) -> None:
    result = await do(db.write("account-1", "Opened", {}))
    assert result.id[14] == "7"
    stored = await do(db.get_last("account-1"))
    assert stored is not None
    assert stored.id == result.id


async def test_a_given_id_in_any_spelling_is_stored_canonical(db: Client) -> None:
    ident = "0190A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B"
    result = await do(db.write("account-1", "Opened", {}, id=ident))
    stored = await do(db.get_last("account-1"))
    assert stored is not None
    assert stored.id == ident.lower()
    assert result.id == ident


async def test_expected_version_conflict_raises_and_writes_nothing(db: Client) -> None:
    await do(db.write("account-1", "Opened", {}))
    with pytest.raises(ExpectedVersionError) as caught:
        await do(db.write("account-1", "Deposited", {}, expected_version=5))
    error = caught.value
    assert (error.code, error.status) == ("STREAM_VERSION_CONFLICT", 409)
    assert (error.expected, error.actual) == (5, 0)
    with pytest.raises(ExpectedVersionError) as empty:
        await do(db.write("account-2", "Deposited", {}, expected_version=0))
    assert empty.value.actual == -1
    assert await do(db.stream_version("account-1")) == 0
    assert await do(db.stream_version("account-2")) is None
    created = await do(db.write("account-2", "Opened", {}, expected_version=-1))
    assert created.position == 0


async def test_resending_an_id_returns_the_original_positions_and_stores_once(
    db: Client,
) -> None:
    message = NewMessage("Deposited", {"amount": 5}, {"by": "test"})
    first = await do(db.write_message("account-1", message))
    await do(db.write("account-2", "Other", {}))
    again = await do(db.write_message("account-1", message))
    assert again == first
    assert len(await do(db.get_stream("account-1"))) == 1

    with pytest.raises(DuplicateMessageId) as caught:
        await do(db.write("account-1", "Deposited", {"amount": 6}, id=message.id))
    error = caught.value
    assert (error.status, error.message_id, error.stream) == (409, message.id, "account-1")
    with pytest.raises(DuplicateMessageId):
        await do(db.write("account-3", "Deposited", {"amount": 5}, {"by": "test"}, id=message.id))


async def test_write_batch_chains_expected_versions_and_can_be_resent(db: Client) -> None:
    batch = [NewMessage("Item", {"n": n}) for n in range(4)]
    results = await do(db.write_batch("order-1", batch, expected_version=-1))
    assert [r.position for r in results] == [0, 1, 2, 3]
    assert [r.id for r in results] == [m.id for m in batch]

    # Resending the whole batch (e.g. after a failure half-way) writes nothing twice.
    assert await do(db.write_batch("order-1", batch, expected_version=-1)) == results
    assert len(await do(db.get_stream("order-1"))) == 4

    # A writer that slips in between makes the rest of the batch fail, not interleave.
    later = [NewMessage("Item", {"n": n}) for n in range(4, 6)]
    await do(db.write("order-1", "Intruder", {}))
    with pytest.raises(ExpectedVersionError):
        await do(db.write_batch("order-1", later, expected_version=3))
    assert [m.type for m in await do(db.get_stream("order-1"))][-1] == "Intruder"


async def test_category_reads_with_correlation_and_consumer_groups(db: Client) -> None:
    for n in range(1, 5):
        await do(db.write(f"test-{n}", "Done", {"n": n}, {"correlationStreamName": f"job-{n}"}))
    await do(db.write("test-5", "Done", {"n": 5}, {"correlationStreamName": "other-5"}))
    await do(db.write("elsewhere-1", "Done", {}))

    everything = await do(db.get_category("test"))
    assert [m.stream_name for m in everything] == [f"test-{n}" for n in range(1, 6)]
    assert all(isinstance(m, Message) and m.category == "test" for m in everything)
    assert [m.global_position for m in everything] == sorted(m.global_position for m in everything)

    correlated = await do(db.get_category("test", correlation="job"))
    assert [m.data["n"] for m in correlated] == [1, 2, 3, 4]

    # Member assignment as documented for size 2: test-1, test-3 → 0; test-2, test-4 → 1.
    member0 = await do(db.get_category("test", consumer_group=ConsumerGroup(0, 2)))
    member1 = await do(db.get_category("test", consumer_group=(1, 2)))
    assert {m.stream_name for m in member0} >= {"test-1", "test-3"}
    assert {m.stream_name for m in member1} >= {"test-2", "test-4"}
    assert sorted(m.global_position for m in member0 + member1) == [
        m.global_position for m in everything
    ]

    start = everything[2].global_position
    assert await do(db.get_category("test", position=start, batch_size=2)) == everything[2:4]
    assert len(await do(db.get_category(""))) == 6


@pytest.mark.parametrize("count", [0, 1, 3, 4, 7])
async def test_iterators_page_through_streams_and_categories_at_every_boundary(
    db: Client, count: int
) -> None:
    """Pages of 3: empty, partial, exactly one page, one more, two pages and one more."""
    for n in range(count):
        await do(db.write("page-1", "Item", {"n": n}))
        await do(db.write(f"page-{n + 2}", "Item", {"n": n}))
    everything = await do(db.get_stream("page-1", batch_size=-1))
    assert await collect(db.iter_stream("page-1", batch_size=3)) == everything
    assert await collect(db.iter_stream("page-1", position=2, batch_size=3)) == everything[2:]
    assert await collect(db.iter_stream("page-1", batch_size=1)) == everything

    category = await do(db.get_category("page", batch_size=-1))
    assert len(category) == 2 * count
    assert await collect(db.iter_category("page", batch_size=3)) == category
    if count:
        middle = category[count].global_position
        assert (
            await collect(db.iter_category("page", position=middle, batch_size=3))
            == (category[count:])
        )
    members = [
        await collect(db.iter_category("page", batch_size=3, consumer_group=(m, 3)))
        for m in range(3)
    ]
    assert sorted(m.global_position for part in members for m in part) == [
        m.global_position for m in category
    ]


async def test_iterators_refuse_unlimited_or_oversized_pages(db: Client) -> None:
    for size in (0, -1, 10_001):
        with pytest.raises(ValueError, match="page size"):
            await collect(db.iter_stream("page-1", batch_size=size))
        with pytest.raises(ValueError, match="page size"):
            await collect(db.iter_category("page", batch_size=size))


async def test_listing_streams_and_categories_and_the_head(db: Client) -> None:
    for name in ["b-1", "a-2", "a-1", "a-1", "c", "a-10"]:
        await do(db.write(name, "T", {}))
    streams = await do(db.list_streams())
    assert [s.stream for s in streams] == ["a-1", "a-10", "a-2", "b-1", "c"]
    assert streams[0].version == 1
    assert recent(streams[0].last_activity)
    page = await do(db.list_streams(prefix="a-", limit=2))
    assert [s.stream for s in page] == ["a-1", "a-10"]
    rest = await do(db.list_streams(prefix="a-", cursor=page[-1].stream))
    assert [s.stream for s in rest] == ["a-2"]
    assert [s.stream for s in await collect(db.iter_streams(page_size=2))] == [
        s.stream for s in streams
    ]
    assert [s.stream for s in await collect(db.iter_streams(prefix="a-", page_size=1))] == [
        "a-1",
        "a-10",
        "a-2",
    ]
    categories = await do(db.list_categories())
    assert [(c.category, c.stream_count, c.message_count) for c in categories] == [
        ("a", 3, 4),
        ("b", 1, 1),
        ("c", 1, 1),
    ]
    assert await do(db.head()) == Head(6, settled=True)


async def test_namespace_administration_with_the_admin_token(
    server: Server, kind: str, tenant: Tenant
) -> None:
    admin = open_client(kind, server.url, ADMIN_TOKEN)
    try:
        namespace = unique("adm")
        created = await do(admin.create_namespace(namespace, description="for the test"))
        assert created.namespace == namespace
        assert recent(created.created_at)
        assert tokens.parse(created.token) == namespace
        with pytest.raises(NamespaceExists) as exists:
            await do(admin.create_namespace(namespace))
        assert exists.value.status == 409

        own = open_client(kind, server.url, created.token)
        try:
            await do(own.write("account-1", "Opened", {}))
            info = await do(own.namespace_info(namespace))
        finally:
            await close_client(own)
        assert (info.namespace, info.description) == (namespace, "for the test")
        assert (info.message_count, info.stream_count) == (1, 1)
        assert info.last_activity is not None
        assert recent(info.last_activity)

        listed = {n.namespace: n for n in await do(admin.list_namespaces())}
        assert listed[namespace].message_count == 1
        assert listed[namespace].description == "for the test"

        chosen = unique("own")
        token = tokens.generate(chosen)
        assert (await do(admin.create_namespace(chosen, token=token))).token == token

        deleted = await do(admin.delete_namespace(namespace))
        assert (deleted.namespace, deleted.messages_deleted) == (namespace, 1)
        assert recent(deleted.deleted_at)
        await do(admin.delete_namespace(chosen))
        with pytest.raises(NamespaceNotFound) as missing:
            await do(admin.namespace_info(namespace))
        assert (missing.value.status, missing.value.code) == (404, "NAMESPACE_NOT_FOUND")
        with pytest.raises(NamespaceNotFound):
            await do(admin.delete_namespace(namespace))
    finally:
        await close_client(admin)


async def test_release_unregisters_a_postgres_namespace_and_is_refused_elsewhere(
    server: Server, kind: str
) -> None:
    """``ns.release`` keeps a namespace's storage, which only a Postgres schema has."""
    admin = open_client(kind, server.url, ADMIN_TOKEN)
    try:
        namespace = unique("rel")
        await do(admin.create_namespace(namespace))
        if server.kind != "postgres":
            with pytest.raises(InvalidRequest) as refused:
                await do(admin.release_namespace(namespace))
            assert refused.value.status == 400
            assert "use ns.delete" in refused.value.message
            await do(admin.delete_namespace(namespace))
            return
        released = await do(admin.release_namespace(namespace))
        assert released.namespace == namespace
        assert recent(released.released_at)
        with pytest.raises(NamespaceNotFound):
            await do(admin.namespace_info(namespace))
        with pytest.raises(NamespaceNotFound):
            await do(admin.release_namespace(namespace))
    finally:
        await close_client(admin)


async def test_authentication_errors(server: Server, kind: str, db: Client) -> None:
    with pytest.raises(AuthUnauthorized) as refused:
        await do(db.list_namespaces())  # a tenant's token is not the admin token
    assert refused.value.status == 403

    for token, error in [
        (None, AuthRequired),
        ("not-a-token", AuthInvalidToken),
        (tokens.generate("default"), AuthUnauthorized),
        (tokens.generate(unique("nobody")), AuthUnauthorized),
    ]:
        client = open_client(kind, server.url, token)
        try:
            with pytest.raises(error) as caught:
                await do(client.get_stream("account-1"))
            assert caught.value.status in (401, 403)
            assert caught.value.code == error.default_code
        finally:
            await close_client(client)


async def test_request_errors(server: Server, kind: str, tenant: Tenant, db: Client) -> None:
    with pytest.raises(InvalidRequest) as invalid:
        await do(db.get_stream("account-1", batch_size=20_000))
    assert invalid.value.status == 400
    assert "batchSize" in invalid.value.message
    with pytest.raises(InvalidRequest):
        await do(db.write("account-1", "", {}))
    with pytest.raises(InvalidRequest):
        await do(db.get_category("account", consumer_group=(3, 2)))
    with pytest.raises(MethodNotFound) as unknown:
        await do(db.rpc("stream.rename", "a", "b"))
    assert (unknown.value.status, unknown.value.message) == (404, "Unknown method: stream.rename")

    misplaced = open_client(kind, server.url + "/eventodb", tenant.token)
    try:
        with pytest.raises(NotFound) as not_found:
            await do(misplaced.server_version())
        assert not_found.value.status == 404
    finally:
        await close_client(misplaced)

    with pytest.raises(TypeError):
        await do(db.write("account-1", "T", {"not json": {1, 2}}))
    with pytest.raises(ValueError, match="JSON"):
        await do(db.write("account-1", "T", {"nan": float("nan")}))
    assert await do(db.stream_version("account-1")) is None


async def test_raw_rpc_version_and_health(server: Server, db: Client) -> None:
    await do(db.write("account-1", "Opened", {}))
    assert await do(db.rpc("stream.version", "account-1")) == 0
    version = await do(db.server_version())
    assert version.count(".") == 2
    health = await do(db.health())
    assert health.status == "ok"
    assert health.backend == server.kind
    assert health.connections >= 1


async def test_clients_read_url_and_token_from_the_environment(
    kind: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTODB_URL", tenant.url + "/")
    monkeypatch.setenv("EVENTODB_TOKEN", tenant.token)
    client: Client = (
        EventoDB.from_env(retries=1) if kind == "sync" else AsyncEventoDB.from_env(retries=1)
    )
    assert client.config.retries == 1
    try:
        await do(client.write("env-1", "T", {}))
        assert await do(client.stream_version("env-1")) == 0
    finally:
        await close_client(client)


async def test_context_managers_close_the_connection_pool(tenant: Tenant) -> None:
    with tenant.sync() as db:
        db.write("ctx-1", "T", {})
    assert db._http.is_closed
    async with tenant.async_() as adb:
        await adb.write("ctx-1", "T", {})
    assert adb._http.is_closed
