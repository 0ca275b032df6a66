"""The namespace and system methods, and who may administer namespaces (docs/API.md)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventodb import __version__
from eventodb.core import tokens
from tests.support.server import ADMIN_TOKEN, Server, Tenant, error_of, make_tenant, unique

SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def test_create_returns_a_working_token(server: Server) -> None:
    namespace = unique()
    created = server.ok(ADMIN_TOKEN, "ns.create", namespace, {"description": "d"})
    assert set(created) == {"namespace", "token", "createdAt"}
    assert created["namespace"] == namespace
    assert tokens.parse(created["token"]) == namespace
    assert TIME.match(created["createdAt"])
    assert server.ok(created["token"], "stream.version", "x-1") is None
    info = server.ok(ADMIN_TOKEN, "ns.info", namespace)
    assert info["description"] == "d"
    server.ok(ADMIN_TOKEN, "ns.delete", namespace)


def test_create_with_caller_supplied_token(server: Server) -> None:
    namespace = unique()
    token = tokens.generate(namespace)[:-64] + "0" * 64
    created = server.ok(ADMIN_TOKEN, "ns.create", namespace, {"token": token, "metadata": {"a": 1}})
    assert created["token"] == token
    assert server.ok(token, "ns.info", namespace)["namespace"] == namespace
    server.ok(ADMIN_TOKEN, "ns.delete", namespace)


def test_create_existing_namespace_is_409(server: Server, tenant: Tenant) -> None:
    response = server.rpc(ADMIN_TOKEN, "ns.create", tenant.namespace)
    assert error_of(response) == (
        409,
        "NAMESPACE_EXISTS",
        f"Namespace '{tenant.namespace}' already exists",
    )


NS_ROWS: list[tuple[list[Any], str]] = [
    (["ns.create"], "ns.create requires at least 1 argument: namespace ID"),
    (["ns.create", ""], "namespace ID must be a non-empty string"),
    (["ns.create", 7], "namespace ID must be a non-empty string"),
    (["ns.create", "x", None], "options must be an object"),
    (["ns.create", "x", {"description": 1}], "options.description must be a string"),
    (["ns.create", "x", {"token": 1}], "options.token must be a string"),
    (
        ["ns.create", "x", {"token": "bad"}],
        "Invalid token format: invalid token format: missing 'ns_' prefix",
    ),
    (
        ["ns.create", "x", {"token": tokens.generate("y")}],
        "Token is for namespace 'y', not 'x'",
    ),
    (["ns.create", "x", {"metadata": []}], "options.metadata must be an object"),
    (
        ["ns.create", "../evil"],
        "namespace ID must not contain path separators or control characters",
    ),
    (["ns.create", "n" * 55], "namespace ID must be at most 54 bytes"),
    (["ns.create", ".."], "namespace ID must not be '.' or '..'"),
    (["ns.delete"], "ns.delete requires 1 argument: namespace ID"),
    (["ns.delete", ""], "namespace ID must be a non-empty string"),
    (["ns.delete", None], "namespace ID must be a non-empty string"),
    (["ns.info"], "ns.info requires 1 argument: namespace ID"),
    (["ns.info", ["x"]], "namespace ID must be a non-empty string"),
]


@pytest.mark.parametrize(("request_", "message"), NS_ROWS)
def test_namespace_validation_rows(server: Server, request_: list[Any], message: str) -> None:
    response = server.rpc(ADMIN_TOKEN, *request_)
    assert error_of(response) == (400, "INVALID_REQUEST", message)


def test_unknown_namespace_is_404_for_admin(server: Server) -> None:
    missing = unique("gone")
    for method in ("ns.info", "ns.delete"):
        response = server.rpc(ADMIN_TOKEN, method, missing)
        assert error_of(response) == (
            404,
            "NAMESPACE_NOT_FOUND",
            f"Namespace '{missing}' not found",
        )


def test_info_reports_real_counts(tenant: Tenant) -> None:
    fresh = tenant.ok("ns.info", tenant.namespace)
    assert fresh["messageCount"] == 0
    assert fresh["streamCount"] == 0
    assert fresh["lastActivity"] is None
    assert SECONDS.match(fresh["createdAt"])
    for stream in ("a-1", "a-1", "a-2", "b-1", "b-1"):
        tenant.ok("stream.write", stream, {"type": "T", "data": {}})
    info = tenant.ok("ns.info", tenant.namespace)
    assert info["messageCount"] == 5
    assert info["streamCount"] == 3
    assert TIME.match(info["lastActivity"])


def test_delete_reports_messages_and_makes_the_token_useless(server: Server) -> None:
    t = make_tenant(server)
    t.ok("stream.write", "a-1", {"type": "T", "data": {}})
    t.ok("stream.write", "a-2", {"type": "T", "data": {}})
    result = server.ok(ADMIN_TOKEN, "ns.delete", t.namespace)
    assert result["namespace"] == t.namespace
    assert result["messagesDeleted"] == 2
    assert TIME.match(result["deletedAt"])
    response = t.rpc("stream.get", "a-1")
    assert error_of(response)[:2] == (403, "AUTH_UNAUTHORIZED")
    assert error_of(server.rpc(ADMIN_TOKEN, "ns.info", t.namespace))[1] == "NAMESPACE_NOT_FOUND"


def test_tenant_may_delete_itself(server: Server) -> None:
    t = make_tenant(server)
    assert t.ok("ns.delete", t.namespace)["namespace"] == t.namespace
    assert error_of(t.rpc("sys.version"))[:2] == (403, "AUTH_UNAUTHORIZED")


def test_list_is_newest_first_with_counts(server: Server) -> None:
    first = make_tenant(server)
    first.ok("stream.write", "a-1", {"type": "T", "data": {}})
    listed = server.ok(ADMIN_TOKEN, "ns.list", "ignored", None)
    entry = next(e for e in listed if e["namespace"] == first.namespace)
    assert set(entry) == {"namespace", "description", "createdAt", "messageCount"}
    assert entry["messageCount"] == 1
    assert SECONDS.match(entry["createdAt"])
    created = [e["createdAt"] for e in listed]
    assert created == sorted(created, reverse=True)
    assert any(e["namespace"] == "default" for e in listed)
    server.ok(ADMIN_TOKEN, "ns.delete", first.namespace)


def test_streams_listing_pages_by_code_point(tenant: Tenant) -> None:
    for stream in ["b-1", "a-2", "a-1", "a-1", "A-1", "a%-1", "a_-1"]:
        tenant.ok("stream.write", stream, {"type": "T", "data": {}})
    listed = tenant.ok("ns.streams")
    assert [s["stream"] for s in listed] == ["A-1", "a%-1", "a-1", "a-2", "a_-1", "b-1"]
    a1 = next(s for s in listed if s["stream"] == "a-1")
    assert a1["version"] == 1
    assert SECONDS.match(a1["lastActivity"])
    assert [s["stream"] for s in tenant.ok("ns.streams", {"prefix": "a-"})] == ["a-1", "a-2"]
    assert [s["stream"] for s in tenant.ok("ns.streams", {"prefix": "a%"})] == ["a%-1"]
    page1 = tenant.ok("ns.streams", {"limit": 2})
    page2 = tenant.ok("ns.streams", {"limit": 2, "cursor": page1[-1]["stream"]})
    assert [s["stream"] for s in page1 + page2] == ["A-1", "a%-1", "a-1", "a-2"]
    assert tenant.ok("ns.streams", {"limit": 1.9})[0]["stream"] == "A-1"


def test_categories_listing(tenant: Tenant) -> None:
    assert tenant.ok("ns.categories") == []
    for stream in ["acc", "acc-1", "acc-1", "acc-2", "zed-1"]:
        tenant.ok("stream.write", stream, {"type": "T", "data": {}})
    assert tenant.ok("ns.categories", "ignored") == [
        {"category": "acc", "streamCount": 3, "messageCount": 4},
        {"category": "zed", "streamCount": 1, "messageCount": 1},
    ]


def test_head_is_the_last_global_position_and_settled(tenant: Tenant) -> None:
    assert tenant.ok("ns.head") == {"globalPosition": 0, "settled": True}
    for stream in ["acc-1", "acc-2", "zed-1"]:
        tenant.ok("stream.write", stream, {"type": "T", "data": {}})
    assert tenant.ok("ns.head", "ignored") == {"globalPosition": 3, "settled": True}


def test_sys_methods(server: Server, tenant: Tenant) -> None:
    assert tenant.ok("sys.version") == __version__
    assert re.match(r"^\d+\.\d+\.\d+", __version__)
    health = tenant.ok("sys.health")
    assert health["status"] == "ok"
    expected = {"sqlite": "sqlite", "test-mode": "memory", "postgres": "postgres"}[server.kind]
    assert health["backend"] == expected
    assert isinstance(health["connections"], int)
    assert health["connections"] >= 1


# -- admin model ---------------------------------------------------------------------------------


def test_tenant_cannot_create_or_list(server: Server, tenant: Tenant) -> None:
    for request in (["ns.create", unique()], ["ns.create", tenant.namespace], ["ns.list"]):
        response = tenant.rpc(*request)
        assert error_of(response) == (
            403,
            "AUTH_UNAUTHORIZED",
            "Token not authorized for namespace",
        )
        assert response.json()["error"]["details"] == {"namespace": tenant.namespace}


def test_tenant_cannot_learn_whether_other_namespaces_exist(server: Server) -> None:
    a, b = make_tenant(server), make_tenant(server)
    for method in ("ns.info", "ns.delete"):
        existing = b.rpc(method, a.namespace)
        missing = b.rpc(method, unique("gone"))
        assert existing.status_code == missing.status_code == 403
        assert existing.json() == missing.json()
    assert a.message_count() == 0
    for t in (a, b):
        server.ok(ADMIN_TOKEN, "ns.delete", t.namespace)


def test_default_namespace_cannot_be_deleted(server: Server, tenant: Tenant) -> None:
    response = server.rpc(ADMIN_TOKEN, "ns.delete", "default")
    assert error_of(response)[:2] == (400, "INVALID_REQUEST")
    assert error_of(tenant.rpc("ns.delete", "default"))[:2] == (403, "AUTH_UNAUTHORIZED")
    assert server.ok(ADMIN_TOKEN, "ns.info", "default")["namespace"] == "default"


# -- storage failures ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_storage_failure_is_a_backend_error_envelope(postgres_dsn: str, tmp_path: Path) -> None:
    """A namespace schema dropped behind the server's back: 500 BACKEND_ERROR, no stack trace."""
    srv = Server([f"--token={ADMIN_TOKEN}", "--db-url", postgres_dsn], workdir=tmp_path)
    try:
        broken_namespace_answers_backend_error(srv, postgres_dsn)
    finally:
        assert srv.stop() == 0
    assert "ERROR" in srv.output()


def broken_namespace_answers_backend_error(srv: Server, postgres_dsn: str) -> None:
    t = make_tenant(srv)
    t.ok("stream.write", "acc-1", {"type": "T", "data": {}})

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            # The schema of an id made of [A-Za-z0-9_] is eventodb_<id>.
            await conn.execute(f'DROP SCHEMA "eventodb_{t.namespace}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())
    response = t.rpc("stream.get", "acc-1")
    status, code, message = error_of(response)
    assert (status, code) == (500, "BACKEND_ERROR")
    assert message.startswith("Failed to")
    assert "Traceback" not in response.text
    # One damaged namespace must not break the listing of all the others (counts fall back to 0).
    listed = {n["namespace"]: n for n in srv.ok(ADMIN_TOKEN, "ns.list")}
    assert listed[t.namespace]["messageCount"] == 0
    assert "default" in listed
    info = srv.ok(ADMIN_TOKEN, "ns.info", t.namespace)
    assert (info["messageCount"], info["streamCount"], info["lastActivity"]) == (0, 0, None)
    # Out of the shared database's registry: a server started on it later would report the
    # missing schema at start-up, as an error.
    srv.ok(ADMIN_TOKEN, "ns.delete", t.namespace)
