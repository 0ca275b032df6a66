"""NDJSON import and export (docs/API.md, "Import"): ``POST /import`` and the ``eventodb
export``/``import`` commands, against the real server in a subprocess on SQLite files and
Postgres."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from eventodb.core import tokens
from tests.support.raw_http import raw_post
from tests.support.server import ADMIN_TOKEN, Server, Tenant, error_of, make_tenant
from tests.support.sseclient import subscribe

pytestmark = pytest.mark.timeout(120)


def record(
    gpos: int,
    stream: str = "acct-1",
    pos: int | None = None,
    *,
    time: str = "2025-01-15T10:00:00Z",
    data: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """One NDJSON record; the id is derived from ``gpos`` unless given."""
    return {
        "id": message_id or str(uuid.UUID(int=gpos)),
        "stream": stream,
        "type": "Imported",
        "pos": gpos - 1 if pos is None else pos,
        "gpos": gpos,
        "data": {"n": gpos} if data is None else data,
        "meta": meta,
        "time": time,
    }


DROP = object()


def edit(rec: dict[str, Any], **changes: Any) -> bytes:
    """``rec`` as a JSON line with fields replaced, or removed where the value is ``DROP``."""
    changed = {k: v for k, v in (rec | changes).items() if v is not DROP}
    return json.dumps(changed).encode()


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def events_of(response: httpx.Response) -> list[dict[str, Any]]:
    """The ``data:`` events of an import answer, checking the framing."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    text = response.text
    assert text.endswith("\n\n"), text
    blocks = text[:-2].split("\n\n")
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), text
    return [json.loads(b[len("data: ") :]) for b in blocks]


def post_import(
    server: Server, token: str | None, body: bytes, *, force: bool = False
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    params = {"force": "true"} if force else None
    return server.client.post("/import", content=body, headers=headers, params=params, timeout=60.0)


def import_events(tenant: Tenant, body: bytes, *, force: bool = False) -> list[dict[str, Any]]:
    return events_of(post_import(tenant.server, tenant.token, body, force=force))


def everything(tenant: Tenant) -> list[list[Any]]:
    """Every message of the namespace, as ``category.get "" `` returns them."""
    messages: list[list[Any]] = []
    position = 0
    while page := tenant.ok("category.get", "", {"position": position, "batchSize": 1000}):
        messages += page
        position = page[-1][4] + 1
    return messages


@pytest.fixture
def tenant(prod_server: Server) -> Iterator[Tenant]:
    t = make_tenant(prod_server)
    yield t
    prod_server.rpc(ADMIN_TOKEN, "ns.delete", t.namespace)


@pytest.fixture
def other(prod_server: Server) -> Iterator[Tenant]:
    """A second, empty namespace (the import target of round trips)."""
    t = make_tenant(prod_server)
    yield t
    prod_server.rpc(ADMIN_TOKEN, "ns.delete", t.namespace)


# -- POST /import ------------------------------------------------------------------------------


def test_import_keeps_ids_positions_times_and_payloads(tenant: Tenant) -> None:
    records = [
        record(3, "acct-1", 0, data={"a": [1, 2.5, "x"], "big": 12345678901234567890}),
        record(
            7,
            "acct-2",
            4,
            meta={"correlationStreamName": "x-1"},
            time="2024-02-29T23:59:59.123456Z",
        ),
        record(9, "acct-1", 1, meta={}, time="2025-01-15T12:00:00+02:00"),
    ]
    events = import_events(tenant, ndjson(records))
    assert events[-1]["done"] is True
    assert events[-1]["imported"] == 3
    assert everything(tenant) == [
        [
            str(uuid.UUID(int=3)),
            "acct-1",
            "Imported",
            0,
            3,
            records[0]["data"],
            None,
            "2025-01-15T10:00:00Z",
        ],
        [
            str(uuid.UUID(int=7)),
            "acct-2",
            "Imported",
            4,
            7,
            {"n": 7},
            {"correlationStreamName": "x-1"},
            "2024-02-29T23:59:59.123456Z",
        ],
        [str(uuid.UUID(int=9)), "acct-1", "Imported", 1, 9, {"n": 9}, {}, "2025-01-15T10:00:00Z"],
    ]


def test_ids_are_stored_in_canonical_form(tenant: Tenant) -> None:
    upper = "{" + str(uuid.UUID(int=5)).upper() + "}"
    import_events(tenant, ndjson([record(5, message_id=upper)]))
    assert everything(tenant)[0][0] == str(uuid.UUID(int=5))


def test_progress_after_every_thousand_records_then_done(tenant: Tenant) -> None:
    events = import_events(
        tenant, ndjson([record(g, f"s-{g % 50}", g // 50) for g in range(1, 2501)])
    )
    assert events[:2] == [{"imported": 1000, "gpos": 1000}, {"imported": 2000, "gpos": 2000}]
    assert len(events) == 3
    done = events[2]
    assert list(done) == ["done", "imported", "elapsed"]
    assert done["done"] is True
    assert done["imported"] == 2500
    assert re.fullmatch(r"\d+\.\ds", done["elapsed"]), done
    assert tenant.message_count() == 2500


def test_empty_body_answers_only_done(tenant: Tenant) -> None:
    events = import_events(tenant, b"")
    assert len(events) == 1
    assert events[0]["done"] is True
    assert events[0]["imported"] == 0
    assert events[0]["elapsed"] == "0.0s"


def test_blank_lines_and_crlf_are_accepted(tenant: Tenant) -> None:
    body = b"\n  \n" + edit(record(1)) + b"\r\n\r\n\t\n" + edit(record(2))
    assert import_events(tenant, body)[-1]["imported"] == 2


def test_force_clears_the_namespace_and_restarts_numbering(tenant: Tenant) -> None:
    for _ in range(5):
        tenant.ok("stream.write", "old-1", {"type": "T", "data": {}})
    events = import_events(
        tenant, ndjson([record(1, "new-1", 0), record(2, "new-1", 1)]), force=True
    )
    assert events[-1]["imported"] == 2
    assert [(m[1], m[4]) for m in everything(tenant)] == [("new-1", 1), ("new-1", 2)]
    assert tenant.ok("stream.write", "new-1", {"type": "T", "data": {}}) == {
        "position": 2,
        "globalPosition": 3,
    }
    import_events(tenant, b"", force=True)
    assert everything(tenant) == []
    assert tenant.ok("stream.write", "x-1", {"type": "T", "data": {}})["globalPosition"] == 1


def test_force_must_be_exactly_true(tenant: Tenant) -> None:
    tenant.ok("stream.write", "old-1", {"type": "T", "data": {}})
    response = tenant.server.client.post(
        "/import?force=TRUE", content=b"", headers={"Authorization": f"Bearer {tenant.token}"}
    )
    assert events_of(response)[-1]["done"] is True
    assert tenant.message_count() == 1


def test_writes_after_an_import_get_higher_global_positions(tenant: Tenant) -> None:
    tenant.ok("stream.write", "acct-1", {"type": "T", "data": {}})
    # Higher positions first, then lower ones: the sequence must not go back.
    import_events(tenant, ndjson([record(500, "acct-9", 0), record(10, "acct-8", 0)]))
    written = tenant.ok("stream.write", "acct-1", {"type": "T", "data": {}})
    assert written == {"position": 1, "globalPosition": 501}


def _body_with_bad_line(bad: bytes, at: int = 3) -> bytes:
    lines = [json.dumps(record(g)).encode() for g in range(1, 6)]
    lines[at - 1] = bad
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize(
    ("bad", "code", "message"),
    [
        (b'{"id": "x",', "INVALID_JSON", "malformed JSON at line 3: "),
        (b"[1, 2]", "INVALID_JSON", "malformed JSON at line 3: "),
        (edit(record(3), pos="1"), "INVALID_JSON", "malformed JSON at line 3: "),
        (edit(record(3), gpos=3.5), "INVALID_JSON", "malformed JSON at line 3: "),
        (edit(record(3), meta=[1]), "INVALID_JSON", "malformed JSON at line 3: "),
        (
            edit(record(3), time="2025-01-15 10:00:00"),
            "INVALID_RECORD",
            "invalid record at line 3: invalid time format: ",
        ),
        (
            edit(record(3), time=DROP),
            "INVALID_RECORD",
            "invalid record at line 3: invalid time format",
        ),
        (
            edit(record(3), id=DROP),
            "INVALID_RECORD",
            "invalid record at line 3: missing id",
        ),
        (
            edit(record(3), stream=DROP),
            "INVALID_RECORD",
            "invalid record at line 3: missing stream",
        ),
        (
            edit(record(3), type=DROP),
            "INVALID_RECORD",
            "invalid record at line 3: missing type",
        ),
        (
            edit(record(3), data=DROP),
            "INVALID_RECORD",
            "invalid record at line 3: missing data",
        ),
        (
            edit(record(3), data=[1]),
            "INVALID_RECORD",
            "invalid record at line 3: data must be an object",
        ),
        (
            edit(record(3), id="not-a-uuid"),
            "INVALID_RECORD",
            "invalid record at line 3: id must be a UUID",
        ),
        (
            edit(record(3), gpos=0),
            "INVALID_RECORD",
            "invalid record at line 3: gpos must be positive",
        ),
        (
            edit(record(3), data={"a": "\u0000"}),
            "INVALID_RECORD",
            "invalid record at line 3: message.data must not contain NUL",
        ),
        (
            edit(record(3), stream="s" * 1025),
            "INVALID_RECORD",
            "invalid record at line 3: stream must be at most 1024 bytes",
        ),
        (b'{"data": "' + b"x" * (1024 * 1024) + b'"}', "READ_ERROR", "error reading input: "),
    ],
    ids=[
        "truncated-json",
        "not-an-object",
        "string-pos",
        "float-gpos",
        "array-meta",
        "bad-time",
        "missing-time",
        "missing-id",
        "missing-stream",
        "missing-type",
        "missing-data",
        "array-data",
        "non-uuid-id",
        "zero-gpos",
        "nul-in-data",
        "long-stream-name",
        "line-over-1MiB",
    ],
)
def test_a_bad_line_ends_the_import_with_its_code_and_line(
    tenant: Tenant, bad: bytes, code: str, message: str
) -> None:
    events = import_events(tenant, _body_with_bad_line(bad))
    assert len(events) == 1, events
    assert list(events[0]) == ["error", "message", "line"]
    assert events[0]["error"] == code
    assert events[0]["message"].startswith(message), events[0]
    assert events[0]["line"] == 3
    assert tenant.message_count() == 0  # the unfinished batch was not written


def test_duplicate_global_position_in_a_later_batch_keeps_earlier_batches(tenant: Tenant) -> None:
    records = [record(g, f"s-{g % 10}", g // 10) for g in range(1, 1501)]
    records[1202] = record(
        5, "other-1", 0, message_id=str(uuid.uuid4())
    )  # line 1203 repeats gpos 5
    events = import_events(tenant, ndjson(records))
    assert events == [
        {"imported": 1000, "gpos": 1000},
        {"error": "POSITION_EXISTS", "message": "global position already exists: 5", "line": 1203},
    ]
    assert tenant.message_count() == 1000


def test_duplicate_within_one_batch_names_the_offending_line(tenant: Tenant) -> None:
    records = [record(1, "a-1", 0), record(2, "a-1", 1), record(3, "a-1", 1)]
    events = import_events(tenant, ndjson(records))
    assert events == [
        {
            "error": "POSITION_EXISTS",
            "message": "stream position already exists: a-1@1",
            "line": 3,
        }
    ]
    assert tenant.message_count() == 0


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> None:
    while marker not in buffer:
        chunk = sock.recv(65536)
        assert chunk, bytes(buffer)
        buffer += chunk


def test_a_store_failure_after_a_committed_batch_is_import_failed(prod_server: Server) -> None:
    """The namespace is deleted between two batches: the first stays reported as committed,
    the second fails with IMPORT_FAILED at the line of the batch end."""
    target = make_tenant(prod_server)
    head = (
        f"POST /import HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {target.token}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    reply = bytearray()
    with socket.create_connection(("127.0.0.1", prod_server.port), timeout=30) as sock:
        sock.sendall(head.encode() + _chunk(ndjson([record(g) for g in range(1, 1001)])))
        _read_until(sock, reply, b'data: {"imported":1000,"gpos":1000}\n\n')
        prod_server.ok(ADMIN_TOKEN, "ns.delete", target.namespace)
        sock.sendall(_chunk(ndjson([record(g) for g in range(1001, 1011)])) + b"0\r\n\r\n")
        _read_until(sock, reply, b"0\r\n\r\n")
    error = re.search(rb"data: (\{\"error\".*\})\n\n", reply)
    assert error is not None, bytes(reply)
    event = json.loads(error.group(1))
    assert (event["error"], event["line"]) == ("IMPORT_FAILED", 1010)
    assert event["message"]


def test_imported_messages_send_no_pokes(prod_server: Server, tenant: Tenant) -> None:
    # A subscription first replays what exists: one message, so that receiving its poke proves
    # the replay's single read is over before the import starts.
    tenant.ok("stream.write", "pre-1", {"type": "T", "data": {}})

    async def scenario() -> None:
        sub = await subscribe(prod_server.port, {"all": "true"}, token=tenant.token)
        try:
            replayed = await asyncio.wait_for(sub.next_poke(), 10)
            assert replayed is not None
            assert replayed.stream == "pre-1"
            await asyncio.to_thread(
                import_events, tenant, ndjson([record(g, "imp-1") for g in range(2, 5)])
            )
            written = await asyncio.to_thread(
                tenant.ok, "stream.write", "live-1", {"type": "T", "data": {}}
            )
            # Pokes arrive in commit order: anything for the import would come first.
            poke = await asyncio.wait_for(sub.next_poke(), 10)
            assert poke is not None
            assert (poke.stream, poke.global_position) == ("live-1", written["globalPosition"])
        finally:
            await sub.aclose()

    asyncio.run(scenario())


def test_auth_errors_are_json_and_import_nothing(prod_server: Server, tenant: Tenant) -> None:
    body = ndjson([record(1)])
    assert error_of(post_import(prod_server, None, body))[:2] == (401, "AUTH_REQUIRED")
    assert error_of(post_import(prod_server, "nope", body))[:2] == (401, "AUTH_INVALID_TOKEN")
    forged = tokens.generate(tenant.namespace)  # well-formed, but not the stored hash
    assert error_of(post_import(prod_server, forged, body))[:2] == (403, "AUTH_UNAUTHORIZED")
    status, _ = raw_post(prod_server, "/import", body, ["Authorization: Basic abc"])
    assert status == 401
    assert tenant.message_count() == 0


def test_declared_body_over_100_mib_is_refused_before_reading(
    prod_server: Server, tenant: Tenant
) -> None:
    status, body = _post_declaring(prod_server, tenant.token, 100 * 1024 * 1024 + 1)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "INVALID_REQUEST"


def _post_declaring(server: Server, token: str, length: int) -> tuple[int, bytes]:
    """Send only a request head declaring ``length`` body bytes; the answer must not wait."""
    head = (
        f"POST /import HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
