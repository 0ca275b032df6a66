"""Fixtures for the documentation tests: the shell the docs' sessions run in, and the real
servers they talk to (as a reader would start them, on the documented ports' stand-ins)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.sessions import Shell
from tests.support.server import ADMIN_TOKEN, Server

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def require_tools(*names: str) -> None:
    """The docs' sessions use these commands (curl, jq): their absence fails the test, since a
    reader following the docs needs them too."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        pytest.fail(f"the documentation examples need {', '.join(missing)} on PATH")


def shell_env(workdir: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a reader's shell: the installed ``eventodb`` command first on
    PATH, no ``EVENTODB_*`` variables of ours leaking in."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {"PATH": path, "HOME": str(workdir), "LANG": "C.UTF-8", **extra}


@pytest.fixture(scope="module")
def doc_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """The servers of docs/API.md: ``localhost:8080`` (SQLite files) and ``localhost:8081``
    (test mode), both with :data:`ADMIN_TOKEN` as the admin token."""
    workdir = tmp_path_factory.mktemp("doc-servers")
    servers = {
        "localhost:8080": Server(
            [f"--token={ADMIN_TOKEN}", f"--data-dir={workdir / 'data'}"], workdir=workdir
        ),
        "localhost:8081": Server([f"--token={ADMIN_TOKEN}", "--test-mode"], workdir=workdir),
    }
    yield servers
    for server in servers.values():
        assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def doc_shell(
    doc_servers: dict[str, Server], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shell]:
    """A bash session with ``ADMIN_TOKEN`` set, as the docs assume, talking to the servers of
    :func:`doc_servers` wherever the docs say ``localhost:8080``/``8081``."""
    require_tools("bash", "curl", "jq")
    workdir = tmp_path_factory.mktemp("doc-shell")
    rewrite = {name: f"127.0.0.1:{server.port}" for name, server in doc_servers.items()}
    shell = Shell(workdir, shell_env(workdir, ADMIN_TOKEN=ADMIN_TOKEN), rewrite)
    yield shell
    shell.close()
