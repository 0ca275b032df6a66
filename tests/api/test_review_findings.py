"""Deviations from the documented behaviour found in review (each test names the rule it checks)."""

from __future__ import annotations

import pytest

from eventodb.core import tokens
from tests.support.server import Server, error_of

# ``bytes.fromhex`` skips ASCII whitespace between byte pairs, so these 64-character random
# parts pass as "hex" although Go's ``hex.DecodeString`` (and our token rules) refuse them.
RANDOM_WITH_WHITESPACE = ["00 00 " + "0" * 58, "00\t00\n" + "0" * 58]


@pytest.mark.parametrize("random_part", RANDOM_WITH_WHITESPACE)
def test_token_random_part_with_whitespace_is_not_valid_hex(random_part: str) -> None:
    """Token rule 3 (docs/API.md, "Tokens"): R must be exactly 64 characters of valid hex."""
    assert len(random_part) == tokens.RANDOM_HEX_LEN
    with pytest.raises(tokens.TokenFormatError, match="random part is not valid hexadecimal"):
        tokens.parse(f"ns_ZGVmYXVsdA_{random_part}")


def test_token_with_whitespace_in_random_part_is_auth_invalid_token(prod_server: Server) -> None:
    """A token that does not parse is 401 AUTH_INVALID_TOKEN, not a 403 hash mismatch."""
    token = f"ns_ZGVmYXVsdA_{RANDOM_WITH_WHITESPACE[0]}"
    response = prod_server.client.post("/rpc", params={"token": token}, json=["sys.version"])
    assert error_of(response) == (401, "AUTH_INVALID_TOKEN", "Invalid token format")


def _raw_rpc(server: Server, authorization: bytes) -> bytes:
    """POST ["sys.version"] over a raw socket (httpx refuses header values with blanks)."""
    import socket

    body = b'["sys.version"]'
    request = (
        b"POST /rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: " + authorization + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_trailing_blanks_after_a_bearer_token_are_ignored(prod_server: Server) -> None:
    """Go's net/http strips trailing blanks from header values; httptools does not."""
    token = prod_server.banner_token().encode()
    assert _raw_rpc(prod_server, b"Bearer " + token + b" \t ").startswith(b"HTTP/1.1 200")
    blank = _raw_rpc(prod_server, b"Bearer   ")
    assert blank.startswith(b"HTTP/1.1 401")
    assert b'"message":"Token required"' in blank


def test_the_server_listens_on_ipv4_and_ipv6_like_go(prod_server: Server) -> None:
    """Every interface by default. Go's ``:port`` is dual-stack."""
    import socket

    families = [socket.AF_INET]
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        families.append(socket.AF_INET6)
    except OSError:
        pass  # no IPv6 on this machine: IPv4 alone is all interfaces
    for family in families:
        host = "127.0.0.1" if family == socket.AF_INET else "::1"
        with socket.create_connection((host, prod_server.port), timeout=5) as conn:
            conn.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert conn.recv(1024).startswith(b"HTTP/1.1 200")
