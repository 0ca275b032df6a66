"""What a public server's operator expects: the admin token kept out of ``ps``, private files,
a warning when listening everywhere over plain HTTP, and everywhere meaning IPv4 and IPv6."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventodb.core import tokens
from tests.support.ports import free_port
from tests.support.server import ADMIN_TOKEN, Server

pytestmark = pytest.mark.timeout(60)

EVERYWHERE = "listening on every network interface over plain HTTP"


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_admin_token_can_come_from_a_file_and_stays_out_of_ps(tmp_path: Path) -> None:
    token = tokens.generate("default")
    secret = tmp_path / "token"
    secret.write_text(f"  {token}\n")
    srv = Server([f"--token-file={secret}", "--test-mode"], workdir=tmp_path)
    try:
        assert srv.banner_token() == token
        srv.ok(token, "ns.list")
        assert token not in command_line(srv.proc.pid)
    finally:
        assert srv.stop() == 0, srv.output()


def test_the_token_file_may_be_given_by_environment(tmp_path: Path) -> None:
    token = tokens.generate("default")
    (tmp_path / "token").write_text(token)
    srv = Server(["--test-mode"], workdir=tmp_path, env={"EVENTODB_TOKEN_FILE": "token"})
    try:
        srv.ok(token, "ns.list")
    finally:
        assert srv.stop() == 0, srv.output()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([f"--token={ADMIN_TOKEN}"], "give either --token (EVENTODB_TOKEN) or --token-file"),
        ([], "cannot read --token-file"),
    ],
)
def test_a_token_file_that_cannot_be_used_stops_the_server(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    (tmp_path / "token").write_text(ADMIN_TOKEN)
    missing = "token" if extra else "missing"
    args = ["--test-mode", f"--port={free_port()}", f"--token-file={tmp_path / missing}", *extra]
    result = subprocess.run(
        [sys.executable, "-m", "eventodb", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("EVENTODB_")},
        check=False,
    )
    assert result.returncode == 1
    assert message in result.stderr


def test_listening_everywhere_warns_and_a_local_address_does_not(tmp_path: Path) -> None:
    everywhere = Server(["--test-mode"], workdir=tmp_path)
    local = Server(["--test-mode", "--host=127.0.0.1"], workdir=tmp_path)
    try:
        assert EVERYWHERE in everywhere.output()
        assert EVERYWHERE not in local.output()
    finally:
        for srv in (everywhere, local):
            assert srv.stop() == 0, srv.output()


def test_the_server_listens_on_ipv4_and_ipv6_like_go(prod_server: Server) -> None:
    """Every interface by default. Go's ``:port`` is dual-stack."""
    import socket

    families = [socket.AF_INET]
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        families.append(socket.AF_INET6)
    except OSError:
        pass  # no IPv6 on this machine: IPv4 alone is all interfaces
    for family in families:
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
        with socket.create_connection((host, prod_server.port), timeout=5) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert conn.recv(1024).startswith(b"HTTP/1.1 200")


def test_sqlite_files_are_private_unless_file_mode_relaxes_them(tmp_path: Path) -> None:
    private, shared = tmp_path / "private", tmp_path / "shared"
    servers = [
        Server([f"--token={ADMIN_TOKEN}", f"--data-dir={private}"], workdir=tmp_path),
        Server(
            [f"--token={ADMIN_TOKEN}", f"--data-dir={shared}", "--file-mode=0640"],
            workdir=tmp_path,
        ),
    ]
    try:
        for srv in servers:
            srv.ok(ADMIN_TOKEN, "stream.write", "acc-1", {"type": "T", "data": {}})
    finally:
        for srv in servers:
            assert srv.stop() == 0, srv.output()
    for directory, dir_mode, file_mode in ((private, 0o700, 0o600), (shared, 0o750, 0o640)):
        assert directory.stat().st_mode & 0o777 == dir_mode
        databases = [p for p in directory.iterdir() if ".db" in p.name]
        assert {p.name for p in databases} >= {"metadata.db", "default.db"}
        assert {p.stat().st_mode & 0o777 for p in databases} == {file_mode}
