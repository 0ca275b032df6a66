"""Namespace lifecycle (docs/API.md, "ns.create"): the same behaviour on every backend."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventodb.core import tokens
from eventodb.core.errors import InvalidArgument, NamespaceExists, NamespaceNotFound
from eventodb.store.base import Store


def _hash(namespace: str) -> str:
    return tokens.hash_token(tokens.generate(namespace))


async def test_created_namespace_is_listed_with_its_token_hash(store: Store) -> None:
    token_hash = _hash("alpha")
    before = int(datetime.now(UTC).timestamp())
    record = await store.create_namespace("alpha", token_hash, "first tenant")
    assert record.id == "alpha"
    assert record.token_hash == token_hash
    assert record.description == "first tenant"
    assert before - 1 <= record.created_at <= before + 2
    assert await store.get_namespace("alpha") == record
    assert [n.id for n in await store.list_namespaces()] == ["alpha"]
    assert await store.namespace_exists("alpha")
    assert not await store.namespace_exists("beta")


async def test_creating_an_existing_namespace_fails(store: Store) -> None:
    await store.create_namespace("alpha", _hash("alpha"))
    with pytest.raises(NamespaceExists, match="Namespace 'alpha' already exists"):
        await store.create_namespace("alpha", _hash("alpha"))


async def test_unknown_namespace_is_not_found_everywhere(store: Store) -> None:
    with pytest.raises(NamespaceNotFound, match="Namespace 'ghost' not found"):
        await store.get_namespace("ghost")
    with pytest.raises(NamespaceNotFound):
        await store.delete_namespace("ghost")
    with pytest.raises(NamespaceNotFound):
        await store.write_message("ghost", "s-1", "T", {})
    with pytest.raises(NamespaceNotFound):
        await store.get_stream_messages("ghost", "s-1")
    with pytest.raises(NamespaceNotFound):
        await store.get_category_messages("ghost", "s")
    with pytest.raises(NamespaceNotFound):
        await store.namespace_stats("ghost")
    with pytest.raises(NamespaceNotFound):
        await store.set_token_hash("ghost", "x" * 64)


async def test_namespaces_are_listed_newest_first(store: Store) -> None:
    for name in ("one", "two"):
        await store.create_namespace(name, _hash(name))
    listed = await store.list_namespaces()
    assert {n.id for n in listed} == {"one", "two"}
    assert [n.created_at for n in listed] == sorted((n.created_at for n in listed), reverse=True)


async def test_delete_drops_the_data_and_reports_the_count(store: Store) -> None:
    await store.create_namespace("alpha", _hash("alpha"))
    for i in range(3):
        await store.write_message("alpha", f"s-{i}", "T", {})
    assert await store.delete_namespace("alpha") == 3
    assert not await store.namespace_exists("alpha")
    await store.create_namespace("alpha", _hash("alpha"))
    assert await store.get_stream_messages("alpha", "s-0") == []
    assert (await store.write_message("alpha", "s-0", "T", {})).global_position == 1


async def test_stats_count_messages_streams_and_last_activity(store: Store) -> None:
    await store.create_namespace("alpha", _hash("alpha"))
    empty = await store.namespace_stats("alpha")
    assert (empty.message_count, empty.stream_count, empty.last_activity) == (0, 0, None)
    await store.write_message("alpha", "a-1", "T", {})
    await store.write_message("alpha", "a-1", "T", {})
    await store.write_message("alpha", "b", "T", {})
    stats = await store.namespace_stats("alpha")
    last = (await store.get_stream_messages("alpha", "b"))[0].time
    assert (stats.message_count, stats.stream_count, stats.last_activity) == (3, 2, last)


async def test_token_hash_can_be_replaced(store: Store) -> None:
    await store.create_namespace("alpha", _hash("alpha"))
    new_hash = _hash("alpha")
    await store.set_token_hash("alpha", new_hash)
    assert (await store.get_namespace("alpha")).token_hash == new_hash


async def test_namespaces_are_isolated(store: Store) -> None:
    await store.create_namespace("a", _hash("a"))
    await store.create_namespace("b", _hash("b"))
    first = await store.write_message("a", "acct-1", "T", {"in": "a"})
    second = await store.write_message("b", "acct-1", "T", {"in": "b"})
    assert (first.position, first.global_position) == (0, 1)
    assert (second.position, second.global_position) == (0, 1)
    assert [m.data for m in await store.get_stream_messages("a", "acct-1")] == [{"in": "a"}]
    assert [m.data for m in await store.get_category_messages("b", "")] == [{"in": "b"}]


@pytest.mark.parametrize(
    "namespace",
    [
        "../escape",
        "a/b",
        "a\\b",
        ".",
        "..",
        "nul\x00byte",
        "line\nbreak",
        "x" * 55,
        "é" * 28,
        "",
    ],
)
async def test_unsafe_namespace_ids_are_refused(store: Store, namespace: str) -> None:
    with pytest.raises(InvalidArgument, match="namespace ID"):
        await store.create_namespace(namespace, _hash("x"))
    assert await store.list_namespaces() == []


@pytest.mark.parametrize(
    "namespace",
    [
        "Test.NS",
        "t_3_lx2k9_ab12",
        "test-foo-123",
        "with space",
        "quote'\"s",
        "semi;DROP SCHEMA public;--",
        "ünïcødé",
        "ab?&=%",
        "x" * 54,
    ],
)
async def test_unusual_but_safe_ids_work_and_stay_separate(store: Store, namespace: str) -> None:
    await store.create_namespace(namespace, _hash(namespace))
    await store.create_namespace("other", _hash("other"))
    await store.write_message(namespace, "s-1", "T", {"ns": namespace})
    assert [m.data for m in await store.get_stream_messages(namespace, "s-1")] == [
        {"ns": namespace}
    ]
    assert await store.get_stream_messages("other", "s-1") == []
    assert await store.delete_namespace(namespace) == 1
    assert [n.id for n in await store.list_namespaces()] == ["other"]


async def test_ids_differing_only_in_case_are_distinct_namespaces(store: Store) -> None:
    await store.create_namespace("Tenant", _hash("Tenant"))
    await store.create_namespace("tenant", _hash("tenant"))
    await store.write_message("Tenant", "s-1", "T", {"v": 1})
    assert await store.get_stream_messages("tenant", "s-1") == []
    assert len(await store.get_stream_messages("Tenant", "s-1")) == 1


async def test_clear_deletes_everything_and_restarts_global_positions(
    store: Store, ns: str
) -> None:
    for i in range(3):
        await store.write_message(ns, f"s-{i}", "T", {})
    assert await store.clear_namespace(ns) == 3
    assert await store.get_category_messages(ns, "") == []
    result = await store.write_message(ns, "s-0", "T", {})
    assert (result.position, result.global_position) == (0, 1)


async def test_deleting_a_namespace_while_imports_run_fails_them_cleanly(store: Store) -> None:
    import asyncio

    from eventodb.core.errors import BackendError
    from eventodb.store.base import Message

    moment = datetime(2025, 1, 1, tzinfo=UTC)
    for attempt in range(3):
        namespace = f"busy-{attempt}"
        await store.create_namespace(namespace, _hash(namespace))
        errors: list[Exception] = []

        async def importer(namespace: str = namespace, errors: list[Exception] = errors) -> None:
            for batch in range(20):
                records = [
                    Message(
                        f"00000000-0000-4000-8000-{batch * 1000 + i + 1:012d}",
                        f"s-{i % 50}",
                        "T",
                        batch * 20 + i // 50,
                        batch * 1000 + i + 1,
                        {"i": i},
                        None,
                        moment,
                    )
                    for i in range(1000)
                ]
                try:
                    await store.import_messages(namespace, records)
                except (NamespaceNotFound, BackendError) as exc:
                    errors.append(exc)
                    return

        task = asyncio.create_task(importer())
        await asyncio.sleep(0.02 * (attempt + 1))
        await store.delete_namespace(namespace)
        await asyncio.wait_for(task, 60)
        assert not await store.namespace_exists(namespace)
        assert all("deadlock" not in str(e) for e in errors), errors


@pytest.mark.parametrize("namespace", ["\x00", "a\x00b", "\ud800", "a\udfffb"])
async def test_ids_no_database_can_hold_are_simply_not_found(store: Store, namespace: str) -> None:
    """Tokens and ``ns.info``/``ns.delete`` carry arbitrary ids; Postgres cannot even compare
    text with a NUL, so such an id must be "not found" on every backend, never a failure."""
    with pytest.raises(NamespaceNotFound):
        await store.get_namespace(namespace)
    with pytest.raises(NamespaceNotFound):
        await store.delete_namespace(namespace)
    assert not await store.namespace_exists(namespace)


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("a\x00b", "options.description must not contain NUL characters"),
        ("a\ud800", "options.description must be valid UTF-8"),
    ],
)
async def test_descriptions_every_backend_can_store_are_required(
    store: Store, description: str, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        await store.create_namespace("alpha", _hash("alpha"), description)
    assert not await store.namespace_exists("alpha")


async def test_a_long_description_with_any_other_characters_is_kept(store: Store) -> None:
    description = "é😀\t\n" * 10_000
    await store.create_namespace("alpha", _hash("alpha"), description)
    assert (await store.get_namespace("alpha")).description == description
