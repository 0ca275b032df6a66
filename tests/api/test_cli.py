"""The ``eventodb`` command (docs/CONFIGURATION.md) as users and harnesses start it — commands,
flag syntaxes, environment variables, exit codes, start-up output, restarts and graceful
shutdown."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from eventodb import __version__
from eventodb.core import tokens
from tests.support.cli import run_cli
from tests.support.ports import free_port
from tests.support.server import ADMIN_TOKEN, Server, error_of

pytestmark = pytest.mark.timeout(60)


# -- commands that do not serve ------------------------------------------------------------------


def test_no_arguments_prints_banner_and_help() -> None:
    result = run_cli()
    assert result.returncode == 0
    assert f"EventoDB {__version__}" in result.stdout
    assert "-db-url" in result.stdout


@pytest.mark.parametrize("spelling", ["version", "--version", "-v"])
def test_version_prints_the_bare_version(spelling: str) -> None:
    result = run_cli(spelling)
    assert (result.returncode, result.stdout) == (0, f"{__version__}\n")


@pytest.mark.parametrize("flag", ["--full", "-f"])
def test_full_version_has_banner_and_build_lines(flag: str) -> None:
    result = run_cli("version", flag)
    assert result.returncode == 0
    for line in (f"Version: {__version__}", "Commit:", "Built:"):
        assert line in result.stdout


@pytest.mark.parametrize(
    "args", [["help"], ["--help"], ["-h"], ["serve", "-h"], ["-port", "1", "--help"]]
)
def test_help_exits_zero(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 0
    assert "-test-mode" in result.stdout


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--nope"], "flag provided but not defined: -nope"),
        (["-port", "abc"], 'invalid integer value "abc" for flag -port'),
        (["-port"], "flag needs an argument: -port"),
        (["-test-mode=maybe"], 'invalid boolean value "maybe" for flag -test-mode'),
        (["frobnicate"], "unknown command: frobnicate"),
        (
            ["--log-level", "verbose"],
            'invalid value "verbose" for flag -log-level: use debug, info, warn, warning or error',
        ),
        (["--log-format=yaml"], 'invalid value "yaml" for flag -log-format: use console or json'),
        (["token"], "token needs exactly one argument: the namespace ID"),
    ],
)
def test_invalid_flags_or_commands_exit_2_with_the_reason_last(
    args: list[str], reason: str
) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Usage:" in result.stderr
    assert result.stderr.splitlines()[-1] == f"Error: {reason}"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"EVENTODB_PORT": "abc"}, 'invalid integer value "abc" in EVENTODB_PORT'),
        ({"EVENTODB_TEST_MODE": "yes"}, 'invalid boolean value "yes" in EVENTODB_TEST_MODE'),
        (
            {"EVENTODB_LOG_LEVEL": "verbose"},
            'invalid value "verbose" in EVENTODB_LOG_LEVEL: use debug, info, warn, warning or '
            "error",
        ),
        (
            {"EVENTODB_LOG_FORMAT": "yaml"},
            'invalid value "yaml" in EVENTODB_LOG_FORMAT: use console or json',
        ),
    ],
)
def test_unparsable_environment_values_stop_the_server_naming_the_variable(
    env: dict[str, str], reason: str, tmp_path: Path
) -> None:
    # Flags would override the variable under test; the others keep a regression off port 8080.
    port = [] if "EVENTODB_PORT" in env else [f"--port={free_port()}"]
    result = run_cli("serve", "--host=127.0.0.1", *port, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"Error: {reason}"
    assert "DEFAULT NAMESPACE TOKEN" not in result.stdout


def test_token_command_prints_a_fresh_token_for_the_namespace() -> None:
    first, second = run_cli("token", "tenant-a"), run_cli("token", "tenant-a")
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout.count("\n") == 1
    assert tokens.parse(first.stdout.strip()) == "tenant-a"
    assert first.stdout != second.stdout


def test_token_command_refuses_a_namespace_id_the_store_would_refuse() -> None:
    result = run_cli("token", "a/b")
    assert result.returncode == 1
    assert result.stderr == (
        "Error: namespace ID must not contain path separators or control characters\n"
    )


def test_unsupported_scheme_is_fatal() -> None:
    result = run_cli("--db-url", "mysql://localhost/db", "--port", str(free_port()))
    assert result.returncode == 1
    assert "unsupported database scheme: mysql" in result.stderr


@pytest.mark.parametrize("token", ["not-a-token", tokens.generate("tenant"), "ns_ZGVmYXVsdA_xyz"])
def test_token_that_does_not_name_default_is_fatal(token: str, tmp_path: Path) -> None:
    result = run_cli("--test-mode", f"--token={token}", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 1
    assert "invalid --token" in result.stderr


def test_port_in_use_is_fatal_with_one_line_before_the_banner(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = run_cli("--test-mode", "--host=127.0.0.1", f"--port={port}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"Error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert "DEFAULT NAMESPACE TOKEN" not in result.stdout
    assert "Traceback" not in result.stdout


def test_without_uvloop_the_server_runs_on_asyncio(tmp_path: Path) -> None:
    blocker = tmp_path / "no-uvloop"
    blocker.mkdir()
    (blocker / "uvloop.py").write_text("raise ImportError('uvloop is blocked for this test')\n")
    srv = Server(["--test-mode"], workdir=tmp_path, env={"PYTHONPATH": str(blocker)})
    try:
        token = srv.banner_token()
        assert srv.ok(token, "stream.write", "acc-1", {"type": "T", "data": {}})["position"] == 0
        assert srv.client.get("/ready").status_code == 200
    finally:
        assert srv.stop() == 0
    assert "uvloop is not installed: using asyncio's event loop" in srv.output()


# -- flag syntaxes and environment ---------------------------------------------------------------


@pytest.mark.parametrize(
    "style",
    [
        ["-port", "{port}", "-token", ADMIN_TOKEN, "-test-mode"],
        ["--test-mode", "--port={port}", f"--token={ADMIN_TOKEN}"],
        ["--port", "{port}", "--token", ADMIN_TOKEN, "--test-mode=true"],
        ["-port={port}", f"-token={ADMIN_TOKEN}", "-test-mode=1", "-log-level", "debug"],
        ["serve", "-port", "{port}", "--test-mode", "-db-url", "sqlite://:memory:"],
    ],
)
def test_every_go_flag_syntax_is_accepted(style: list[str], tmp_path: Path) -> None:
    port = free_port()
    args = [a.replace("{port}", str(port)) for a in style]
    srv = Server(args, workdir=tmp_path, port=port, listen_flags=False)
    try:
        # Test mode is on: a request without any token runs as default.
        assert srv.client.post("/rpc", json=["sys.version"]).json() == __version__
    finally:
        assert srv.stop() == 0


def test_environment_variables_configure_the_server(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "EVENTODB_PORT": str(port),
        "EVENTODB_TEST_MODE": "true",
        "EVENTODB_TOKEN": ADMIN_TOKEN,
        "EVENTODB_LOG_FORMAT": "json",
    }
    srv = Server(["serve"], workdir=tmp_path, env=env, port=port, listen_flags=False)
    try:
        assert srv.client.post("/rpc", json=["sys.health"]).json()["backend"] == "memory"
        assert srv.banner_token() == ADMIN_TOKEN
        logged = [line for line in srv.output().splitlines() if line.startswith("{")]
        assert logged
        assert all("level" in json.loads(line) for line in logged)
    finally:
        assert srv.stop() == 0


def test_explicit_flag_wins_over_environment(tmp_path: Path) -> None:
    env = {"EVENTODB_TEST_MODE": "1", "EVENTODB_PORT": "not-a-port"}
    srv = Server(["-test-mode=false", f"-token={ADMIN_TOKEN}"], workdir=tmp_path, env=env)
    try:
        response = srv.client.post("/rpc", json=["sys.version"])
        assert error_of(response)[:2] == (401, "AUTH_REQUIRED")
    finally:
        assert srv.stop() == 0


def test_log_level_warn_still_prints_the_token_banner(tmp_path: Path) -> None:
    srv = Server(["--test-mode", "--log-level=warn"], workdir=tmp_path)
    try:
        token = srv.banner_token()
        assert tokens.parse(token) == "default"
        assert srv.ok(token, "sys.version") == __version__
        assert "POST /rpc" not in srv.output()
    finally:
        assert srv.stop() == 0


# -- persistence across restarts -----------------------------------------------------------------


def test_embedded_default_keeps_data_in_eventodb_data(tmp_path: Path) -> None:
    srv = Server([], workdir=tmp_path)
    try:
        token = srv.banner_token()
        assert srv.output().count("shown only now") == 1
        srv.ok(token, "stream.write", "acc-1", {"type": "T", "data": {}})
        assert "eventodb-data" in srv.output()
        assert srv.ok(token, "sys.health")["backend"] == "sqlite"
        assert srv.rpc(None, "sys.version").status_code == 401
    finally:
        assert srv.stop() == 0
    assert "POST /rpc 200" in srv.output()
    assert "POST /rpc 401" in srv.output()
    assert (tmp_path / "eventodb-data" / "metadata.db").exists()
    assert (tmp_path / "eventodb-data" / "default.db").exists()


def test_restart_keeps_data_and_the_default_token(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    first = Server(data, workdir=tmp_path)
    try:
        token = first.banner_token()
        tenant = first.ok(token, "ns.create", "tenant-a")
        first.ok(tenant["token"], "stream.write", "acc-1", {"type": "T", "data": {"n": 1}})
    finally:
        assert first.stop() == 0

    second = Server(data, workdir=tmp_path)
    try:
        assert "existing" in second.banner_token()
        assert "shown only now" not in second.output()
        assert second.ok(token, "ns.info", "tenant-a")["messageCount"] == 1
        messages = second.ok(tenant["token"], "stream.get", "acc-1")
        assert [m[4] for m in messages] == [{"n": 1}]
    finally:
        assert second.stop() == 0


def test_restart_with_another_token_replaces_the_stored_one(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    new_token = tokens.generate("default")
    first = Server([*data, f"--token={ADMIN_TOKEN}"], workdir=tmp_path)
    assert first.stop() == 0
    second = Server([*data, f"--token={new_token}"], workdir=tmp_path)
    try:
        assert second.banner_token() == new_token
        assert "replaced" in second.output()
        assert second.ok(new_token, "sys.version") == __version__
        assert error_of(second.rpc(ADMIN_TOKEN, "sys.version"))[:2] == (403, "AUTH_UNAUTHORIZED")
    finally:
        assert second.stop() == 0
    third = Server(data, workdir=tmp_path)
    try:
        assert third.ok(new_token, "sys.version") == __version__
    finally:
        assert third.stop() == 0


# -- shutdown ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_in_flight_request_and_exits_zero(tmp_path: Path, sig: int) -> None:
    srv = Server(["--test-mode"], workdir=tmp_path)
    body = b'["stream.write","acc-1",{"type":"T","data":{}}]'
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(
            b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body[:10]
        )
        time.sleep(0.3)
        srv.proc.send_signal(sig)
        time.sleep(0.5)
        assert srv.proc.poll() is None, "exited before the in-flight request completed"
        sock.sendall(body[10:])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(b'{"position":0,"globalPosition":1}')
    assert srv.proc.wait(20) == 0
    srv.stop()


def test_sigterm_ends_open_subscriptions(tmp_path: Path) -> None:
    srv = Server(["--test-mode"], workdir=tmp_path)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"GET /subscribe?all=true HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(20) == 0
        assert time.monotonic() - started < 10
    srv.stop()
