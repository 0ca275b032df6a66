"""The server's category reads scan the category's index range instead of the whole table.

The store prepares each statement once per connection and has Postgres make one generic plan
for it, without the values (``SESSION_SETUP``); a plan for given values is checked too, as
Postgres makes them when left to choose. Neither may walk the primary key
keeping the category's rows (a consumer-group read behind 260,000 messages took 160 ms instead
of 0.4 ms) or read the rest of a big category and sort it (6-450 ms instead of about 1 ms from
its middle). A plan made for a read that starts close to the table's end may still scan the end
of the table and sort it (see ``_category_order`` in ``eventodb.store.postgres.statements``),
so that case is checked for the generic plan only. The check an import makes after a collision
probes the indexes too.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from eventodb.store.postgres.pool import SESSION_SETUP
from eventodb.store.postgres.statements import NamespaceSQL, schema_name
from tests.support.postgres import open_postgres_store

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

NS = "plans"
EARLIER = 30_000
"""Messages of twenty other categories, written before the category read."""
LATE = "late"
LATE_COUNT = 20_000
"""Messages of the category read (500 streams), all with a correlation."""
POSITIONS = (1, EARLIER + LATE_COUNT // 2, EARLIER + LATE_COUNT - 2_000)
"""Where the reads start: the table's start, the middle of the category read, near the end."""
NEAR_THE_END = POSITIONS[2]


@pytest.fixture
async def sql(postgres_dsn: str) -> AsyncIterator[Any]:
    """A SQL connection on a namespace whose category ``late`` (20,000 messages) follows 30,000
    messages of other categories; statistics are up to date."""
    async with _namespace(postgres_dsn, EARLIER, LATE_COUNT) as conn:
        yield conn


@asynccontextmanager
async def _namespace(dsn: str, earlier: int, late: int) -> AsyncIterator[Any]:
    """A SQL connection, set up as the store's own, on a namespace holding ``earlier`` messages
    of twenty other categories, then ``late`` messages of category ``late`` (500 streams), all
    with a correlation; statistics are up to date."""
    async with open_postgres_store(dsn) as store:
        await store.create_namespace(NS, "hash")
        statements = NamespaceSQL(schema_name(NS))
        table = statements.messages
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(SESSION_SETUP)
            await conn.execute(
                f"INSERT INTO {table} (id, stream_name, position, type, data, metadata)"
                " SELECT gen_random_uuid(), 'other' || (g % 20) || '-' || (g / 20 % 500),"
                " g / 10000, 'T', '{}', NULL FROM generate_series(0, $1 - 1) g",
                earlier,
            )
            await conn.execute(
                f"INSERT INTO {table} (id, stream_name, position, type, data, metadata)"
                f" SELECT gen_random_uuid(), '{LATE}-' || (g % 500), g / 500, 'T', '{{}}',"
                """ '{"correlationStreamName": "origin-1"}' FROM generate_series(0, $1 - 1) g""",
                late,
            )
            # The columns the server's writes fill in, as its upgrade fills them for older rows.
            await conn.execute(statements.fill, 1, earlier + late + 1)
            await conn.execute(f"ANALYZE {table}")
            yield conn
        finally:
            await conn.close()


def _arguments(position: int, correlation: bool, consumer_group: bool) -> list[str]:
    """position, limit, category, then correlation and (size, member) where the read has them."""
    args = [str(position), "100", f"'{LATE}'"]
    if correlation:
        args.append("'origin'")
    if consumer_group:
        args += ["4", "0"]
    return args


READS = [
    (positions_only, correlation, consumer_group)
    for positions_only, correlation, consumer_group in itertools.product((False, True), repeat=3)
    if not (positions_only and correlation)  # positions are read without a correlation
]


async def test_category_reads_scan_the_category_index(sql: Any) -> None:
    statements = NamespaceSQL(schema_name(NS))
    wrong = []
    for plan_mode in ("force_generic_plan", "force_custom_plan"):
        await sql.execute(f"SET plan_cache_mode = {plan_mode}")
        for (positions_only, correlation, consumer_group), position in itertools.product(
            READS, POSITIONS
        ):
            if plan_mode == "force_custom_plan" and position == NEAR_THE_END:
                continue  # such a plan may scan the table's end: see the module's docstring
            if positions_only:
                statement = statements.category_positions(True, consumer_group)
            else:
                statement = statements.read_category(True, correlation, consumer_group)
            plan = await _plan(sql, statement, _arguments(position, correlation, consumer_group))
            if _wrong_turn(plan):
                read = f"positions={positions_only} correlation={correlation}"
                wrong.append(f"{plan_mode}, {read} group={consumer_group} from {position}:\n{plan}")
    assert not wrong, "\n\n".join(wrong)


async def test_batched_category_reads_scan_the_category_index_once_per_read(sql: Any) -> None:
    # Inside the batch, each read's scan is parameterised by its array elements: a plan made
    # without values, whatever plan_cache_mode says.
    statements = NamespaceSQL(schema_name(NS))
    wrong = []
    for consumer_group, position in itertools.product((False, True), POSITIONS):
        statement = statements.read_category_batched(True, consumer_group)
        plan = await _plan(sql, statement, _arrays(_arguments(position, False, consumer_group)))
        if _wrong_turn(plan) or "loops=2" not in plan:
            wrong.append(f"group={consumer_group} from {position}:\n{plan}")
    assert not wrong, "\n\n".join(wrong)


async def test_batched_reads_of_the_whole_namespace_scan_the_primary_key(sql: Any) -> None:
    statements = NamespaceSQL(schema_name(NS))
    for consumer_group in (False, True):
        arguments = [str(NEAR_THE_END), "100"] + ["4", "0"] * consumer_group
        plan = await _plan(
            sql, statements.read_category_batched(False, consumer_group), _arrays(arguments)
        )
        assert "Index Scan using messages_pkey" in plan, plan
        assert "loops=2" in plan, plan
        assert not any(wrong in plan for wrong in ("Seq Scan", "Sort Key: m")), plan


def _arrays(arguments: list[str]) -> list[str]:
    """Arrays of two reads for a batched statement: the read of ``arguments`` (SQL literals;
    a position first) and the same read from the start of the table."""
    return [f"ARRAY[{a}, {b}]" for a, b in zip(arguments, ["1", *arguments[1:]], strict=True)]


@pytest.mark.parametrize(("earlier", "late"), [(300, 2_000), (2_000, 20_000)])
async def test_reads_of_a_category_holding_most_of_the_table_stop_after_the_page(
    postgres_dsn: str, earlier: int, late: int
) -> None:
    # Expecting a handful of matches, the generic plan of such a read once scanned the whole
    # category with a bitmap and sorted it (see SESSION_SETUP).
    statements = NamespaceSQL(schema_name(NS))
    wrong = []
    async with _namespace(postgres_dsn, earlier, late) as sql:
        await sql.execute("SET plan_cache_mode = force_generic_plan")
        for positions_only, correlation, consumer_group in READS:
            if positions_only:
                statement = statements.category_positions(True, consumer_group)
            else:
                statement = statements.read_category(True, correlation, consumer_group)
            plan = await _plan(sql, statement, _arguments(1, correlation, consumer_group))
            if _wrong_turn(plan) or "Bitmap" in plan:
                read = f"positions={positions_only} correlation={correlation}"
                wrong.append(f"{read} group={consumer_group}:\n{plan}")
    assert not wrong, "\n\n".join(wrong)


async def test_reads_are_planned_once_per_connection(postgres_dsn: str) -> None:
    # Left to choose, Postgres planned the first executions anew, and on some samples of the
    # statistics every one (about 0.1 ms each, see SESSION_SETUP).
    statements = NamespaceSQL(schema_name(NS))
    async with _namespace(postgres_dsn, 300, 2_000) as sql:
        reads = [
            (statements.read_category(True, False, False), (1, 100, LATE)),
            (statements.read_category(True, False, True), (1, 100, LATE, 4, 0)),
            (statements.read_stream, (f"{LATE}-1", 0, 100)),
        ]
        prepared = [await sql.prepare(statement) for statement, _ in reads]  # kept: not closed
        for statement, (_, arguments) in zip(prepared, reads, strict=True):
            for _ in range(8):
                assert (await statement.fetchrow(*arguments))[1] > 0
        plans = await sql.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement = ANY($1::text[])",
            [statement for statement, _ in reads],
        )
    assert [tuple(p) for p in plans] == [(8, 0)] * len(reads)


def _wrong_turn(plan: str) -> bool:
    """The plan does not read the category's index range in order, stopping after the page.

    Sorting what was read by (category, position) means the scan did not stop after the page
    (a sort of the page alone, for string_agg's ORDER BY, would be harmless).
    """
    return "messages_category" not in plan or any(
        wrong_turn in plan for wrong_turn in ("messages_pkey", "Seq Scan", "Sort Key: (split_part")
    )


async def test_batched_stream_reads_probe_the_stream_index_once_per_read(sql: Any) -> None:
    # Each read of a batch is a subquery of its own on its stream's index range; planned as a
    # join of the arrays with the table, the batch would read the whole table.
    statements = NamespaceSQL(schema_name(NS))
    arrays = [
        f"ARRAY['{LATE}-1', 'other3-7', 'none-1']",
        f"ARRAY[0, 1, {EARLIER}]",
        "ARRAY[100, 10, 100]",
    ]
    plan = await _plan(sql, statements.read_streams, arrays)
    assert "Index Scan using messages_stream on messages (actual rows=14 loops=3)" in plan, plan
    assert not any(wrong in plan for wrong in ("Seq Scan", "Hash Join", "Merge Join")), plan


async def test_the_import_collision_check_probes_indexes(sql: Any) -> None:
    # Conditions joined with OR on three different keys were checked against every row.
    statements = NamespaceSQL(schema_name(NS))
    taken_id = await sql.fetchval(f"SELECT id FROM {statements.messages} WHERE global_position = 7")
    keys = (
        [5, 99_999_999],
        [taken_id, uuid.uuid4()],
        [f"{LATE}-1", "none-1"],
        [0, 0],
    )
    rows = await sql.fetch(statements.collisions, *keys)
    found = sorted((r[0], r[1], r[2], r[3]) for r in rows)
    assert [(g, s, p) for g, _, s, p in found] == [
        (5, "other4-0", 0),
        (7, "other6-0", 0),
        (EARLIER + 2, f"{LATE}-1", 0),
    ]
    assert found[1][1] == str(taken_id)
    literals = [
        "ARRAY[5, 99999999]::bigint[]",
        f"ARRAY['{taken_id}', '{keys[1][1]}']::uuid[]",
        f"ARRAY['{LATE}-1', 'none-1']",
        "ARRAY[0, 0]::bigint[]",
    ]
    for plan_mode in ("force_generic_plan", "force_custom_plan"):
        await sql.execute(f"SET plan_cache_mode = {plan_mode}")
        plan = await _plan(sql, statements.collisions, literals)
        assert "Seq Scan" not in plan, plan


async def _plan(sql: Any, statement: str, arguments: list[str]) -> str:
    """EXPLAIN ANALYZE of ``statement`` prepared, executed with ``arguments`` (SQL literals)."""
    await sql.execute(f"PREPARE category_read AS {statement}")
    try:
        rows = await sql.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)"
            f" EXECUTE category_read({', '.join(arguments)})"
        )
    finally:
        await sql.execute("DEALLOCATE category_read")
    return "\n".join(row[0] for row in rows)
