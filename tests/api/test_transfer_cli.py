"""``eventodb export``, ``import`` and ``copy`` as a user runs them: the real CLI in a
subprocess against real servers on every backend (docs/MIGRATION.md, "Export, import and copy").
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gzip
import json
import os
import pty
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventodb.store.postgres.statements import quote_ident, schema_name
from tests.api.test_import_export import (  # the fixtures too: a namespace per test
    everything,
    import_events,
    ndjson,
    other,
    record,
    tenant,
)
from tests.support.cli import CLI_TIMEOUT, run_cli_bytes
from tests.support.ports import free_port
from tests.support.server import ADMIN_TOKEN, Server, Tenant, make_tenant, server_args

__all__ = ["other", "tenant"]

pytestmark = pytest.mark.timeout(120)

VERIFIED = re.compile(r"Verified: ([\d,]+) messages, last global position (\d+)\.\n")


def run_on_terminal(*args: str, answer: bytes = b"") -> tuple[int, str]:
    """Run the CLI with stdin and stderr on a pseudo-terminal; (status, what it showed)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventodb", *args],
        stdin=follower,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + CLI_TIMEOUT
    answered = not answer
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            shown += chunk
            if not answered and b"[y/N]" in shown:
                os.write(leader, answer)
                answered = True
        elif proc.poll() is not None:
            break
    status = proc.wait(CLI_TIMEOUT)
    os.close(leader)
    return status, shown.decode("utf-8", "replace")


def _seed(tenant: Tenant) -> None:
    """Messages in two categories with and without metadata, plus one in a third."""
    for i in range(3):
        tenant.ok("stream.write", f"order-{i}", {"type": "Placed", "data": {"i": i}})
        tenant.ok(
            "stream.write",
            "user-1",
            {"type": "Seen", "data": {"i": i}, "metadata": {"correlationStreamName": "order-1"}},
        )
    tenant.ok("stream.write", "misc-1", {"type": "Other", "data": {}, "metadata": {}})


def _records(count: int, streams: int = 50) -> list[dict[str, Any]]:
    """Records with microsecond times, in global order."""
    return [
        record(
            g,
            f"acct-{g % streams}",
            (g - 1) // streams,
            time=f"2025-01-15T10:00:{g // 1_000_000 % 60:02d}.{g % 1_000_000:06d}Z",
            data={"n": g, "f": g / 7},
            meta={"correlationStreamName": f"x-{g % 3}"} if g % 2 else None,
        )
        for g in range(1, count + 1)
    ]


# -- export ------------------------------------------------------------------------------------


def test_export_then_import_keeps_every_field_to_the_microsecond(
    tenant: Tenant, other: Tenant, tmp_path: Path
) -> None:
    _seed(tenant)
    url = tenant.server.url
    out = tmp_path / "dump.ndjson"
    exported = run_cli_bytes("export", "--url", url, "--token", tenant.token, "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    assert re.fullmatch(
        r"Exported 7 messages \(global positions up to 7\) in \d+\.\ds \([\d,]+ msg/s\)\n",
        exported.stderr.decode(),
    )
    imported = run_cli_bytes("import", f"--url={url}", f"--token={other.token}", f"--input={out}")
    assert imported.returncode == 0, imported.stderr
    err = imported.stderr.decode()
    assert re.match(r"Imported 7 messages in \d+\.\ds \([\d,]+ msg/s\)\n", err), err
    assert VERIFIED.search(err).groups() == ("7", "7")  # type: ignore[union-attr]
    source = everything(tenant)
    assert any(re.search(r"\.\d+Z$", m[7]) for m in source)  # real fractions were written
    assert everything(other) == source
    written = other.ok("stream.write", "order-0", {"type": "Placed", "data": {}})
    assert written == {"position": 1, "globalPosition": 8}


def test_export_keeps_microseconds_and_whole_seconds_gives_the_go_format(tenant: Tenant) -> None:
    import_events(tenant, ndjson([record(1, time="2025-01-15T10:00:07.243870Z")]))
    args = ["export", "--url", tenant.server.url, "--token", tenant.token]
    default = run_cli_bytes(*args)
    assert default.returncode == 0, default.stderr
    line = default.stdout.decode()
    assert line.count("\n") == 1
    rec = json.loads(line)
    assert list(rec) == ["id", "stream", "type", "pos", "gpos", "data", "meta", "time"]
    assert rec["time"] == "2025-01-15T10:00:07.24387Z"
    assert ", " not in line
    whole = run_cli_bytes(*args, "--whole-seconds")
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["time"] == "2025-01-15T10:00:07Z"
    assert whole.stdout.decode().replace("07Z", "07.24387Z") == line


def test_export_of_several_categories_is_in_global_order(tenant: Tenant) -> None:
    records = [record(g, f"{'abc'[g % 3]}-{g % 7}", g // 21) for g in range(1, 12302)]
    import_events(tenant, ndjson(records))
    result = run_cli_bytes(
        "export", "--url", tenant.server.url, "--token", tenant.token, "--categories", " b , a,"
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(x) for x in result.stdout.decode().splitlines()]
    assert [x["gpos"] for x in lines] == [g for g in range(1, 12302) if g % 3 != 2]


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        ("2025-01-02", None, [2, 3, 4]),
        (None, "2025-01-03", [1, 2]),
        ("2025-01-02T00:00:00Z", "2025-01-03T12:00:00Z", [2]),
        ("2025-01-02T00:00:00Z", "2025-01-03T12:00:00.000001Z", [2, 3]),
        ("2025-01-02T01:00:00+02:00", "2025-01-02T00:00:00.5Z", [1, 2]),
    ],
)
def test_export_filters_by_time_since_inclusive_until_exclusive(
    tenant: Tenant, since: str | None, until: str | None, expected: list[int]
) -> None:
    times = [
        "2025-01-01T23:59:59.999Z",
        "2025-01-02T00:00:00Z",
        "2025-01-03T12:00:00Z",
        "2025-01-04T00:00:00Z",
    ]
    import_events(tenant, ndjson([record(i + 1, time=t) for i, t in enumerate(times)]))
    args = ["export", "--url", tenant.server.url, "--token", tenant.token]
    if since:
        args += ["--since", since]
    if until:
        args += ["--until", until]
    result = run_cli_bytes(*args)
    assert result.returncode == 0, result.stderr
    assert [json.loads(x)["gpos"] for x in result.stdout.decode().splitlines()] == expected


def test_gzip_export_and_gzip_import_from_stdin(
    tenant: Tenant, other: Tenant, tmp_path: Path
) -> None:
    _seed(tenant)
    dump = tmp_path / "dump.ndjson.gz"
    url = tenant.server.url
    exported = run_cli_bytes(
        "export", "-url", url, "-token", tenant.token, "-gzip", "-output", str(dump)
    )
    assert exported.returncode == 0, exported.stderr
    assert len(gzip.decompress(dump.read_bytes()).decode().splitlines()) == 7
    imported = run_cli_bytes(
        "import", "-url", url, "-token", other.token, "-gzip", stdin=dump.read_bytes()
    )
    assert imported.returncode == 0, imported.stderr
    assert everything(other) == everything(tenant)


# -- import: progress, confirmation, refusals, resume ----------------------------------------


def test_progress_is_a_line_every_interval_when_stderr_is_not_a_terminal(
    tenant: Tenant, tmp_path: Path
) -> None:
    dump = tmp_path / "in.ndjson"
    dump.write_bytes(ndjson(_records(30_000)))
    result = run_cli_bytes(
        "import", "--url", tenant.server.url, "--token", tenant.token, "--input", str(dump),
        "--progress-interval", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.decode().splitlines()
    progress = [x for x in lines if x.startswith("Imported ") and "%" in x]
    assert progress, lines
    for line in progress:
        assert re.fullmatch(r"Imported [\d,]+ messages \([\d,]+ msg/s, \d+%(, ETA \w+)?\)", line), (
            line
        )
    assert "\r" not in result.stderr.decode()
    assert tenant.message_count() == 30_000


def test_progress_is_a_bar_with_rate_and_eta_on_a_terminal(tenant: Tenant, tmp_path: Path) -> None:
    dump = tmp_path / "in.ndjson"
    dump.write_bytes(ndjson(_records(20_000)))
    status, shown = run_on_terminal(
        "import", "--url", tenant.server.url, "--token", tenant.token, "--input", str(dump)
    )
    assert status == 0, shown
    assert "100%|" in shown, shown  # tqdm's bar
    assert re.search(r"[\d,]+ messages, [\d,]+ msg/s", shown), shown
    assert "Verified: 20,000 messages" in shown


def test_force_with_yes_replaces_the_namespace(tenant: Tenant, tmp_path: Path) -> None:
    tenant.ok("stream.write", "old-1", {"type": "T", "data": {}})
    dump = tmp_path / "in.ndjson"
    dump.write_bytes(ndjson([record(1, "new-1", 0)]))
    result = run_cli_bytes(
        "import", "--url", tenant.server.url, "--token", tenant.token, "--input", str(dump),
        "--force", "--yes",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [m[1] for m in everything(tenant)] == ["new-1"]


@pytest.mark.parametrize("stdin", [b"y\n", b""])
def test_force_without_yes_needs_a_terminal(tenant: Tenant, tmp_path: Path, stdin: bytes) -> None:
    tenant.ok("stream.write", "old-1", {"type": "T", "data": {}})
    dump = tmp_path / "in.ndjson"
    dump.write_bytes(ndjson([record(1, "new-1", 0)]))
    result = run_cli_bytes(
        "import", "--url", tenant.server.url, "--token", tenant.token, "--input", str(dump),
        "--force", stdin=stdin,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.decode().startswith("Error: --force deletes ALL messages of namespace")
    assert "--yes" in result.stderr.decode()
    assert [m[1] for m in everything(tenant)] == ["old-1"]


@pytest.mark.parametrize(
    ("answer", "proceeds"), [(b"y\n", True), (b"YES\n", True), (b"n\n", False)]
)
def test_force_asks_on_a_terminal(
    tenant: Tenant, tmp_path: Path, answer: bytes, proceeds: bool
) -> None:
    tenant.ok("stream.write", "old-1", {"type": "T", "data": {}})
    dump = tmp_path / "in.ndjson"
    dump.write_bytes(ndjson([record(1, "new-1", 0)]))
    status, shown = run_on_terminal(
        "import", "--url", tenant.server.url, "--token", tenant.token, "--input", str(dump),
        "--force", answer=answer,
    )  # fmt: skip
    assert "Continue? [y/N]" in shown
    if proceeds:
        assert status == 0, shown
        assert [m[1] for m in everything(tenant)] == ["new-1"]
    else:
        assert status == 1, shown
        assert "Error: Import cancelled." in shown
        assert [m[1] for m in everything(tenant)] == ["old-1"]


def test_a_non_empty_target_is_refused_with_the_remedies(tenant: Tenant, tmp_path: Path) -> None:
    tenant.ok("stream.write", "old-1", {"type": "T", "data": {}})
    dump = tmp_path / "in.ndjson"
    dump.write_bytes(ndjson([record(5, "new-1", 0)]))
    result = run_cli_bytes(
        "import", "--url", tenant.server.url, "--token", tenant.token, "--input", str(dump)
    )
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.startswith(f"Error: namespace '{tenant.namespace}' at {tenant.server.url}"), err
    assert "already holds 1 messages (up to global position 1)" in err
    assert "--resume" in err
    assert "--force" in err
    assert [m[1] for m in everything(tenant)] == ["old-1"]


def test_resume_after_a_killed_import_equals_an_uninterrupted_one(
    tenant: Tenant, other: Tenant, tmp_path: Path
) -> None:
    body = ndjson(_records(20_000))
    dump = tmp_path / "in.ndjson"
    dump.write_bytes(body)
    whole = run_cli_bytes(
        "import", "--url", other.server.url, "--token", other.token, "--input", str(dump)
    )
    assert whole.returncode == 0, whole.stderr

    # Feed half the file through a pipe, let some batches commit, then kill the client.
    proc = subprocess.Popen(
        [sys.executable, "-m", "eventodb", "import", "--url", tenant.server.url,
         "--token", tenant.token],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(body[: len(body) // 2])
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while tenant.message_count() < 5_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    interrupted = _settled_count(tenant)
    assert 5_000 <= interrupted < 20_000

    resumed = run_cli_bytes(
        "import", "--url", tenant.server.url, "--token", tenant.token, "--input", str(dump),
        "--resume",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    err = resumed.stderr.decode()
    assert f"Resuming after global position {interrupted}" in err, err
    assert f"Skipped {interrupted:,} records already present." in err
    assert everything(tenant) == everything(other)


def _settled_count(tenant: Tenant) -> int:
    """The message count once the server has finished what it had received."""
    count = tenant.message_count()
    while True:
        time.sleep(0.3)
        now = tenant.message_count()
        if now == count:
            return count
        count = now


def test_resume_refuses_a_file_out_of_global_order(tenant: Tenant, tmp_path: Path) -> None:
    import_events(tenant, ndjson([record(1), record(2)]))
    dump = tmp_path / "in.ndjson"
    dump.write_bytes(ndjson([record(3, pos=2), record(1), record(4, pos=3)]))
    result = run_cli_bytes(
        "import", "--url", tenant.server.url, "--token", tenant.token, "--input", str(dump),
        "--resume",
    )  # fmt: skip
    assert result.returncode == 1
    assert "--resume needs the input in global-position order" in result.stderr.decode()
    assert "line 2 goes back to 1 after 3" in result.stderr.decode()
    assert tenant.message_count() == 2


def test_an_error_event_exits_1_with_code_message_and_line(tenant: Tenant) -> None:
    body = ndjson([record(1)]) + b"{oops\n"
    result = run_cli_bytes(
        "import", "--url", tenant.server.url, "--token", tenant.token, stdin=body
    )
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.startswith("Error: INVALID_JSON: malformed JSON at line 2: "), err
    assert err.endswith(" (line 2)\n"), err


def test_non_200_answers_exit_1(tenant: Tenant) -> None:
    url = tenant.server.url
    bad = "ns_" + "x" * 10
    for command in ("export", "import"):
        result = run_cli_bytes(command, "--url", url, "--token", bad, stdin=ndjson([record(1)]))
        assert result.returncode == 1
        assert result.stderr.decode().startswith(
            'Error: HTTP 401: {"error":{"code":"AUTH_INVALID_TOKEN"'
        ), result.stderr


@pytest.mark.parametrize("command", ["export", "import"])
def test_required_flags_and_usage(command: str) -> None:
    no_url = run_cli_bytes(command, "--token", "t")
    assert (no_url.returncode, no_url.stderr) == (1, b"Error: --url is required\n")
    no_token = run_cli_bytes(command, "--url", "http://127.0.0.1:1")
    assert (no_token.returncode, no_token.stderr) == (1, b"Error: --token is required\n")
    bad_flag = run_cli_bytes(command, "--nope")
    assert bad_flag.returncode == 2
    assert bad_flag.stderr.endswith(b"flag provided but not defined: -nope\n")
    helped = run_cli_bytes(command, "-h")
    assert helped.returncode == 0
    assert b"-url" in helped.stdout


def test_network_errors_name_the_url(tmp_path: Path) -> None:
    token = ADMIN_TOKEN
    first, second = free_port(), free_port()  # nothing listens there
    for args, port in (
        (["export", "--url", f"http://127.0.0.1:{first}", "--token", token], first),
        (["import", "--url", f"http://127.0.0.1:{first}/", "--token", token], first),
        (["copy", "--from", f"http://127.0.0.1:{first}", "--from-token", token,
          "--to", f"http://127.0.0.1:{second}", "--to-token", token], second),
    ):  # fmt: skip
        result = run_cli_bytes(*args, stdin=ndjson([record(1)]))
        assert result.returncode == 1, args
        expected = f"Error: cannot connect to http://127.0.0.1:{port}/rpc: connection refused\n"
        assert result.stderr.decode() == expected
    missing = run_cli_bytes(
        "import", "--url", "http://127.0.0.1:1", "--token", token, "--input", str(tmp_path / "no")
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith(b"Error: [Errno 2] No such file or directory")
    bad_since = run_cli_bytes(
        "export", "--url", "http://127.0.0.1:1", "--token", token, "--since", "yesterday"
    )
    assert bad_since.returncode == 1
    assert bad_since.stderr.startswith(b"Error: invalid --since value 'yesterday'")


def test_readme_export_import_example_runs(tenant: Tenant, other: Tenant, tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = re.search(r"```sh\n(eventodb export .*?)```", readme, re.S)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.startswith("eventodb ")]
    assert [c.split()[1] for c in commands] == ["export", "import"]
    _seed(tenant)
    for command in commands:
        line = command.replace("http://localhost:8080", tenant.server.url)
        line = line.replace('"$TOKEN"', tenant.token).replace('"$TENANT_TOKEN"', other.token)
        result = run_cli_bytes(*shlex.split(line)[1:], cwd=tmp_path)
        assert result.returncode == 0, (line, result.stderr)
    assert everything(other) == everything(tenant)


# -- copy between servers ----------------------------------------------------------------------


class Servers:
    """Servers of the backends a test asks for, started on first use, running side by side."""

    def __init__(self, request: pytest.FixtureRequest, tmp: pytest.TempPathFactory) -> None:
        self._request = request
        self._tmp = tmp
        self.started: dict[str, Server] = {}

    def __getitem__(self, kind: str) -> Server:
        if kind not in self.started:
            workdir = self._tmp.mktemp(f"copy-{kind}")
            args = server_args(kind, self._request, workdir)
            self.started[kind] = Server(args, workdir=workdir, kind=kind)
        return self.started[kind]


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    found = Servers(request, tmp_path_factory)
    try:
        yield found
    finally:
        for server in found.started.values():
            server.stop()


PAIRS = [
    pytest.param("sqlite", "postgres", marks=pytest.mark.postgres, id="sqlite-to-postgres"),
    pytest.param("postgres", "sqlite", marks=pytest.mark.postgres, id="postgres-to-sqlite"),
    pytest.param("test-mode", "sqlite", id="memory-to-sqlite"),
]


@pytest.mark.parametrize(("origin", "destination"), PAIRS)
def test_copy_between_backends_keeps_every_field(
    servers: Servers, origin: str, destination: str
) -> None:
    source, target = make_tenant(servers[origin]), make_tenant(servers[destination])
    import_events(source, ndjson(_records(2_500)))
    source.ok("stream.write", "acct-1", {"type": "Live", "data": {"big": 12345678901234567890}})
    result = run_cli_bytes(
        "copy", "--from", source.server.url, "--from-token", source.token,
        "--to", target.server.url, "--to-token", target.token,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "Copied 2,501 messages" in err
    assert VERIFIED.search(err).groups() == ("2,501", "2501")  # type: ignore[union-attr]
    assert f"Copied up to global position 2501 of {source.server.url}." in err
    assert everything(target) == everything(source)


def test_copy_under_concurrent_writes_copies_a_prefix_and_resumes(
    servers: Servers,
) -> None:
    source, target = make_tenant(servers["sqlite"]), make_tenant(servers["test-mode"])
    import_events(source, ndjson(_records(30_000)))
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            source.ok("stream.write", f"live-{uuid.uuid4().hex[:4]}", {"type": "T", "data": {}})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.2)
        result = run_cli_bytes(
            "copy", "--from", source.server.url, "--from-token", source.token,
            "--to", target.server.url, "--to-token", target.token,
        )  # fmt: skip
    finally:
        stop.set()
        writer.join()
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    match = re.search(r"Copied up to global position (\d+) of ", err)
    assert match, err
    stopped = int(match.group(1))
    assert stopped > 30_000
    assert "The source has moved on to global position" in err
    assert "--resume" in err
    copied, everything_now = everything(target), everything(source)
    assert copied == [m for m in everything_now if m[4] <= stopped]

    resumed = run_cli_bytes(
        "copy", "--from", source.server.url, "--from-token", source.token,
        "--to", target.server.url, "--to-token", target.token, "--resume",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert everything(target) == everything(source)


async def _head_waiting(sql: Any, since: Any) -> None:
    """Until a server connection has looked for writes in flight (the head is waiting)."""
    for _ in range(400):
        looked = await sql.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'eventodb'"
            " AND query LIKE '%FROM pg_locks%' AND query_start > $1",
            since,
        )
        if looked:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the copy never asked for the source's head")


@pytest.mark.postgres
async def test_copy_from_postgres_waits_for_a_write_committing_below_its_stop(
    servers: Servers, postgres_dsn: str
) -> None:
    """On Postgres a write draws its global position before it commits: one still in flight
    when the copy starts can commit below a position already visible. The copy's stop (the
    source's ``ns.head``) waits for it, so the copy holds it and ``--resume`` misses nothing."""
    source, target = make_tenant(servers["postgres"]), make_tenant(servers["test-mode"])
    source.ok("stream.write", "acc-1", {"type": "T", "data": {}})
    write = (
        f"SELECT {quote_ident(schema_name(source.namespace))}.write_message($1, $2, 'T', '{{}}')"
    )
    held, other = await asyncpg.connect(postgres_dsn), await asyncpg.connect(postgres_dsn)
    try:
        transaction = held.transaction()
        await transaction.start()
        await held.execute(write, str(uuid.uuid4()), "late-1")  # global position 2, in flight
        await other.execute(write, str(uuid.uuid4()), "early-1")  # 3, committed
        since = await other.fetchval("SELECT clock_timestamp()")
        copy = asyncio.ensure_future(
            asyncio.to_thread(
                run_cli_bytes,
                "copy",
                "--from",
                source.server.url,
                "--from-token",
                source.token,
                "--to",
                target.server.url,
                "--to-token",
                target.token,
            )
        )
        await _head_waiting(other, since)
        await asyncio.sleep(0.3)
        assert not copy.done(), "the copy did not wait for the write in flight"
        await transaction.commit()
        result = await asyncio.wait_for(copy, CLI_TIMEOUT)
    finally:
        await held.close()
        await other.close()
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert f"Copied up to global position 3 of {source.server.url}." in err
    assert "Warning" not in err
    assert [m[4] for m in everything(target)] == [1, 2, 3]
    assert everything(target) == everything(source)


def test_sparse_global_positions_are_found_and_exported(tenant: Tenant) -> None:
    far = 2**40
    import_events(tenant, ndjson([record(5, pos=0), record(1_000_003, pos=1), record(far, pos=2)]))
    result = run_cli_bytes("export", "--url", tenant.server.url, "--token", tenant.token)
    assert result.returncode == 0, result.stderr
    assert [json.loads(x)["gpos"] for x in result.stdout.decode().splitlines()] == [
        5,
        1_000_003,
        far,
    ]
    assert f"(global positions up to {far})" in result.stderr.decode()


def test_release_needs_postgres_and_keeps_the_schema(prod_server: Server) -> None:
    tenant = make_tenant(prod_server)
    tenant.ok("stream.write", "a-1", {"type": "T", "data": {}})
    response = prod_server.rpc(ADMIN_TOKEN, "ns.release", tenant.namespace)
    if prod_server.kind == "sqlite":
        assert response.status_code == 400
        assert "ns.release needs the Postgres backend" in response.json()["error"]["message"]
        assert tenant.message_count() == 1
        prod_server.rpc(ADMIN_TOKEN, "ns.delete", tenant.namespace)
        return
    assert response.status_code == 200, response.text
    assert tenant.rpc("stream.get", "a-1").status_code == 403
    names = [n["namespace"] for n in prod_server.ok(ADMIN_TOKEN, "ns.list")]
    assert tenant.namespace not in names
    refused = prod_server.rpc(ADMIN_TOKEN, "ns.release", "default")
    assert refused.status_code == 400
