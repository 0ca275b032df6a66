"""Connection limits against the real server, with exact figures: request head size, header and
body read timeouts (slowloris), idle keep-alive, the connection cap, requests in flight, the
decoded size of a body, and half-closed clients (docs/API.md, "Limits")."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import ADMIN_TOKEN, Server

pytestmark = pytest.mark.timeout(120)

HEAD_LIMIT = 64 * 1024
"""The default of --max-header-bytes."""
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
IDLE_TIMEOUT = 1.0
SWEEP = 0.5
"""Timeouts under 4 s are checked every quarter of the smallest one."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("limits")
    srv = Server(
        [
            f"--token={ADMIN_TOKEN}",
            f"--data-dir={workdir / 'data'}",
            f"--header-timeout={HEADER_TIMEOUT}",
            f"--body-timeout={BODY_TIMEOUT}",
            f"--idle-timeout={IDLE_TIMEOUT}",
            "--max-in-flight=2",
        ],
        workdir=workdir,
    )
    yield srv
    assert srv.stop() == 0, srv.output()


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head_of(size: int, path: str = "/health") -> bytes:
    """A GET whose request line and headers are exactly ``size`` bytes, blank line included."""
    start = f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Pad: ".encode()
    end = b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def one_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read exactly one response with a Content-Length (keep-alive)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return int(lines[0].split()[1]), headers, body


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# -- request head size --------------------------------------------------------------------------


def test_a_head_of_exactly_the_limit_is_served_and_one_byte_more_is_431(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(head_of(HEAD_LIMIT))
        assert one_response(sock)[0] == 200
    for pieces in (1, 97):  # at once, and in small pieces
        request = head_of(HEAD_LIMIT + 1)
        with connect(server) as sock:
            step = len(request) // pieces + 1
            for i in range(0, len(request), step):
                sock.sendall(request[i : i + step])
            reply = read_until_closed(sock)
        assert status_of(reply) == 431, reply[:200]
        body = json.loads(reply.partition(b"\r\n\r\n")[2])
        assert body == {
            "error": {"code": "INVALID_REQUEST", "message": "Request header fields too large"}
        }


def test_one_endless_header_costs_little_and_blocks_nobody(server: Server) -> None:
    """60 MiB of one header value: answered 431 after the first 64 KiB, the rest dropped."""
    replies: list[bytes] = []
    before = cpu_seconds(server.proc.pid)
    sock = connect(server)
    reader = threading.Thread(target=lambda: replies.append(read_until_closed(sock)))
    reader.start()

    def attack() -> None:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        piece = b"a" * (1024 * 1024)
        try:
            for _ in range(60):
                sock.sendall(piece)
        except OSError:
            pass  # the server closed the connection: what we want

    attacker = threading.Thread(target=attack)
    attacker.start()
    slowest = 0.0
    while attacker.is_alive():
        started = time.monotonic()
        assert server.client.get("/health").status_code == 200
        slowest = max(slowest, time.monotonic() - started)
    attacker.join()
    reader.join(10)
    sock.close()
    used = cpu_seconds(server.proc.pid) - before
    assert replies, "no answer"
    assert status_of(replies[0]) == 431
    assert used < 0.5, f"the server spent {used:.2f} s of CPU"
    assert slowest < 0.5, f"a concurrent request took {slowest:.2f} s"


# -- read timeouts ------------------------------------------------------------------------------


def closed_after(sock: socket.socket) -> tuple[float, bytes]:
    started = time.monotonic()
    reply = read_until_closed(sock)
    return time.monotonic() - started, reply


def test_a_connection_that_sends_nothing_is_answered_408_at_the_header_timeout(
    server: Server,
) -> None:
    with connect(server) as sock:
        elapsed, reply = closed_after(sock)
    assert status_of(reply) == 408
    assert HEADER_TIMEOUT - 0.1 <= elapsed < HEADER_TIMEOUT + SWEEP + 0.5


def test_six_slowloris_connections_are_cut_at_the_header_timeout(server: Server) -> None:
    """One byte a second each: every one gets 408 after 2 s, others are served meanwhile."""
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    socks = [connect(server) for _ in range(6)]
    started = time.monotonic()
    outcome: dict[int, float] = {}
    replies: dict[int, bytes] = {}

    def drip(i: int, sock: socket.socket) -> None:
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(1.0)
        except OSError:
            pass

    def watch(i: int, sock: socket.socket) -> None:
        replies[i] = read_until_closed(sock)
        outcome[i] = time.monotonic() - started

    threads = [threading.Thread(target=drip, args=(i, s), daemon=True) for i, s in enumerate(socks)]
    threads += [threading.Thread(target=watch, args=(i, s)) for i, s in enumerate(socks)]
    for t in threads:
        t.start()
    assert server.client.get("/health").status_code == 200
    for t in threads[6:]:
        t.join(10)
    for sock in socks:
        sock.close()
    assert sorted(outcome) == list(range(6))
    assert all(status_of(r) == 408 for r in replies.values()), replies
    assert all(HEADER_TIMEOUT - 0.1 <= t < HEADER_TIMEOUT + SWEEP + 0.5 for t in outcome.values())


def test_a_stalled_body_is_cut_at_the_body_timeout(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            + f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
            + b'["sys.vers'
        )
        elapsed, reply = closed_after(sock)
    assert reply == b""  # no answer: the request never completed
    assert BODY_TIMEOUT - 0.1 <= elapsed < BODY_TIMEOUT + 2 * SWEEP + 0.5


def test_a_body_dripping_one_byte_a_second_is_cut_at_the_body_timeout(server: Server) -> None:
    sock = connect(server)
    sock.sendall(
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        + f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
    )
    stop = threading.Event()

    def drip() -> None:
        with_errors = OSError
        try:
            while not stop.wait(1.0):
                sock.sendall(b" ")
        except with_errors:
            pass

    dripper = threading.Thread(target=drip)
    dripper.start()
    elapsed, reply = closed_after(sock)
    stop.set()
    dripper.join()
    sock.close()
    assert reply == b""
    # Each byte earns 1/1024 s: the cut comes barely later than for a silent client.
    assert BODY_TIMEOUT - 0.1 <= elapsed < BODY_TIMEOUT + 2 * SWEEP + 0.5


def test_a_slow_but_steady_body_outlasts_the_body_timeout(server: Server) -> None:
    """4 KiB/s for 3 s: well over 1 KiB per second of waiting, so never cut."""
    body = b'["sys.version"' + b" " * (12 * 1024) + b"]"
    with connect(server) as sock:
        sock.sendall(
            b"POST /rpc HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {len(body)}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
        )
        for i in range(0, len(body), 1024):
            sock.sendall(body[i : i + 1024])
            time.sleep(0.25)
        status, _, answer = one_response(sock)
    assert status == 200, answer


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert one_response(sock)[0] == 200
        elapsed, reply = closed_after(sock)
    assert reply == b""
    assert IDLE_TIMEOUT - 0.1 <= elapsed < IDLE_TIMEOUT + 0.5


# -- requests in flight and body size -----------------------------------------------------------


def test_requests_beyond_max_in_flight_get_503_with_retry_after(server: Server) -> None:
    """Two imports hold both slots; a third body-carrying request is turned away at once."""
    holders = []
    for _ in range(2):
        sock = connect(server)
        sock.sendall(
            b"POST /import HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            + f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
        )
        holders.append(sock)
    try:
        for sock in holders:  # each has its 200 head: it is in flight
            assert b" 200 " in sock.recv(65536)
        response = server.client.post("/rpc", json=["sys.version"], headers=_auth())
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["code"] == "SERVER_BUSY"
        # "Not now" is not a fault of the server: a warning, so no one can fill the error log.
        busy = server.lines_with("POST /rpc 503")[-1]
        assert " WARNING eventodb.http: " in busy
        assert server.client.get("/health").status_code == 200  # not limited
        for sock in holders:
            sock.sendall(b"0\r\n\r\n")
            assert b'"done":true' in read_until_done(sock)
    finally:  # the slots are freed even when an assertion fails (the server serves more tests)
        for sock in holders:
            sock.close()
    assert server.client.post("/rpc", json=["sys.version"], headers=_auth()).status_code == 200


def read_until_done(sock: socket.socket) -> bytes:
    data = b""
    while b'"done":true' not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_a_huge_body_of_numbers_is_refused_before_it_is_decoded(server: Server) -> None:
    """40 MiB of integers would decode to ~700 MB: refused once its values outnumber what a
    message may hold, without buffering it all."""
    body = b'["stream.write","acc-1",{"type":"T","data":{"n":[' + b"1," * (20 * 1024 * 1024)
    body += b"1]}}]"
    before = peak_rss_bytes(server.proc.pid)
    response = server.client.post("/rpc", content=body, headers=_auth())
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "INVALID_REQUEST",
        "message": "Request body holds too many JSON values",
    }
    grown = peak_rss_bytes(server.proc.pid) - before
    assert grown < 30 * 1024 * 1024, f"peak RSS grew by {grown / 2**20:.0f} MiB"


def test_a_message_at_the_size_limit_is_not_refused_for_its_values(server: Server) -> None:
    """The values bound never refuses a request that would be stored: a 1 MiB message made
    only of small values passes it."""
    values = [0] * (512 * 1024 - 8)  # "0," each: just under 1 MiB serialised
    response = server.client.post(
        "/rpc",
        json=["stream.write", "big-1", {"type": "T", "data": {"v": values}}],
        headers=_auth(),
    )
    assert response.status_code == 200, response.text[:200]


# -- half-closed clients ------------------------------------------------------------------------


def rpc_request(body: bytes) -> bytes:
    return (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nAuthorization: Bearer %s"
        b"\r\n\r\n%s" % (len(body), ADMIN_TOKEN.encode(), body)
    )


@pytest.mark.parametrize(
    ("body", "pipelined"),
    [(b'["sys.version"]', 3), (b'["ns.list"]', 1), (b'["stream.get", "acc-1"]', 3)],
)
def test_a_client_that_shuts_down_its_sending_side_still_gets_every_answer(
    server: Server, body: bytes, pipelined: int
) -> None:
    """Requests sent, then the sending side shut down (``shutdown(SHUT_WR)``): every request
    is answered, then the server closes. (Requests that wait for the database are still being
    served when the end of the input arrives.)"""
    with connect(server) as sock:
        sock.sendall(rpc_request(body) * pipelined)
        sock.shutdown(socket.SHUT_WR)
        reply = read_until_closed(sock)
    answers = reply.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == pipelined, reply
    for answer in answers:
        assert answer.startswith(b"200 "), answer


# -- the connection cap ---------------------------------------------------------------------------


def test_connections_beyond_the_cap_are_refused_with_503_until_one_closes(
    tmp_path: Path,
) -> None:
    srv = Server([f"--token={ADMIN_TOKEN}", "--test-mode", "--max-connections=8"], workdir=tmp_path)
    try:
        srv.client.close()  # its pooled connection would count
        held = [connect(srv) for _ in range(8)]
        for sock in held:  # each one answered: each one is open and counted
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert one_response(sock)[0] == 200
        with connect(srv) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = read_until_closed(extra)
        assert status_of(reply) == 503
        assert b"retry-after: 1\r\n" in reply.lower()
        assert json.loads(reply.partition(b"\r\n\r\n")[2])["error"] == {
            "code": "SERVER_BUSY",
            "message": "Too many open connections",
        }
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            try:
                response = httpx.get(f"{srv.url}/health", timeout=5)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                break
            assert time.monotonic() < deadline, "the cap did not free up"
            time.sleep(0.05)
        for sock in held:
            sock.close()
    finally:
        assert srv.stop() == 0, srv.output()
