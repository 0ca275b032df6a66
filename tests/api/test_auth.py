"""Authentication (docs/API.md): token sources, production rules, test mode, and the permissive
admin switch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eventodb import __version__
from eventodb.core import tokens
from tests.support.raw_http import raw_post, raw_reply
from tests.support.server import ADMIN_TOKEN, Server, error_of, make_tenant, unique
from tests.unit.test_tokens import RANDOM_WITH_WHITESPACE

BODY = b'["sys.version"]'


def post(server: Server, headers: dict[str, str] | None = None, query: str = "") -> httpx.Response:
    return server.client.post(f"/rpc{query}", content=BODY, headers=headers or {})


# -- production ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Authorization header required"),
        ({"Authorization": f"Token {ADMIN_TOKEN}"}, "Authorization header must use Bearer scheme"),
        ({"Authorization": f"bearer {ADMIN_TOKEN}"}, "Authorization header must use Bearer scheme"),
    ],
)
def test_missing_token_is_auth_required(
    prod_server: Server, headers: dict[str, str], message: str
) -> None:
    assert error_of(post(prod_server, headers)) == (401, "AUTH_REQUIRED", message)


def test_bearer_without_token_is_token_required(prod_server: Server) -> None:
    status, body = raw_post(prod_server, "/rpc", BODY, ["Authorization: Bearer "])
    assert status == 401
    assert json.loads(body) == {"error": {"code": "AUTH_REQUIRED", "message": "Token required"}}


def _raw_rpc(server: Server, authorization: bytes) -> bytes:
    """POST ["sys.version"] over a raw socket (httpx refuses header values with blanks)."""
    header = b"Authorization: " + authorization
    return raw_reply(server, "/rpc", b'["sys.version"]', [header.decode("latin-1")])


def test_trailing_blanks_after_a_bearer_token_are_ignored(prod_server: Server) -> None:
    """Go's net/http strips trailing blanks from header values; httptools does not."""
    token = prod_server.banner_token().encode()
    assert _raw_rpc(prod_server, b"Bearer " + token + b" \t ").startswith(b"HTTP/1.1 200")
    blank = _raw_rpc(prod_server, b"Bearer   ")
    assert blank.startswith(b"HTTP/1.1 401")
    assert b'"message":"Token required"' in blank


@pytest.mark.parametrize(
    ("token", "detail"),
    [
        ("abc", "invalid token format: missing 'ns_' prefix"),
        ("ns_abc", "invalid token format: expected 2 parts after prefix, got 1"),
        ("ns_ZGVmYXVsdA_123", "invalid token format: random part must be 64 hex characters, got 3"),
        ("ns__" + "0" * 64, "invalid token format: namespace is empty"),
    ],
)
def test_malformed_token_is_auth_invalid_token(
    prod_server: Server, token: str, detail: str
) -> None:
    response = post(prod_server, {"Authorization": f"Bearer {token}"})
    assert error_of(response) == (401, "AUTH_INVALID_TOKEN", "Invalid token format")
    assert response.json()["error"]["details"] == {"error": detail}


def test_token_with_whitespace_in_random_part_is_auth_invalid_token(prod_server: Server) -> None:
    """A token that does not parse is 401 AUTH_INVALID_TOKEN, not a 403 hash mismatch."""
    token = f"ns_ZGVmYXVsdA_{RANDOM_WITH_WHITESPACE[0]}"
    response = prod_server.client.post("/rpc", params={"token": token}, json=["sys.version"])
    assert error_of(response) == (401, "AUTH_INVALID_TOKEN", "Invalid token format")


def test_unknown_namespace_and_wrong_hash_are_403(prod_server: Server) -> None:
    ghost = unique("ghost")
    for token, namespace in (
        (tokens.generate(ghost), ghost),
        (tokens.generate("default"), "default"),
    ):
        response = post(prod_server, {"Authorization": f"Bearer {token}"})
        assert error_of(response) == (
            403,
            "AUTH_UNAUTHORIZED",
            "Token not authorized for namespace",
        )
        assert response.json()["error"]["details"] == {"namespace": namespace}
    assert error_of(prod_server.rpc(ADMIN_TOKEN, "ns.info", ghost))[1] == "NAMESPACE_NOT_FOUND"


def test_every_method_needs_a_token_in_production(prod_server: Server) -> None:
    for method in ("sys.version", "sys.health", "ns.list", "stream.get", "nope"):
        response = prod_server.client.post("/rpc", json=[method, "x-1"])
        assert error_of(response)[:2] == (401, "AUTH_REQUIRED")


def test_auth_comes_before_the_http_method_check(prod_server: Server) -> None:
    assert error_of(prod_server.client.get("/rpc"))[:2] == (401, "AUTH_REQUIRED")
    assert error_of(prod_server.client.get("/subscribe?stream=a-1"))[:2] == (401, "AUTH_REQUIRED")
    bad = prod_server.client.get(f"/subscribe?stream=a-1&token={tokens.generate('default')}")
    assert error_of(bad)[:2] == (403, "AUTH_UNAUTHORIZED")


def test_query_token_wins_over_header(prod_server: Server) -> None:
    response = post(prod_server, {"Authorization": "Basic xyz"}, f"?token={ADMIN_TOKEN}")
    assert response.status_code == 200
    wrong = post(
        prod_server, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, f"?token={tokens.generate('x')}"
    )
    assert wrong.status_code == 403
    empty = post(prod_server, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, "?token=")
    assert empty.status_code == 200


def test_cached_token_stops_working_after_its_namespace_is_deleted(prod_server: Server) -> None:
    t = make_tenant(prod_server)
    assert t.rpc("sys.version").status_code == 200
    prod_server.ok(ADMIN_TOKEN, "ns.delete", t.namespace)
    assert t.rpc("sys.version").status_code == 403
    again = prod_server.ok(ADMIN_TOKEN, "ns.create", t.namespace)
    assert t.rpc("sys.version").status_code == 403
    assert prod_server.rpc(again["token"], "sys.version").status_code == 200
    prod_server.ok(ADMIN_TOKEN, "ns.delete", t.namespace)


def test_token_whose_base64_part_contains_underscore_works(prod_server: Server) -> None:
    namespace = "ab?"
    created = prod_server.ok(ADMIN_TOKEN, "ns.create", namespace)
    assert "_" in created["token"][3:-65]
    assert prod_server.ok(created["token"], "ns.info", namespace)["namespace"] == namespace
    prod_server.ok(ADMIN_TOKEN, "ns.delete", namespace)


# -- test mode -----------------------------------------------------------------------------------

TEST_MODE_BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=TEST_MODE_BACKENDS)
def test_mode_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """Test mode is honoured with any backend (upstream only without ``--db-url``)."""
    workdir = tmp_path_factory.mktemp(f"testmode-{request.param}")
    args = ["-test-mode", "-token", ADMIN_TOKEN]
    if request.param == "sqlite":
        args += ["-db-url", "sqlite://metadata.db", "-data-dir", str(workdir / "data")]
    elif request.param == "postgres":
        args += ["-db-url", request.getfixturevalue("postgres_dsn")]
    srv = Server(args, workdir=workdir, kind=request.param)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Basic x"}, {"Authorization": "Bearer junk"}]
)
def test_test_mode_runs_unusable_tokens_as_default(
    test_mode_server: Server, headers: dict[str, str]
) -> None:
    response = test_mode_server.client.post("/rpc", json=["ns.list"], headers=headers)
    assert response.status_code == 200
    assert "x-eventodb-token" not in response.headers
    write = test_mode_server.client.post(
        "/rpc", json=["stream.write", "tm-1", {"type": "T", "data": {}}], headers=headers
    )
    assert write.status_code == 200
    assert test_mode_server.ok(ADMIN_TOKEN, "stream.version", "tm-1") is not None


def test_test_mode_runs_an_empty_bearer_as_default(test_mode_server: Server) -> None:
    status, body = raw_post(test_mode_server, "/rpc", BODY, ["Authorization: Bearer "])
    assert (status, json.loads(body)) == (200, __version__)


def test_test_mode_skips_the_hash_check(test_mode_server: Server) -> None:
    other_default = tokens.generate("default")
    assert test_mode_server.ok(other_default, "ns.info", "default")["namespace"] == "default"


def test_test_mode_auto_creates_unknown_namespaces_with_header(test_mode_server: Server) -> None:
    namespace = unique("auto")
    token = tokens.generate(namespace)
    response = test_mode_server.client.post(
        f"/rpc?token={token}", json=["stream.write", "a-1", {"type": "T", "data": {}}]
    )
    assert response.status_code == 200
    assert response.headers["x-eventodb-token"] == token
    second = test_mode_server.rpc(token, "stream.get", "a-1")
    assert len(second.json()) == 1
    assert "x-eventodb-token" not in second.headers
    info = test_mode_server.ok(ADMIN_TOKEN, "ns.info", namespace)
    assert info["messageCount"] == 1
    test_mode_server.ok(ADMIN_TOKEN, "ns.delete", namespace)


def test_test_mode_does_not_recreate_a_deleted_namespace(test_mode_server: Server) -> None:
    namespace = unique("del")
    token = tokens.generate(namespace)
    test_mode_server.ok(ADMIN_TOKEN, "ns.create", namespace, {"token": token})
    test_mode_server.ok(ADMIN_TOKEN, "ns.delete", namespace)
    response = test_mode_server.rpc(token, "stream.get", "a-1")
    assert error_of(response)[:2] == (403, "AUTH_UNAUTHORIZED")
    other = test_mode_server.rpc(tokens.generate(namespace), "sys.version")
    assert other.status_code == 403
    assert (
        error_of(test_mode_server.rpc(ADMIN_TOKEN, "ns.info", namespace))[1]
        == "NAMESPACE_NOT_FOUND"
    )


def test_test_mode_unsafe_namespace_in_token_is_400(test_mode_server: Server) -> None:
    response = test_mode_server.rpc(tokens.generate("a/b"), "sys.version")
    assert error_of(response)[:2] == (400, "INVALID_REQUEST")


# -- permissive admin switch ---------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["flag", "env"])
def test_permissive_admin_restores_upstream_behaviour(tmp_path: Path, spelling: str) -> None:
    args = ["--test-mode", f"--token={ADMIN_TOKEN}"]
    env = {}
    if spelling == "flag":
        args.append("--permissive-admin")
    else:
        env["EVENTODB_PERMISSIVE_ADMIN"] = "true"
    srv = Server(args, workdir=tmp_path, env=env)
    try:
        a, b = make_tenant(srv), make_tenant(srv)
        assert b.rpc("ns.list").status_code == 200
        assert b.ok("ns.info", a.namespace)["namespace"] == a.namespace
        assert b.rpc("ns.create", unique()).status_code == 200
        assert b.ok("ns.delete", a.namespace)["namespace"] == a.namespace
    finally:
        assert srv.stop() == 0
