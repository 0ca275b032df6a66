"""Namespaces as older servers left them, and consumer-group membership computed every way.

Namespace migration 004 added the columns of the fast paths (``wire_json``,
``cardinal_id_hash``) and 005 records that older rows were filled. Tests of that upgrade build
namespaces at migration 003 (this repository before 004) or as the EventoDB Go server 0.7 left
them, then open them with the shipped migrations.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import strategies as st

from eventodb.core.hashing import group_member
from eventodb.store.base import ConsumerGroup, Store
from tests.support.fixture_files import FIXTURES

GROUP_SIZES = range(1, 8)


NAMESPACE = CATEGORY = "cg"
"""The namespace of these tests, and the category its consumer groups read."""

GO_STREAMS = [
    "cg-1", "cg-2", "cg-1+retry", "cg-10", "cg-", "cg-a-b", "cg-ü", "cg-😀+x", "cg",
    "cg-123e4567-e89b-12d3-a456-426614174000", "cg-+", "cg-x+y+z", "other-1",
]  # fmt: skip
"""Stream names written into namespaces left by the Go server."""

PAYLOADS = [
    '{"n": 1}', '{"big": 100000000000000000000000, "f": 1.5e300, "small": 1e-300}',
    '{"s": "quote \\" backslash \\\\ astral 😀 control \\u0001"}', "{}",
    '{"a": [1, {"b": null}]}',
]  # fmt: skip
"""Data of older rows, as JSON text."""


class Interrupted(Exception):
    """Stands for whatever stops a server in the middle of the fill (a signal, a crash)."""


async def all_reads(store: Store, streams: list[str]) -> list[str]:
    """Every body the fill could change: each stream, its last message, the category, groups."""
    bodies = [await store.read_category_json(NAMESPACE, "", batch_size=-1)]
    for stream in streams:
        bodies.append(await store.read_stream_json(NAMESPACE, stream))
        bodies.append(await store.read_last_json(NAMESPACE, stream))
    for size in (1, 3):
        for member in range(size):
            bodies.append(
                await store.read_category_json(
                    NAMESPACE, CATEGORY, consumer_group=ConsumerGroup(member, size)
                )
            )
    return bodies


def go_postgres_namespace(schema: str) -> str:
    """SQL creating a namespace schema as the Go server 0.7 leaves it."""
    return (
        (FIXTURES / "eventodb_go_0_7_postgres_namespace.sql")
        .read_text("utf-8")
        .replace("__SCHEMA__", schema)
    )


def go_sqlite_data_dir(data: Path, namespace: str) -> sqlite3.Connection:
    """A data directory as the Go server 0.7 leaves it, holding ``namespace`` (empty); an open
    connection to the namespace's database (the caller closes it)."""
    data.mkdir(parents=True)
    with sqlite3.connect(data / "metadata.db") as registry:
        registry.executescript((FIXTURES / "eventodb_go_0_7_sqlite_registry.sql").read_text())
        registry.execute(
            "INSERT INTO namespaces VALUES (?, ?, ?, '', 1714557600, '{}')",
            (namespace, f"hash-{namespace}", str(data / f"{namespace}.db")),
        )
    registry.close()
    conn = sqlite3.connect(data / f"{namespace}.db", isolation_level=None)
    conn.executescript((FIXTURES / "eventodb_go_0_7_sqlite_namespace.sql").read_text())
    return conn


texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
"""Any text a name or a payload string may hold (valid UTF-8, no NUL)."""

stream_ids = st.one_of(
    st.none(),  # a stream named like its category: in no member's share
    texts,
    st.sampled_from(["", "1", "1+retry", "+x", "a-b", "a+b+c", "ü", "😀", "123e4567"]),
    st.integers(0, 10**6).map(str),
)
"""Stream ids for consumer-group tests (``None``: no id)."""


def stream_name(category: str, stream_id: str | None) -> str:
    return category if stream_id is None else f"{category}-{stream_id}"


def expected_members(streams: dict[int, str], size: int) -> list[set[int]]:
    """Global positions of each member of a group of ``size``, by ``eventodb.core.hashing``."""
    members: list[set[int]] = [set() for _ in range(size)]
    for global_position, stream in streams.items():
        member = group_member(stream, size)
        if member is not None:
            members[member].add(global_position)
    return members


async def store_members(store: Store, namespace: str, category: str, size: int) -> list[set[int]]:
    """Global positions of each member of a group of ``size``, read through the store."""
    return [
        {
            m.global_position
            for m in await store.get_category_messages(
                namespace, category, batch_size=-1, consumer_group=ConsumerGroup(member, size)
            )
        }
        for member in range(size)
    ]
