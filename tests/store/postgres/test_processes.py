"""Several processes, one database: two store instances in separate OS processes write to the
same stream. The write lock is a database lock, so expected versions stay exact and positions
stay gapless across processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from eventodb.store.postgres import PostgresStore
from tests.support.postgres import open_postgres_store

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(90)]

NS = "procs"

WRITER = """
import asyncio, json, sys, time
from eventodb.core.errors import VersionConflict
from eventodb.store.postgres import PostgresStore

dsn, mode, count, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

async def main():
    results = []
    async with PostgresStore(dsn, min_pool=4, max_pool=10) as store:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        if mode == "expected":
            # Race the other process for every version: -1, 0, 1, ...
            for expected in range(-1, count - 1):
                try:
                    r = await store.write_message(
                        "procs", "race-1", "T", {"pid": 0}, expected_version=expected
                    )
                    results.append(["won", expected, r.position])
                except VersionConflict as exc:
                    results.append(["lost", expected, exc.actual])
        else:
            async def one(i):
                r = await store.write_message("procs", "pile-1", "T", {"i": i})
                return [r.position, r.global_position]
            results = await asyncio.gather(*(one(i) for i in range(count)))
    print(json.dumps(results))

asyncio.run(main())
"""


@pytest.fixture
async def store(postgres_dsn: str) -> AsyncIterator[PostgresStore]:
    async with open_postgres_store(postgres_dsn) as pg:
        await pg.create_namespace(NS, "hash")
        yield pg


def run_two(tmp_path: Path, dsn: str, mode: str, count: int) -> list[list[Any]]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    start_at = str(time.time() + 2.0)  # both are connected by then; then they start together
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), dsn, mode, str(count), start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    return outputs


async def test_of_two_processes_with_the_same_expected_version_exactly_one_wins(
    store: PostgresStore, postgres_dsn: str, tmp_path: Path
) -> None:
    versions = 30
    first, second = run_two(tmp_path, postgres_dsn, "expected", versions)
    for expected in range(-1, versions - 1):
        outcomes = [r for r in first + second if r[1] == expected]
        assert sorted(o[0] for o in outcomes) == ["lost", "won"], outcomes
        [won] = [o for o in outcomes if o[0] == "won"]
        assert won[2] == expected + 1
    assert await store.stream_version(NS, "race-1") == versions - 1


async def test_unconditioned_writes_from_two_processes_stay_gapless(
    store: PostgresStore, postgres_dsn: str, tmp_path: Path
) -> None:
    each = 100
    first, second = run_two(tmp_path, postgres_dsn, "pile", each)
    positions = sorted(r[0] for r in first + second)
    assert positions == list(range(2 * each))
    global_positions = [r[1] for r in first + second]
    assert len(set(global_positions)) == 2 * each
    read = await store.get_stream_messages(NS, "pile-1", batch_size=-1)
    assert [m.position for m in read] == list(range(2 * each))
    assert sorted(m.global_position for m in read) == sorted(global_positions)
