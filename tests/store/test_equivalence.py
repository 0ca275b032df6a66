"""SQLite and Postgres give the same answers: random operation sequences are applied to an
in-memory SQLiteStore and a PostgresStore, and every outcome and every read must be equal.

Generated ids and times are ignored; everything else is compared: positions, global positions,
data, metadata, errors (type, message, details, failing index), stream and category reads with
every consumer group of sizes 1..5, correlation filters, last messages, versions and listings.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from eventodb.core import ids, jsoncodec
from eventodb.core.errors import EventoDBError
from eventodb.store.base import ConsumerGroup, Message, Store, WriteResult
from eventodb.store.postgres import PostgresStore
from eventodb.store.sqlite import SQLiteStore
from tests.support.postgres import reset_database

CATEGORIES = ["acc", "Acc", "ord", "x", "ñ", ""]
STREAM_IDS = [None, "1", "2", "3", "10", "", "1+retry", "2+a+b", "a-b", "ü"]
STREAMS = sorted(
    {f"{c}-{i}" if i is not None else c for c in CATEGORIES for i in STREAM_IDS} - {""}
)
READ_CATEGORIES = ["", "acc", "Acc", "ord", "x", "ñ", "acc-1", "nope"]
CORRELATIONS = ["acc", "ord", "x", "", "acc-1", "Acc"]
FIXED_IDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 4)]
ID_SPELLINGS = [
    *FIXED_IDS,
    FIXED_IDS[0].upper(),
    "{" + FIXED_IDS[1] + "}",
    FIXED_IDS[2].replace("-", ""),
]
T0 = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


@dataclass(frozen=True)
class Write:
    stream: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] | None
    message_id: str | None
    expected: int | str | None
    """An int, None, or "current"/"next" (resolved against the stream's version at apply time)."""


@dataclass(frozen=True)
class Record:
    stream: str
    position: int
    gpos: int | str
    """An int (may collide) or "fresh" (above everything so far)."""
    message_id: str
    data: dict[str, Any]
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class Import:
    records: tuple[Record, ...]


@dataclass(frozen=True)
class Clear:
    pass


@dataclass(frozen=True)
class Retry:
    """Repeat the latest write that carried an id (an idempotent retry, or a late conflict)."""


Operation = Write | Import | Clear | Retry

json_scalars = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
)
payloads = st.dictionaries(
    st.sampled_from(["a", "b", "n", "ü"]),
    st.one_of(json_scalars, st.lists(json_scalars, max_size=2)),
    max_size=3,
)
"""Write payloads: may hold NUL, which both backends must refuse the same way."""
import_payloads = payloads.filter(lambda d: "\\u0000" not in jsoncodec.dumps_str(d))
"""Import payloads: valid only; the import endpoint validates records before the store."""
metadatas = st.one_of(
    st.none(),
    st.just({}),
    st.builds(
        lambda c: {"correlationStreamName": c},
        st.one_of(st.sampled_from(STREAMS), st.sampled_from(["", "acc", "-x"]), st.integers(0, 2)),
    ),
    st.builds(lambda v: {"other": v}, st.text(max_size=3)),
)
writes = st.builds(
    Write,
    stream=st.sampled_from(STREAMS),
    type=st.sampled_from(["Opened", "Closed", "T"]),
    data=payloads,
    metadata=metadatas,
    message_id=st.one_of(st.none(), st.none(), st.sampled_from(ID_SPELLINGS)),
    expected=st.one_of(
        st.none(), st.none(), st.sampled_from(["current", "current", "next", -1, 0, 1, 2, -5])
    ),
)
import_metadatas = metadatas.filter(lambda d: "\\u0000" not in jsoncodec.dumps_str(d))
records = st.builds(
    Record,
    stream=st.sampled_from(STREAMS),
    position=st.integers(0, 3),
    gpos=st.one_of(st.just("fresh"), st.integers(1, 8)),
    message_id=st.one_of(st.sampled_from(FIXED_IDS), st.uuids(version=4).map(str)),
    data=import_payloads,
    metadata=import_metadatas,
)
operations = st.lists(
    st.one_of(
        writes,
        writes,
        writes,
        writes,
        st.builds(Import, st.lists(records, min_size=1, max_size=3).map(tuple)),
        st.just(Retry()),
        st.just(Clear()),
    ),
    min_size=1,
    max_size=30,
)


async def outcome(call: Awaitable[Any]) -> Any:
    """A comparable summary of a call's result or error."""
    try:
        result = await call
    except EventoDBError as exc:
        return ("error", type(exc).__name__, exc.message, exc.details, getattr(exc, "index", None))
    if isinstance(result, WriteResult):
        return ("ok", result.position, result.global_position, result.duplicate)
    return ("ok", result)


class Pair:
    """The two stores under comparison, each with the same namespace."""

    def __init__(self, sqlite: Store, pg: Store, namespace: str) -> None:
        self.stores = (sqlite, pg)
        self.ns = namespace
        self.known_ids: set[str] = set()
        self.streams = {"acc-1", "nope-1"}
        """Streams to read back: every one written to, plus some never written."""
        self.highest = 0
        self.last_with_id: Write | None = None

    async def both(self, call: Any) -> Any:
        """Run ``call(store)`` on each store; the outcomes must be equal."""
        first = await outcome(call(self.stores[0]))
        second = await outcome(call(self.stores[1]))
        assert first == second, f"sqlite: {first!r}\npostgres: {second!r}"
        event(f"outcome: {first[1] if first[0] == 'error' else 'ok'}")
        if first[0] == "ok" and len(first) == 4 and first[3]:
            event("outcome: idempotent retry")
        return first

    async def apply(self, op: Operation) -> None:
        sqlite = self.stores[0]
        if isinstance(op, Retry):
            if self.last_with_id is None:
                return
            op = self.last_with_id
        if isinstance(op, Write):
            if op.message_id:
                self.last_with_id = op
            self.streams.add(op.stream)
            expected = op.expected
            if isinstance(expected, str):
                current = await sqlite.stream_version(self.ns, op.stream)
                version = -1 if current is None else current
                expected = version if expected == "current" else version + 1
            if op.message_id:
                self.known_ids.add(ids.canonical_uuid(op.message_id) or op.message_id)
            result = await self.both(
                lambda s: s.write_message(
                    self.ns,
                    op.stream,
                    op.type,
                    op.data,
                    op.metadata,
                    message_id=op.message_id,
                    expected_version=expected,
                )
            )
            if result[0] == "ok":
                self.highest = max(self.highest, result[2])
        elif isinstance(op, Import):
            messages = []
            for i, r in enumerate(op.records):
                self.streams.add(r.stream)
                gpos = self.highest + 1 + i if r.gpos == "fresh" else r.gpos
                assert isinstance(gpos, int)
                self.known_ids.add(r.message_id)
                messages.append(
                    Message(
                        r.message_id,
                        r.stream,
                        "Imported",
                        r.position,
                        gpos,
                        r.data,
                        r.metadata,
                        T0 + timedelta(microseconds=i),
                    )
                )
            result = await self.both(lambda s: s.import_messages(self.ns, messages))
            if result[0] == "ok":
                self.highest = max([self.highest, *(m.global_position for m in messages)])
        elif isinstance(op, Clear):
            await self.both(lambda s: s.clear_namespace(self.ns))
            self.highest = 0

    def view(self, messages: list[Message]) -> list[tuple[Any, ...]]:
        return [
            (
                m.id if m.id in self.known_ids else None,
                m.stream_name,
                m.type,
                m.position,
                m.global_position,
                m.data,
                m.metadata,
            )
            for m in messages
        ]

    async def compare_reads(self) -> None:
        async def reads(s: Store) -> list[Any]:
            ns = self.ns
            seen: list[Any] = []
            for stream in sorted(self.streams):
                seen.append(self.view(await s.get_stream_messages(ns, stream, batch_size=-1)))
                seen.append(
                    self.view(await s.get_stream_messages(ns, stream, position=1, batch_size=2))
                )
                seen.append(self.view(await s.get_stream_messages(ns, stream, global_position=3)))
                last = await s.get_last_stream_message(ns, stream)
                last_typed = await s.get_last_stream_message(ns, stream, "Opened")
                seen.append(self.view([m for m in (last, last_typed) if m is not None]))
                seen.append(await s.stream_version(ns, stream))
            for category in READ_CATEGORIES:
                for position, batch in ((1, -1), (3, 2)):
                    seen.append(
                        self.view(
                            await s.get_category_messages(
                                ns, category, position=position, batch_size=batch
                            )
                        )
                    )
                for size in range(1, 6):
                    for member in range(size):
                        group = ConsumerGroup(member, size)
                        seen.append(
                            self.view(
                                await s.get_category_messages(ns, category, consumer_group=group)
                            )
                        )
                for correlation in CORRELATIONS:
                    seen.append(
                        self.view(
                            await s.get_category_messages(ns, category, correlation=correlation)
                        )
                    )
                seen.append(
                    self.view(
                        await s.get_category_messages(
                            ns, category, correlation="acc", consumer_group=ConsumerGroup(1, 2)
                        )
                    )
                )
            for prefix, cursor, limit in itertools.product(
                ["", "a", "A", "acc-1", "ñ"], ["", "acc-1", "Acc"], [2, 1000]
            ):
                streams = await s.list_streams(ns, prefix=prefix, cursor=cursor, limit=limit)
                seen.append([(i.stream, i.version) for i in streams])
            seen.append(await s.list_categories(ns))
            stats = await s.namespace_stats(ns)
            seen.append((stats.message_count, stats.stream_count))
            return seen

        first, second = await reads(self.stores[0]), await reads(self.stores[1])
        for a, b in zip(first, second, strict=True):
            assert a == b, f"sqlite: {a!r}\npostgres: {b!r}"


def _run(loop: asyncio.AbstractEventLoop, call: Awaitable[Any]) -> Any:
    return loop.run_until_complete(call)


@pytest.fixture
def stores(postgres_dsn: str) -> Iterator[tuple[asyncio.AbstractEventLoop, Store, Store]]:
    """Both stores, open on a private event loop (hypothesis drives a synchronous test)."""
    loop = asyncio.new_event_loop()
    sqlite = SQLiteStore(None)
    pg = PostgresStore(postgres_dsn, min_pool=1, max_pool=4)
    try:
        _run(loop, reset_database(postgres_dsn))
        _run(loop, sqlite.open())
        _run(loop, pg.open())
        yield loop, sqlite, pg
    finally:
        _run(loop, pg.close())
        _run(loop, sqlite.close())
        loop.close()


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_sqlite_and_postgres_agree_on_random_operation_sequences(
    stores: tuple[asyncio.AbstractEventLoop, Store, Store],
) -> None:
    loop, sqlite, pg = stores
    counter = itertools.count()

    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(ops=operations)
    def check(ops: list[Operation]) -> None:
        namespace = f"eq-{next(counter)}"

        async def scenario() -> None:
            pair = Pair(sqlite, pg, namespace)
            for store in (sqlite, pg):
                await store.create_namespace(namespace, f"hash-{namespace}")
            try:
                for op in ops:
                    await pair.apply(op)
                await pair.compare_reads()
            finally:
                for store in (sqlite, pg):
                    await store.delete_namespace(namespace)

        _run(loop, scenario())

    check()
