"""The real ``eventodb`` server in a subprocess, driven over HTTP with httpx, and the namespaces
tests keep to so that they can share one server (each test makes its own with
:func:`make_tenant`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventodb.core import tokens
from tests.support.ports import free_port

ADMIN_TOKEN = tokens.TEST_TOKEN
START_TIMEOUT = 20.0


class Server:
    """A running ``python -m eventodb`` process."""

    def __init__(
        self,
        args: list[str],
        *,
        workdir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
        wait: bool = True,
        kind: str = "",
        listen_flags: bool = True,
    ) -> None:
        """Start the CLI with ``args``.

        Args:
            listen_flags: append ``--port=<port>`` (tests of flag syntax pass
                the port themselves and set this to False).
        """
        self.kind = kind
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.workdir = workdir
        self.log_path = workdir / f"server-{self.port}-{uuid.uuid4().hex[:6]}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTODB_")} | (
            env or {}
        )
        self._log = self.log_path.open("wb")
        listen = [f"--port={self.port}"] if listen_flags else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eventodb", *args, *listen],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=full_env,
        )
        self.client = httpx.Client(base_url=self.url, timeout=15.0)
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not become healthy:\n{self.output()}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def lines_with(self, text: str, within: float = 10.0) -> list[str]:
        """The output's lines containing ``text``, waiting until there is one: the server logs
        a request after answering it, so the client may read the answer first."""
        deadline = time.monotonic() + within
        while not (lines := [line for line in self.output().splitlines() if text in line]):
            if time.monotonic() > deadline:
                raise AssertionError(f"no line with {text!r} in the output:\n{self.output()}")
            time.sleep(0.02)
        return lines

    def banner_token(self) -> str:
        """The line after ``DEFAULT NAMESPACE TOKEN:`` in the output (or, with JSON logs, the
        ``token`` field of the banner line; the kept-token note when no token is shown)."""
        lines = self.output().splitlines()
        if "DEFAULT NAMESPACE TOKEN:" in lines:
            return lines[lines.index("DEFAULT NAMESPACE TOKEN:") + 1]
        for line in lines:
            if line.startswith("{"):
                entry = json.loads(line)
                if entry["msg"] == "DEFAULT NAMESPACE TOKEN":
                    return str(entry["token"] or entry["note"])
        raise AssertionError(f"no token banner in:\n{self.output()}")

    def rpc(self, token: str | None, *request: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.post("/rpc", json=list(request), headers=headers)

    def ok(self, token: str | None, *request: Any) -> Any:
        """The result of a call that must succeed."""
        response = self.rpc(token, *request)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.client.close()
        self._log.close()
        return self.proc.returncode


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    """(status, code, message) of an error envelope, checking its shape."""
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "details"}, error
    return response.status_code, error["code"], error["message"]


def server_args(kind: str, request: pytest.FixtureRequest, workdir: Path) -> list[str]:
    """CLI arguments for a backend kind: SQLite files, in-memory test mode, Postgres."""
    base = [f"--token={ADMIN_TOKEN}"]
    if kind == "sqlite":
        return [*base, f"--data-dir={workdir / 'data'}"]
    if kind == "test-mode":
        return [*base, "--test-mode"]
    dsn: str = request.getfixturevalue("postgres_dsn")
    return [*base, "--db-url", dsn]


def serve_per_param(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    label: str,
    *extra: str,
) -> Iterator[Server]:
    """For a fixture parametrised by backend kind to ``yield from``: the server of kind
    ``request.param`` (see :func:`server_args`) with ``extra`` arguments, in a fresh directory
    ``<label>-<kind>``. After the fixture's last test it is stopped, and it must exit 0."""
    kind = request.param
    workdir = tmp_path_factory.mktemp(f"{label}-{kind}")
    srv = Server([*server_args(kind, request, workdir), *extra], workdir=workdir, kind=kind)
    yield srv
    assert srv.stop() == 0, srv.output()


def unique(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Tenant:
    """A namespace of its own for one test, with its token (the client and subscription tests
    extend it with the clients they drive)."""

    def __init__(self, server: Server, namespace: str, token: str) -> None:
        self.server = server
        self.namespace = namespace
        self.token = token

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def rpc(self, *request: Any) -> httpx.Response:
        return self.server.rpc(self.token, *request)

    def ok(self, *request: Any) -> Any:
        return self.server.ok(self.token, *request)

    def message_count(self) -> int:
        count: int = self.ok("ns.info", self.namespace)["messageCount"]
        return count


def make_tenant(server: Server) -> Tenant:
    namespace = unique()
    created = server.ok(ADMIN_TOKEN, "ns.create", namespace)
    return Tenant(server, namespace, created["token"])
