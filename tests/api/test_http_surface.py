"""Paths, methods, JSON conventions, the RPC envelope and body limits (docs/API.md)."""

from __future__ import annotations

import socket

import pytest

from eventodb import __version__
from tests.support.server import ADMIN_TOKEN, Server, Tenant, error_of

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_health_answers_ok_without_auth(server: Server) -> None:
    response = server.client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"status":"ok"}'


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_version_endpoint_answers_any_method_without_auth(server: Server, method: str) -> None:
    response = server.client.request(method, "/version")
    assert response.status_code == 200
    assert response.json() == {"version": __version__}


@pytest.mark.parametrize("path", ["/", "/rpc/", "/subscribe/stream/x", "/debug/pprof/", "/RPC"])
def test_unknown_paths_are_a_json_404(server: Server, path: str) -> None:
    response = server.client.get(path, headers=AUTH)
    assert error_of(response) == (404, "NOT_FOUND", "Endpoint not found")


def test_query_string_is_ignored_for_routing(server: Server) -> None:
    assert server.client.get("/health?x=1").status_code == 200


def test_rpc_with_other_method_than_post_is_405_after_auth(server: Server) -> None:
    response = server.client.get("/rpc", headers=AUTH)
    assert error_of(response) == (405, "INVALID_REQUEST", "Only POST method allowed")


def test_success_bodies_are_compact_json_with_integers(tenant: Tenant) -> None:
    response = tenant.rpc("stream.write", "acc-1", {"type": "T", "data": {"x": 1}})
    assert response.headers["content-type"] == "application/json"
    assert response.content == b'{"position":0,"globalPosition":1}'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Malformed JSON request"),
        (b"{", "Malformed JSON request"),
        (b'{"method": "sys.version"}', "Malformed JSON request"),
        (b'"sys.version"', "Malformed JSON request"),
        (b"42", "Malformed JSON request"),
        (b"true", "Malformed JSON request"),
        (b'["sys.version",]', "Malformed JSON request"),
        (b'["stream.get", NaN]', "Malformed JSON request"),
        (b'["sys.version", "\xff\xfe"]', "Malformed JSON request"),
        (b'["stream.write","a-1",{"type":"T","data":{"k":"\\ud800"}}]', "Malformed JSON request"),
        (b'["stream.get", 1e400]', "Malformed JSON request"),
        (b"null", "Missing method name"),
        (b"[]", "Missing method name"),
        (b"[1]", "Method name must be a string"),
        (b"[null]", "Method name must be a string"),
        (b'[["sys.version"]]', "Method name must be a string"),
    ],
)
def test_envelope_problems_are_invalid_request(server: Server, body: bytes, message: str) -> None:
    response = server.client.post("/rpc", content=body, headers=AUTH)
    assert error_of(response) == (400, "INVALID_REQUEST", message)
    if message == "Malformed JSON request":
        assert isinstance(response.json()["error"]["details"]["error"], str)


@pytest.mark.parametrize("name", ["ns.rotateToken", "Sys.Version", "stream.delete", ""])
def test_unknown_methods_are_method_not_found(server: Server, name: str) -> None:
    response = server.rpc(ADMIN_TOKEN, name)
    assert error_of(response) == (404, "METHOD_NOT_FOUND", f"Unknown method: {name}")


def test_extra_trailing_arguments_are_ignored(server: Server) -> None:
    assert server.ok(ADMIN_TOKEN, "sys.version", 1, {"x": None}) == __version__


def test_content_type_of_request_is_not_checked(server: Server) -> None:
    response = server.client.post(
        "/rpc", content=b'["sys.version"]', headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert response.json() == __version__


def test_nesting_deeper_than_512_levels_is_refused(tenant: Tenant) -> None:
    deep: object = {}
    for _ in range(600):
        deep = {"a": deep}
    response = tenant.rpc("stream.write", "acc-1", {"type": "T", "data": deep})
    status, code, _ = error_of(response)
    assert (status, code) == (400, "INVALID_REQUEST")
    body = b'["sys.version",' + b"[" * 2000 + b"]" * 2000 + b"]"
    response = tenant.server.client.post(
        "/rpc", content=body, headers={"Authorization": f"Bearer {tenant.token}"}
    )
    assert error_of(response)[:2] == (400, "INVALID_REQUEST")
    assert tenant.message_count() == 0


def test_nesting_of_500_levels_is_accepted(tenant: Tenant) -> None:
    deep: object = {}
    for _ in range(500):
        deep = {"a": deep}
    tenant.ok("stream.write", "acc-1", {"type": "T", "data": deep})
    assert tenant.message_count() == 1


def test_body_over_100_mib_is_413_by_content_length(server: Server) -> None:
    """Announced size over the limit: refused before any of the body is read."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /rpc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + ADMIN_TOKEN.encode()
            + b"\r\nContent-Length: "
            + str(100 * 1024 * 1024 + 1).encode()
            + b"\r\n\r\n["
        )
        reply = b""
        while b"}}" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b'"code":"INVALID_REQUEST"' in body


def test_chunked_body_over_100_mib_is_413(server: Server) -> None:
    """Without a length the body is counted while streaming and refused past the limit."""

    def chunks() -> object:
        piece = b" " * (1024 * 1024)
        yield b'["sys.version"'
        for _ in range(101):
            yield piece
        yield b"]"

    response = server.client.post("/rpc", content=chunks(), headers=AUTH)  # type: ignore[arg-type]
    assert error_of(response)[:2] == (413, "INVALID_REQUEST")


def test_large_body_under_the_limit_is_accepted(server: Server) -> None:
    body = b'["sys.version"' + b" " * (5 * 1024 * 1024) + b"]"
    response = server.client.post("/rpc", content=body, headers=AUTH)
    assert response.json() == __version__


def test_import_endpoint_is_authenticated_then_streams_events(prod_server: Server) -> None:
    assert prod_server.client.post("/import").status_code == 401
    response = prod_server.client.post("/import", headers=AUTH, content=b"")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.text.startswith('data: {"done":true,"imported":0,')
