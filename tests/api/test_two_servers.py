"""Two real server processes on one database.

Postgres: several servers may share a database, so a revocation made through one (namespace
deleted, re-created with a new token, ``--token`` replaced at a restart) must reach the others
within a second, and the old token must stop working there.

SQLite: a data directory belongs to one server; a second one is refused at start-up, naming the
first one's PID, because two writers on one directory lose acknowledged writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from eventodb.core import tokens
from tests.support.polling import eventually
from tests.support.postgres import create_database, drop_database, run_sync
from tests.support.server import ADMIN_TOKEN, Server, unique

pytestmark = pytest.mark.timeout(120)

PROPAGATION = 1.0
"""Seconds within which every process must honour a revocation made through another one."""


@pytest.fixture
def private_dsn(postgres_dsn: str) -> Iterator[str]:
    """A database of its own: these tests replace the admin token, which others rely on."""
    url = run_sync(create_database, postgres_dsn)
    yield url
    run_sync(drop_database, postgres_dsn, url)


@pytest.fixture
def pair(private_dsn: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    first = Server([f"--token={ADMIN_TOKEN}", "--db-url", private_dsn], workdir=tmp_path)
    second = Server(["--db-url", private_dsn], workdir=tmp_path)
    yield first, second
    for srv in (second, first):
        assert srv.stop() == 0, srv.output()


def refused_within(limit: float, call: Callable[[], httpx.Response]) -> float:
    """Seconds until ``call`` answers 401/403; fails if that takes longer than ``limit``."""
    started = time.monotonic()
    while True:
        response = call()
        elapsed = time.monotonic() - started
        if response.status_code in (401, 403):
            return elapsed
        assert response.status_code == 200, response.text
        assert elapsed < limit, f"still accepted after {elapsed:.2f} s: {response.text}"
        time.sleep(0.02)


@pytest.mark.postgres
def test_a_deleted_and_recreated_namespace_refuses_its_old_token_on_every_server(
    pair: tuple[Server, Server],
) -> None:
    first, second = pair
    name = unique("x")
    old = first.ok(ADMIN_TOKEN, "ns.create", name)["token"]
    second.ok(old, "stream.write", "acc-1", {"type": "Opened", "data": {}})  # now cached there
    first.ok(ADMIN_TOKEN, "ns.delete", name)
    new = first.ok(ADMIN_TOKEN, "ns.create", name)["token"]
    first.ok(new, "stream.write", "secret-1", {"type": "Private", "data": {"pin": 1}})

    refused_within(PROPAGATION, lambda: second.rpc(old, "category.get", ""))
    assert second.rpc(old, "stream.write", "acc-1", {"type": "T", "data": {}}).status_code == 403
    assert second.ok(new, "category.get", "")[0][1] == "secret-1"
    assert [m[1] for m in first.ok(new, "category.get", "")] == ["secret-1"]


@pytest.mark.postgres
def test_a_subscription_of_a_revoked_token_ends_on_every_server(
    pair: tuple[Server, Server],
) -> None:
    first, second = pair
    name = unique("x")
    old = first.ok(ADMIN_TOKEN, "ns.create", name)["token"]
    lines: list[str] = []
    ended = threading.Event()

    def listen() -> None:
        with second.client.stream("GET", f"/subscribe?all=true&token={old}") as response:
            for line in response.iter_lines():
                lines.append(line)
        ended.set()

    threading.Thread(target=listen, daemon=True).start()
    eventually(lambda: ": ready" in lines, 10, "the subscription is ready")
    first.ok(ADMIN_TOKEN, "ns.delete", name)
    first.ok(ADMIN_TOKEN, "ns.create", name)
    assert ended.wait(PROPAGATION), lines
    assert not any(line.startswith("data:") for line in lines), lines


@pytest.mark.postgres
def test_a_restart_with_a_new_admin_token_revokes_the_old_one_on_every_server(
    private_dsn: str, tmp_path: Path
) -> None:
    first = Server([f"--token={ADMIN_TOKEN}", "--db-url", private_dsn], workdir=tmp_path)
    second = Server(["--db-url", private_dsn], workdir=tmp_path)
    try:
        second.ok(ADMIN_TOKEN, "ns.list")  # cached there
        assert first.stop() == 0
        replacement = tokens.generate("default")
        first = Server([f"--token={replacement}", "--db-url", private_dsn], workdir=tmp_path)
        refused_within(PROPAGATION, lambda: second.rpc(ADMIN_TOKEN, "ns.list"))
        second.ok(replacement, "ns.list")
    finally:
        for srv in (second, first):
            assert srv.stop() == 0, srv.output()


def test_a_second_server_on_the_same_sqlite_directory_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Server([f"--token={ADMIN_TOKEN}", f"--data-dir={data}"], workdir=tmp_path)
    try:
        second = Server([f"--data-dir={data}"], workdir=tmp_path, wait=False)
        try:
            status = second.proc.wait(20)
        finally:
            second.stop()
        output = second.output()
        assert status == 1, output
        assert f"pid {first.proc.pid}" in output, output
        assert str(data) in output, output
        # The first one is unaffected and still owns its files.
        first.ok(ADMIN_TOKEN, "stream.write", "acc-1", {"type": "T", "data": {}})
    finally:
        assert first.stop() == 0, first.output()
    # Once it has stopped, the directory is free again.
    third = Server([f"--token={ADMIN_TOKEN}", f"--data-dir={data}"], workdir=tmp_path)
    try:
        assert len(third.ok(ADMIN_TOKEN, "stream.get", "acc-1")) == 1
    finally:
        assert third.stop() == 0, third.output()
