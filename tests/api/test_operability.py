"""Operating the server: readiness, request ids, the cause of a 500, metrics and JSON logs,
against the real server over real sockets."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventodb.core import tokens
from tests.support.polling import eventually
from tests.support.postgres import create_database, drop_database, pg_cluster, run_sync
from tests.support.server import ADMIN_TOKEN, Server, error_of, make_tenant, server_args, unique

__all__ = ["pg_cluster"]

pytestmark = pytest.mark.timeout(90)


def admin(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- readiness -----------------------------------------------------------------------------------


def test_ready_and_sys_health_report_every_store_component(server: Server) -> None:
    response = server.client.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["backend"] == server.ok(ADMIN_TOKEN, "sys.health")["backend"]
    expected = {"database", "notifications"} if server.kind == "postgres" else {"registry"}
    assert set(body["checks"]) == expected
    for check in body["checks"].values():
        assert check["status"] == "ok"
        assert check["duration_ms"] >= 0
    health = server.ok(ADMIN_TOKEN, "sys.health")
    assert health["status"] == "ok"
    assert set(health["checks"]) == expected
    assert health["connections"] >= 1


def test_ready_turns_503_when_the_sqlite_registry_file_is_gone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = Server([f"--token={ADMIN_TOKEN}", f"--data-dir={data}"], workdir=tmp_path)
    try:
        assert srv.client.get("/ready").status_code == 200
        (data / "metadata.db").rename(data / "moved.db")
        response = srv.client.get("/ready")
        assert response.status_code == 503
        check = response.json()["checks"]["registry"]
        assert check["status"] == "down"
        assert "metadata.db is missing" in check["error"]
        assert srv.client.get("/health").status_code == 200  # liveness stays cheap
        assert srv.ok(ADMIN_TOKEN, "sys.health")["status"] == "unavailable"
        (data / "moved.db").rename(data / "metadata.db")
        assert srv.client.get("/ready").status_code == 200
    finally:
        assert srv.stop() == 0
    output = srv.output()
    assert "not ready: registry: BackendError" in output
    assert "ready again" in output


@pytest.mark.postgres
def test_ready_follows_postgres_going_away_and_coming_back(pg_cluster: Any, tmp_path: Path) -> None:
    url = run_sync(create_database, pg_cluster.url)
    srv = Server([f"--token={ADMIN_TOKEN}", "--db-url", url], workdir=tmp_path)
    try:
        assert srv.client.get("/ready").status_code == 200
        pg_cluster.stop()
        try:
            response = srv.client.get("/ready")
            assert response.status_code == 503
            assert response.json()["checks"]["database"]["status"] == "down"
            assert srv.client.get("/health").status_code == 200
            # The driver's attempts to reopen its idle connections: a line each, no traceback.
            eventually(lambda: "connection floor" in srv.output(), 15)
        finally:
            pg_cluster.start()
        eventually(lambda: srv.client.get("/ready").status_code == 200, 30)
        assert srv.ok(ADMIN_TOKEN, "sys.health")["status"] == "ok"
    finally:
        pg_cluster.start_if_stopped()
        assert srv.stop() == 0
    output = srv.output()
    retries = [line for line in output.splitlines() if "connection floor" in line]
    assert retries, output
    assert all("WARNING asyncpg.pool:" in line for line in retries), retries
    assert all("; retrying: " in line for line in retries), retries  # the error, in one line
    assert "Traceback" not in output


@pytest.mark.postgres
def test_dropped_database_means_not_ready_and_500s_that_log_their_cause(
    pg_cluster: Any, tmp_path: Path
) -> None:
    url = run_sync(create_database, pg_cluster.url)
    srv = Server([f"--token={ADMIN_TOKEN}", "--db-url", url], workdir=tmp_path)
    try:
        tenant = make_tenant(srv)
        tenant.ok("stream.write", "acc-1", {"type": "T", "data": {"secret": "payload-123"}})
        run_sync(drop_database, pg_cluster.url, url)
        assert srv.client.get("/ready").status_code == 503
        eventually(
            lambda: (
                "does not exist" in srv.client.get("/ready").json()["checks"]["database"]["error"]
            ),
            15,
        )
        failed = srv.client.post(
            "/rpc",
            json=["stream.write", "acc-1", {"type": "T", "data": {"secret": "payload-123"}}],
            headers={**admin(tenant.token), "X-Request-Id": "drop-test-1"},
        )
        assert error_of(failed)[:2] == (500, "BACKEND_ERROR")
        assert failed.headers["x-request-id"] == "drop-test-1"
    finally:
        assert srv.stop() == 0
    lines = [line for line in srv.output().splitlines() if "drop-test-1" in line]
    assert len(lines) == 1, srv.output()
    assert "ERROR" in lines[0]
    assert "POST /rpc 500" in lines[0]
    assert "rpc=stream.write" in lines[0]
    assert 'error="BackendError: Failed to' in lines[0]
    assert "payload-123" not in srv.output()
    assert tenant.token not in srv.output()


@pytest.mark.postgres
def test_a_500_logs_its_cause_with_the_request_id(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    dsn: str = request.getfixturevalue("postgres_dsn")
    srv = Server(
        [*server_args("postgres", request, tmp_path), "--log-format=json"], workdir=tmp_path
    )
    try:
        tenant = make_tenant(srv)

        async def drop_schema() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                schema = await conn.fetchval(
                    "SELECT schema_name FROM eventodb_store.namespaces WHERE id = $1",
                    tenant.namespace,
                )
                await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            finally:
                await conn.close()

        errors_before = value(scrape(srv), "eventodb_store_errors_total")
        run_sync(drop_schema)
        response = tenant.rpc("stream.get", "acc-1")
        assert error_of(response)[:2] == (500, "BACKEND_ERROR")
        request_id = response.headers["x-request-id"]
        assert value(scrape(srv), "eventodb_store_errors_total") == errors_before + 1
        # Out of the shared database's registry: a server started on it later would report
        # the missing schema at start-up, as an error.
        srv.ok(ADMIN_TOKEN, "ns.delete", tenant.namespace)
    finally:
        assert srv.stop() == 0
    entries = [json.loads(line) for line in srv.output().splitlines() if line.startswith("{")]
    [line] = [e for e in entries if e.get("request_id") == request_id]
    assert line["level"] == "error"
    assert line["status"] == 500
    assert line["rpc"] == "stream.get"
    assert line["namespace"] == tenant.namespace
    assert line["error"].startswith("BackendError: Failed to read stream: the storage of")


# -- request ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/health", None),
        ("GET", "/ready", None),
        ("GET", "/version", None),
        ("GET", "/nowhere", None),
        ("POST", "/rpc", b'["sys.version"]'),
        ("POST", "/rpc", b"not json"),
        ("GET", "/subscribe", None),
        ("POST", "/import", b""),
    ],
)
def test_every_response_carries_a_request_id(
    server: Server, method: str, path: str, body: bytes | None
) -> None:
    first = server.client.request(method, path, content=body, headers=admin())
    second = server.client.request(method, path, content=body, headers=admin())
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", i) for i in ids), ids
    assert ids[0] != ids[1]


def test_a_sane_incoming_request_id_is_kept_and_logged(server: Server) -> None:
    given = "req-42.a:b/c+d=e_f"
    response = server.client.post(
        "/rpc", json=["sys.version"], headers=admin() | {"X-Request-Id": given}
    )
    assert response.headers["x-request-id"] == given
    eventually(lambda: given in server.output(), 5)


@pytest.mark.parametrize("given", ["has space", "x" * 129, "semi;colon", 'quote"d'])
def test_an_unusable_incoming_request_id_is_replaced(server: Server, given: str) -> None:
    response = server.client.get("/health", headers={"X-Request-Id": given})
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", response.headers["x-request-id"])


def test_subscriptions_carry_the_request_id(server: Server) -> None:
    with server.client.stream(
        "GET", "/subscribe?all=true", headers=admin() | {"X-Request-Id": "sse-1"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "sse-1"


# -- metrics -------------------------------------------------------------------------------------


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(srv: Server, headers: dict[str, str] | None = None) -> Samples:
    response = srv.client.get("/metrics", headers=admin() if headers is None else headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_move_as_requests_are_made(server: Server) -> None:
    tenant = make_tenant(server)
    ns = tenant.namespace
    before = scrape(server)
    for i in range(3):
        tenant.ok("stream.write", "acc-1", {"type": "T", "data": {"i": i}})
    assert len(tenant.ok("stream.get", "acc-1")) == 3
    conflict = tenant.rpc(
        "stream.write", "acc-1", {"type": "T", "data": {}}, {"expectedVersion": 0}
    )
    assert error_of(conflict)[1] == "STREAM_VERSION_CONFLICT"
    tenant.rpc("no.such.method")
    after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("eventodb_messages_written_total", namespace=ns) == 3
    assert moved("eventodb_messages_read_total", namespace=ns) == 3
    assert moved("eventodb_version_conflicts_total") == 1
    ok_writes = {"path": "/rpc", "rpc": "stream.write", "status": "200"}
    assert moved("eventodb_http_requests_total", **ok_writes) == 3
    conflicts = {"path": "/rpc", "rpc": "stream.write", "status": "409"}
    assert moved("eventodb_http_requests_total", **conflicts) == 1
    unknown = {"path": "/rpc", "rpc": "unknown", "status": "404"}
    assert moved("eventodb_http_requests_total", **unknown) == 1
    timed = {"path": "/rpc", "rpc": "stream.write"}
    assert moved("eventodb_http_request_duration_seconds_count", **timed) == 4
    assert moved("eventodb_http_request_duration_seconds_bucket", le="+Inf", **timed) == 4
    assert moved("eventodb_http_request_duration_seconds_sum", **timed) > 0
    assert moved("eventodb_write_batch_size_count") >= 1
    component = "database" if server.kind == "postgres" else "registry"
    assert value(after, "eventodb_component_up", component=component) == 1
    assert value(after, "eventodb_http_requests_in_flight") >= 1
    if server.kind == "postgres":
        assert value(after, "eventodb_pool_max_connections") > 0
        assert value(after, "eventodb_pool_connections", state="idle") >= 0
        assert value(after, "eventodb_pool_wait_seconds_count") > 0
        assert moved("eventodb_read_batch_size_count") == 1  # the stream.get, alone
        assert moved("eventodb_read_batch_size_sum") == 1
    else:
        assert value(after, "eventodb_read_batch_size_count") == 0
    assert value(after, "process_cpu_seconds_total") > 0


def test_metrics_count_subscribers_pokes_and_imports(server: Server) -> None:
    tenant = make_tenant(server)
    before = scrape(server)
    with server.client.stream(
        "GET", "/subscribe?category=acc", headers=admin(tenant.token)
    ) as stream:
        assert stream.status_code == 200
        assert value(scrape(server), "eventodb_sse_subscribers") >= 1
        tenant.ok("stream.write", "acc-1", {"type": "T", "data": {}})
        lines = stream.iter_lines()
        assert any(line.startswith("data:") for line in lines)
    record = {
        "id": "018f0000-0000-7000-8000-000000000001",
        "stream": "imp-1",
        "type": "T",
        "pos": 0,
        "gpos": 1000,
        "data": {},
        "meta": None,
        "time": "2024-01-01T00:00:00Z",
    }
    other = make_tenant(server)
    imported = server.client.post(
        "/import", content=json.dumps(record).encode(), headers=admin(other.token)
    )
    assert '"done":true' in imported.text
    after = scrape(server)
    assert value(after, "eventodb_sse_pokes_sent_total") > value(
        before, "eventodb_sse_pokes_sent_total"
    )
    assert (
        value(after, "eventodb_messages_imported_total")
        - value(before, "eventodb_messages_imported_total")
        == 1
    )
    assert value(after, "eventodb_imports_in_progress") == 0


def test_metrics_need_the_admin_token(prod_server: Server) -> None:
    assert error_of(prod_server.client.get("/metrics"))[:2] == (401, "AUTH_REQUIRED")
    tenant = make_tenant(prod_server)
    response = prod_server.client.get("/metrics", headers=admin(tenant.token))
    assert error_of(response)[:2] == (403, "AUTH_UNAUTHORIZED")


def test_metrics_flags(tmp_path: Path) -> None:
    public = Server(["--test-mode", "--metrics-public", "--metrics-namespaces=1"], workdir=tmp_path)
    try:
        token = public.banner_token()
        first = public.ok(token, "ns.create", unique())
        second = public.ok(token, "ns.create", unique())
        for created in (first, second, second):
            public.ok(created["token"], "stream.write", "a-1", {"type": "T", "data": {}})
        samples = scrape(public, headers={})
        written = {
            dict(labels)["namespace"]: v
            for (name, labels), v in samples.items()
            if name == "eventodb_messages_written_total"
        }
        assert written == {first["namespace"]: 1, "/other": 2}
    finally:
        assert public.stop() == 0
    off = Server(["--test-mode", "--no-metrics"], workdir=tmp_path)
    try:
        assert error_of(off.client.get("/metrics", headers=admin()))[:2] == (404, "NOT_FOUND")
    finally:
        assert off.stop() == 0


# -- structured logs -----------------------------------------------------------------------------


@pytest.fixture
def json_server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(
        ["--test-mode", f"--token={ADMIN_TOKEN}", "--log-format=json", "--log-level=debug"],
        workdir=tmp_path,
    )
    yield srv
    srv.stop()


def test_json_logs_are_one_object_per_line_with_fields_in_order(json_server: Server) -> None:
    srv = json_server
    tenant = srv.ok(ADMIN_TOKEN, "ns.create", unique())
    srv.ok(tenant["token"], "stream.write", "acc-1", {"type": "T", "data": {"n": "secret-data"}})
    with srv.client.stream("GET", f"/subscribe?stream=acc-1&token={tenant['token']}") as sse:
        assert sse.status_code == 200
    srv.ok(ADMIN_TOKEN, "ns.delete", tenant["namespace"])
    assert srv.stop() == 0
    lines = srv.output().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is JSON
    for entry in entries:
        assert {"time", "level", "logger", "msg"} <= set(entry), entry
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert [e["time"] for e in entries] == sorted(e["time"] for e in entries)
    [banner] = [e for e in entries if e["msg"] == "DEFAULT NAMESPACE TOKEN"]
    assert banner["token"] == ADMIN_TOKEN
    requests = [e for e in entries if e["logger"] == "eventodb.http"]
    write = next(e for e in requests if e["rpc"] == "stream.write")
    assert write | {"duration_ms": 0, "request_id": ""} == write | {
        "level": "info",
        "method": "POST",
        "path": "/rpc",
        "status": 200,
        "namespace": tenant["namespace"],
        "duration_ms": 0,
        "request_id": "",
    }
    assert write["duration_ms"] > 0
    assert write["request_id"]
    subscribe = next(e for e in requests if e["path"] == "/subscribe")
    assert subscribe["rpc"] is None
    assert subscribe["namespace"] == tenant["namespace"]
    # In order: the request before ns.delete is logged before the line ns.delete writes.
    deleted = next(i for i, e in enumerate(entries) if "deleted" in e["msg"])
    assert entries.index(write) < deleted
    # Tokens appear only in the banner; payloads never.
    others = [line for line, e in zip(lines, entries, strict=True) if e is not banner]
    assert not any(ADMIN_TOKEN in line or tenant["token"] in line for line in others)
    assert "secret-data" not in srv.output()
    assert entries[-1]["msg"] == "stopped"


def test_console_logs_stay_readable(tmp_path: Path) -> None:
    srv = Server(["--test-mode", f"--token={ADMIN_TOKEN}"], workdir=tmp_path)
    try:
        srv.client.post("/rpc", json=["sys.version"], headers={"X-Request-Id": "console-1"})
    finally:
        assert srv.stop() == 0
    [line] = [line for line in srv.output().splitlines() if "console-1" in line]
    assert re.fullmatch(
        r"\S+Z INFO  eventodb\.http: POST /rpc 200 \d+\.\d\dms rpc=sys\.version ns=default"
        r" id=console-1",
        line,
    ), line


# -- RPC envelope wording ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b'{"method":"stream.get"}', "an object"), (b'"stream.get"', "a string"), (b"7", "a number")],
)
def test_a_body_that_is_not_an_array_gets_our_explanation(
    server: Server, body: bytes, kind: str
) -> None:
    response = server.client.post("/rpc", content=body, headers=admin())
    assert error_of(response)[:3] == (400, "INVALID_REQUEST", "Malformed JSON request")
    explanation = response.json()["error"]["details"]["error"]
    assert "JSON array" in explanation
    assert '["stream.get", "account-123"]' in explanation
    assert explanation.endswith(f"got {kind}")
    assert "Go value" not in response.text


def test_token_command_output_is_accepted_by_the_server(tmp_path: Path) -> None:
    import subprocess
    import sys

    def mint(namespace: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "eventodb", "token", namespace],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert done.stderr == ""
        return done.stdout.removesuffix("\n")

    default_token = mint("default")
    assert tokens.parse(default_token) == "default"
    assert default_token != mint("default")
    srv = Server([f"--token={default_token}", f"--data-dir={tmp_path / 'd'}"], workdir=tmp_path)
    try:
        tenant_token = mint("tenant-a")
        srv.ok(default_token, "ns.create", "tenant-a", {"token": tenant_token})
        assert srv.ok(tenant_token, "ns.streams") == []
        assert "shown only now" not in srv.output()  # the token was given, not generated
    finally:
        assert srv.stop() == 0


def test_docs_and_dashboard_name_exactly_the_metrics_served(server: Server) -> None:
    root = Path(__file__).resolve().parents[2]
    response = server.client.get("/metrics", headers=admin())
    served = {
        family.name
        for family in text_string_to_metric_families(response.text)
        if family.name.startswith("eventodb_")
    }
    if server.kind != "postgres":  # only a backend with a pool has pool figures
        served |= {"eventodb_pool_connections", "eventodb_pool_max_connections"}
        served |= {"eventodb_pool_wait_seconds"}

    def family(name: str) -> str:
        return re.sub(r"_(total|bucket|sum|count)$", "", name)

    api = (root / "docs" / "API.md").read_text("utf-8")
    start = api.index("\n## Metrics")
    table = api[start : api.index("\n## ", start + 1)]
    documented = {family(n) for n in re.findall(r"^\| `(eventodb_\w+)`", table, re.M)}
    dashboard = (root / "docs" / "grafana-dashboard.json").read_text("utf-8")
    charted = {family(n) for n in re.findall(r"eventodb_\w+", dashboard)}
    assert documented == served
    assert charted <= served
