"""Requests over a bare socket, for what httpx refuses to send or would normalise (header
values such as ``Bearer `` or with trailing blanks, paths with ``..``)."""

from __future__ import annotations

import socket

from tests.support.server import Server


def raw_reply(
    server: Server, path: str, body: bytes, headers: list[str], *, method: str = "POST"
) -> bytes:
    """The whole reply, status line and headers included, to one request on its own
    connection."""
    head = [f"{method} {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}"]
    head += headers
    head += ["Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall("\r\n".join(head).encode("latin-1") + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def raw_post(
    server: Server, path: str, body: bytes, headers: list[str], *, method: str = "POST"
) -> tuple[int, bytes]:
    """(status, body) of a request sent as :func:`raw_reply` sends it."""
    reply = raw_reply(server, path, body, headers, method=method)
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
