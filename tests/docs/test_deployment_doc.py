"""docs/DEPLOYMENT.md's recipes, run for real where this machine can: the Postgres roles and
grants, the backup and restore sessions, the systemd unit, the Kubernetes manifest."""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from tests.docs.conftest import DOCS, require_tools, shell_env
from tests.docs.sessions import Shell, check_session, console_commands
from tests.support.postgres import create_database, drop_database, run_sync, with_database
from tests.support.server import ADMIN_TOKEN, Server, make_tenant

DEPLOYMENT = DOCS / "DEPLOYMENT.md"


def _blocks(language: str) -> list[str]:
    """The fenced code blocks of one language, in document order."""
    text = DEPLOYMENT.read_text("utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def _psql(url: str, sql: str) -> str:
    """Run SQL statement by statement (``CREATE DATABASE`` cannot run in a transaction)."""
    done = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _as_role(url: str, role: str, password: str, database: str) -> str:
    parts = urlsplit(url)
    netloc = f"{role}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + database))


def _password(sql: str) -> str:
    match = re.search(r"PASSWORD '([^']*)'", sql)
    assert match, sql
    return match.group(1)


@pytest.mark.postgres
@pytest.mark.parametrize("recipe", ["owner", "grants"])
def test_the_server_runs_as_the_documented_role(
    recipe: str, postgres_dsn: str, tmp_path: Path
) -> None:
    """Both recipes (a role owning the database; a role with only the listed grants) are
    enough to start the server, create, write, read and delete a namespace; and the reporting
    grants are enough to read it with Message DB's functions."""
    require_tools("psql")
    owner_sql, grants_sql, reporting_sql = _blocks("sql")
    admin = with_database(postgres_dsn, "postgres")
    name = f"eventodb_doc_{uuid.uuid4().hex[:8]}"
    reporter = f"reporting_{uuid.uuid4().hex[:8]}"
    sql = re.sub(r"\beventodb\b", name, owner_sql if recipe == "owner" else grants_sql)
    try:
        if recipe == "owner":
            _psql(admin, sql)
        else:  # the database belongs to someone else (here: the superuser)
            _psql(admin, f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0;")
            _psql(with_database(admin, name), sql)
        url = _as_role(admin, name, _password(sql), name)
        server = Server([f"--token={ADMIN_TOKEN}", "--db-url", url], workdir=tmp_path)
        try:
            tenant = server.ok(ADMIN_TOKEN, "ns.create", "tenant-a")
            write = ["stream.write", "account-1", {"type": "Opened", "data": {"n": 1}}]
            assert server.ok(tenant["token"], *write) == {"position": 0, "globalPosition": 1}
            assert len(server.ok(tenant["token"], "stream.get", "account-1")) == 1
            assert server.client.get("/ready").status_code == 200

            report = re.sub(r"\breporting\b", reporter, reporting_sql)
            _psql(with_database(admin, name), report)
            as_reporter = _as_role(admin, reporter, _password(report), name)
            rows = _psql(
                as_reporter,
                "SELECT type FROM eventodb_tenant_a.get_stream_messages('account-1');",
            )
            assert rows == "Opened"

            assert server.ok(ADMIN_TOKEN, "ns.delete", "tenant-a")["messagesDeleted"] == 1
        finally:
            assert server.stop() == 0, server.output()
    finally:
        _psql(
            admin,
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);\n'
            f'DROP ROLE IF EXISTS "{reporter}";\nDROP ROLE IF EXISTS "{name}";\n',
        )


@pytest.mark.postgres
def test_the_backup_sessions_restore_what_they_saved(postgres_dsn: str, tmp_path: Path) -> None:
    """The console examples of the backups section, in order: a Postgres namespace dumped,
    deleted, restored and written to again; a running SQLite server's files backed up, and the
    copy served by another server."""
    require_tools("bash", "curl", "jq", "psql", "pg_dump", "pg_restore", "sqlite3")
    admin = with_database(postgres_dsn, "postgres")
    database = run_sync(create_database, admin)
    shell_dir = tmp_path / "shell"
    shell_dir.mkdir()
    pg = Server([f"--token={ADMIN_TOKEN}", "--db-url", database], workdir=tmp_path)
    lite = Server(["serve", f"--token={ADMIN_TOKEN}"], workdir=shell_dir)  # ./eventodb-data
    shell: Shell | None = None
    try:
        created = pg.ok(ADMIN_TOKEN, "ns.create", "tenant-a")
        for n in range(3):
            pg.ok(created["token"], "stream.write", "account-1", {"type": "T", "data": {"n": n}})
        saved = make_tenant(lite)
        saved.ok("stream.write", "order-1", {"type": "Placed", "data": {"total": 7}})

        env = shell_env(shell_dir, DB=database, TOKEN=created["token"], ADMIN_TOKEN=ADMIN_TOKEN)
        shell = Shell(shell_dir, env, {"localhost:8080": f"127.0.0.1:{pg.port}"})
        commands = console_commands(DEPLOYMENT.read_text("utf-8"))
        assert len(commands) >= 8
        check_session(shell, commands, "docs/DEPLOYMENT.md")
    finally:
        if shell is not None:
            shell.close()
        assert lite.stop() == 0, lite.output()
        assert pg.stop() == 0, pg.output()
        run_sync(drop_database, admin, database)

    copy = Server(
        [f"--token={ADMIN_TOKEN}", f"--data-dir={shell_dir / 'backup'}"], workdir=tmp_path
    )
    try:
        messages = copy.ok(saved.token, "stream.get", "order-1")
        assert [(m[1], m[4]) for m in messages] == [("Placed", {"total": 7})]
    finally:
        assert copy.stop() == 0, copy.output()


def _unit() -> configparser.ConfigParser:
    (unit,) = [block for block in _blocks("ini") if "[Service]" in block]
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit)
    return parser


def test_the_systemd_unit_starts_the_server_gracefully() -> None:
    service = _unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/eventodb")
    assert command[1] == "serve"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 30  # the server drains for up to 30 s
    assert service["User"] != "root"


def test_the_systemd_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    """systemd's own check of the unit (where systemd is installed), with ExecStart pointing at
    the installed command instead of /opt/eventodb."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("systemd-analyze is missing under CI=true")
        pytest.skip("systemd-analyze is not installed")
    (unit,) = [block for block in _blocks("ini") if "[Service]" in block]
    eventodb = shutil.which("eventodb", path=str(Path(sys.executable).parent))
    assert eventodb is not None
    path = tmp_path / "eventodb.service"
    path.write_text(unit.replace("/opt/eventodb/bin/eventodb", eventodb))
    done = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "eventodb.service" in line
    ]
    assert not problems, problems


def _manifest() -> list[dict[str, Any]]:
    (block,) = [b for b in _blocks("yaml") if "kind: Deployment" in b]
    return [doc for doc in yaml.safe_load_all(block) if doc]


def test_the_kubernetes_manifest_probes_health_and_readiness() -> None:
    by_kind = {doc["kind"]: doc for doc in _manifest()}
    assert set(by_kind) == {"Secret", "Deployment", "Service"}
    deployment, service, secret = by_kind["Deployment"], by_kind["Service"], by_kind["Secret"]
    pod = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["terminationGracePeriodSeconds"] > 30
    (container,) = pod["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert container["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) == {"EVENTODB_DB_URL", "EVENTODB_TOKEN"}
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # the image's user
