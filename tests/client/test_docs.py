"""The client's documentation runs (every ``python`` block of docs/CLIENT.md and of the
README), and the client stands alone: importing it loads no server module, and the base
install depends on httpx only."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import eventodb.client as client
from eventodb import launcher
from tests.client.conftest import Tenant
from tests.support.server import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
SERVER_MODULES = sorted(launcher.SERVER_MODULES)


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text("utf-8"), re.DOTALL)


def run_blocks(
    blocks: list[str], name: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTODB_URL", tenant.url)
    monkeypatch.setenv("EVENTODB_TOKEN", tenant.token)
    monkeypatch.setenv("EVENTODB_ADMIN_TOKEN", ADMIN_TOKEN)
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"{name} python block {number}", "exec")
        exec(code, {"__name__": "__main__"})


def test_every_example_of_the_client_guide_runs(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = python_blocks(ROOT / "docs" / "CLIENT.md")
    assert len(blocks) >= 10
    run_blocks(blocks, "docs/CLIENT.md", tenant, monkeypatch)
    out = capsys.readouterr().out.splitlines()
    assert "0 1" in out  # the expected-version conflict: expected 0, actual 1
    assert "[0, 1, 2]" in out  # write_batch positions
    assert "3" in out  # where the stream subscription would resume


def test_the_readme_python_example_runs(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) == 1
    run_blocks(blocks, "README.md", tenant, monkeypatch)
    assert "account-123 0 Deposited {'amount': 10}" in capsys.readouterr().out


BLOCKER = """
import importlib.abc, sys

SERVER = {server!r}
OWN = {own!r}


class BlockServerModules(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.partition(".")[0]
        if top in SERVER or ".".join(name.split(".")[:2]) in OWN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=top)
        return None


sys.meta_path.insert(0, BlockServerModules())
"""


def run_without_server_modules(
    code: str, *args: str, own: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python where the server's dependencies (and the ``own`` modules of
    ours) cannot be imported, as in a client-only install."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTODB_")}
    blocker = BLOCKER.format(server=SERVER_MODULES, own=own)
    return subprocess.run(
        [sys.executable, "-c", blocker + code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_the_client_works_without_any_server_module(tenant: Tenant) -> None:
    done = run_without_server_modules(
        """
from eventodb.client import EventoDB

with EventoDB(sys.argv[1], sys.argv[2]) as db:
    db.write("alone-1", "Written", {})
    print(db.get_last("alone-1").type)
print(sorted(m for m in sys.modules if m.startswith("eventodb") and "client" not in m))
print(sorted(m for m in sys.modules if m.partition(".")[0] in SERVER))
""",
        tenant.url,
        tenant.token,
        own=("eventodb.api", "eventodb.store", "eventodb.cli", "eventodb.config"),
    )
    assert done.returncode == 0, done.stderr
    written, eventodb_modules, server_modules = done.stdout.splitlines()
    assert written == "Written"
    assert eventodb_modules == str(
        ["eventodb", "eventodb.core", "eventodb.core.streams", "eventodb.core.timefmt"]
    )
    assert server_modules == "[]"


def test_the_command_without_the_server_extra_says_how_to_get_it() -> None:
    done = run_without_server_modules(
        "from eventodb.launcher import main\nsys.argv[1:] = ['serve']\nraise SystemExit(main())"
    )
    assert done.returncode == 1
    assert "pip install 'eventodb[server]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_base_install_depends_on_httpx_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert [d.split(">")[0] for d in project["dependencies"]] == ["httpx"]
    server = {d.split(">")[0].split("[")[0] for d in project["optional-dependencies"]["server"]}
    assert {"orjson", "asyncpg", "uvicorn"} <= server
    assert (ROOT / "src" / "eventodb" / "py.typed").exists()


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for name in client.__all__:
        obj = getattr(client, name)
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                documentable = callable(member) or isinstance(member, property)
                if not attr.startswith("_") and documentable and not inspect.getdoc(member):
                    missing.append(f"{name}.{attr}")
    assert missing == []
