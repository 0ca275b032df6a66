"""The programs in examples/ run against the real server and do what their docstrings say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventodb.core.hashing import group_member
from tests.docs.conftest import ROOT, require_tools, shell_env
from tests.support.server import ADMIN_TOKEN, Server, Tenant, make_tenant

EXAMPLES = ROOT / "examples"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("examples")
    srv = Server([f"--token={ADMIN_TOKEN}", f"--data-dir={workdir / 'data'}"], workdir=workdir)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture
def tenant(server: Server) -> Tenant:
    return make_tenant(server)


def _env(server: Server, token: str, workdir: Path) -> dict[str, str]:
    return shell_env(workdir, EVENTODB_URL=server.url, EVENTODB_TOKEN=token)


class Background:
    """An example running in the background, its stdout going to a file we can poll."""

    def __init__(self, script: str, *args: str, env: dict[str, str], cwd: Path) -> None:
        self.out = cwd / f"{script}-{len(list(cwd.iterdir()))}.out"
        self.err = self.out.with_suffix(".err")
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(EXAMPLES / script), *args],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=err,
                text=True,
            )

    def lines(self) -> list[str]:
        return self.out.read_text().splitlines()

    def wait_for_lines(self, count: int) -> list[str]:
        deadline = time.monotonic() + TIMEOUT
        while len(self.lines()) < count:
            assert self.proc.poll() is None or len(self.lines()) >= count, self.err.read_text()
            assert time.monotonic() < deadline, (self.lines(), self.err.read_text())
            time.sleep(0.05)
        return self.lines()

    def finish(self) -> list[str]:
        """Wait for the example to end by itself (it was given ``--max-messages``)."""
        try:
            status = self.proc.wait(TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert status == 0, self.err.read_text()
        return self.lines()


def _run(script: str, *args: str, env: dict[str, str], cwd: Path) -> str:
    """Run an example to its end; returns what it printed on stdout."""
    return "\n".join(Background(script, *args, env=env, cwd=cwd).finish())


def test_the_producer_writes_round_robin_and_reports_positions(
    tenant: Tenant, tmp_path: Path
) -> None:
    env = _env(tenant.server, tenant.token, tmp_path)
    output = _run(
        "httpx_producer.py", "account", "--streams", "2", "--count", "4", env=env, cwd=tmp_path
    )
    assert output.splitlines() == [
        "account-1 position 0 global 1",
        "account-2 position 0 global 2",
        "account-1 position 1 global 3",
        "account-2 position 1 global 4",
    ]
    assert [m[1] for m in tenant.ok("stream.get", "account-2")] == ["Deposited", "Deposited"]
    assert [m[4] for m in tenant.ok("stream.get", "account-2")] == [{"amount": 2}, {"amount": 4}]


def test_the_consumer_catches_up_follows_live_writes_and_resumes(
    tenant: Tenant, tmp_path: Path
) -> None:
    env = _env(tenant.server, tenant.token, tmp_path)
    position_file = tmp_path / "account.position"
    _run("httpx_producer.py", "account", "--count", "4", env=env, cwd=tmp_path)
    consumer = Background(
        "httpx_consumer.py",
        "account",
        "--position-file",
        str(position_file),
        "--max-messages",
        "6",
        env=env,
        cwd=tmp_path,
    )
    consumer.wait_for_lines(4)  # caught up; the next two arrive while it listens
    _run("httpx_producer.py", "account", "--count", "2", env=env, cwd=tmp_path)
    lines = consumer.finish()
    assert [line.split()[0] for line in lines] == ["1", "2", "3", "4", "5", "6"]
    assert lines[0] == "1 account-1@0 Deposited {'amount': 1}"
    assert position_file.read_text() == "7"

    _run("httpx_producer.py", "account", "--count", "1", env=env, cwd=tmp_path)
    again = _run(
        "httpx_consumer.py",
        "account",
        "--position-file",
        str(position_file),
        "--max-messages",
        "1",
        env=env,
        cwd=tmp_path,
    )
    assert again.splitlines() == ["7 account-1@3 Deposited {'amount': 1}"]


def test_the_consumer_reconnects_after_a_server_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Server([f"--token={ADMIN_TOKEN}", f"--data-dir={data}"], workdir=tmp_path)
    tenant = make_tenant(first)
    env = _env(first, tenant.token, tmp_path)
    tenant.ok("stream.write", "order-1", {"type": "Placed", "data": {}})
    consumer = Background(
        "httpx_consumer.py", "order", "--max-messages", "2", env=env, cwd=tmp_path
    )
    consumer.wait_for_lines(1)
    assert first.stop() == 0
    second = Server(
        [f"--token={ADMIN_TOKEN}", f"--data-dir={data}"], workdir=tmp_path, port=first.port
    )
    try:
        second.ok(tenant.token, "stream.write", "order-2", {"type": "Placed", "data": {}})
        lines = consumer.finish()
    finally:
        assert second.stop() == 0
    assert [line.split()[:2] for line in lines] == [["1", "order-1@0"], ["2", "order-2@0"]]
    assert "reconnecting" in consumer.err.read_text()


def test_group_workers_share_a_category_stream_by_stream(tenant: Tenant, tmp_path: Path) -> None:
    env = _env(tenant.server, tenant.token, tmp_path)
    streams, count = 6, 12
    names = [f"account-{n % streams + 1}" for n in range(count)]
    share = [sum(1 for name in names if group_member(name, 2) == m) for m in (0, 1)]
    workers = [
        Background(
            "httpx_group_worker.py",
            "account",
            "--member",
            str(member),
            "--size",
            "2",
            "--max-messages",
            str(share[member]),
            env=env,
            cwd=tmp_path,
        )
        for member in (0, 1)
    ]
    _run(
        "httpx_producer.py",
        "account",
        "--streams",
        str(streams),
        "--count",
        str(count),
        env=env,
        cwd=tmp_path,
    )
    amounts: dict[str, list[int]] = {}  # what the producer deposits, stream by stream
    for n, name in enumerate(names):
        amounts.setdefault(name, []).append(n + 1)
    handled: dict[str, list[int]] = {}
    for member, worker in enumerate(workers):
        for line in worker.finish():
            match = re.fullmatch(rf"member {member}: \d+ (\S+)@(\d+) Deposited balance (\d+)", line)
            assert match, line
            stream, position, balance = match[1], int(match[2]), int(match[3])
            assert group_member(stream, 2) == member, line
            assert balance == sum(amounts[stream][: position + 1]), line
            handled.setdefault(stream, []).append(position)
    assert sorted(handled) == sorted(amounts)
    assert all(positions == [0, 1] for positions in handled.values()), handled


def test_the_curl_session_runs_from_start_to_end(server: Server, tmp_path: Path) -> None:
    require_tools("bash", "curl", "jq")
    env = shell_env(tmp_path, EVENTODB_URL=server.url, EVENTODB_ADMIN_TOKEN=ADMIN_TOKEN)
    done = subprocess.run(
        ["bash", str(EXAMPLES / "curl_session.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert '{"position":1,"globalPosition":2}' in out  # the deposit with expectedVersion 0
    assert '"code":"STREAM_VERSION_CONFLICT"' in out
    assert 'data: {"stream":"account-2","position":0,"globalPosition":3}' in out
    assert '[{"category":"account","streamCount":2,"messageCount":3}]' in out
    assert '"messagesDeleted":3' in out
    namespaces = [ns["namespace"] for ns in server.ok(ADMIN_TOKEN, "ns.list")]
    assert not any(ns.startswith("curl-example-") for ns in namespaces)
    assert os.access(EXAMPLES / "curl_session.sh", os.X_OK)
