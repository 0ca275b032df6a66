"""Serving the console's files: content types, caching, compression, no way out of the
directory, and ``--no-console`` (real server over HTTP; no browser needed)."""

from __future__ import annotations

import gzip
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest

from eventodb.api.console import ConsoleFiles
from eventodb.config import load_settings
from tests.console.conftest import ROOT
from tests.support.raw_http import raw_post
from tests.support.server import ADMIN_TOKEN, Server, error_of

CONSOLE_DIR = ROOT / "src" / "eventodb" / "console"
SHIPPED = sorted(p.name for p in CONSOLE_DIR.iterdir() if p.is_file())


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("console-static")
    srv = Server([f"--token={ADMIN_TOKEN}", "--test-mode"], workdir=workdir)
    yield srv
    assert srv.stop() == 0, srv.output()


def test_console_redirects_to_the_directory_so_relative_links_work(plain: Server) -> None:
    response = plain.client.get("/console")
    assert response.status_code == 308
    assert response.headers["location"] == "console/"
    assert plain.client.get("/console", follow_redirects=True).url.path == "/console/"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("", "text/html; charset=utf-8"),
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_files_are_served_with_their_content_type_and_security_headers(
    plain: Server, name: str, content_type: str
) -> None:
    response = plain.client.get(f"/console/{name}", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.content == (CONSOLE_DIR / (name or "index.html")).read_bytes()
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert "script-src 'self'" in policy


def test_every_shipped_file_is_served(plain: Server) -> None:
    for name in SHIPPED:
        response = plain.client.get(f"/console/{name}")
        assert response.status_code == 200, name


def test_every_shipped_file_is_package_data() -> None:
    """A file the wheel would leave out would be a 404 on an installed server."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["eventodb"]
    for name in SHIPPED:
        assert any(fnmatch(f"console/{name}", p) for p in patterns), name


def test_unchanged_files_revalidate_with_a_304(plain: Server) -> None:
    first = plain.client.get("/console/app.js", headers={"Accept-Encoding": "identity"})
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "no-cache"
    again = plain.client.get(
        "/console/app.js", headers={"If-None-Match": etag, "Accept-Encoding": "identity"}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    weak = plain.client.get(
        "/console/app.js",
        headers={"If-None-Match": f'"x", W/{etag}', "Accept-Encoding": "identity"},
    )
    assert weak.status_code == 304
    stale = plain.client.get(
        "/console/app.js", headers={"If-None-Match": '"stale"', "Accept-Encoding": "identity"}
    )
    assert stale.status_code == 200


def test_gzip_is_served_to_clients_that_accept_it_with_its_own_etag(plain: Server) -> None:
    raw = (CONSOLE_DIR / "browse.js").read_bytes()
    response = plain.client.get("/console/browse.js", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == raw  # httpx decodes it
    assert int(response.headers["content-length"]) < len(raw) // 2
    plain_etag = plain.client.get(
        "/console/browse.js", headers={"Accept-Encoding": "identity"}
    ).headers["etag"]
    assert response.headers["etag"] != plain_etag
    refused = plain.client.get("/console/browse.js", headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in refused.headers


def test_head_answers_the_headers_without_a_body(plain: Server) -> None:
    response = plain.client.head("/console/style.css", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len((CONSOLE_DIR / "style.css").read_bytes())


def test_other_methods_are_405(plain: Server) -> None:
    response = plain.client.post("/console/index.html", content=b"x")
    assert error_of(response) == (405, "INVALID_REQUEST", "Only GET and HEAD methods allowed")
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "path",
    [
        "/console/../pyproject.toml",
        "/console/../../../../etc/passwd",
        "/console/..%2f..%2fpyproject.toml",
        "/console/%2e%2e/api/app.py",
        "/console/%2e%2e%2fapi%2fapp.py",
        "/console//etc/passwd",
        "/console/./index.html",
        "/console/%2fetc%2fpasswd",
        "/console/__init__.py",
        "/console/../api/console.py",
        "/console/index.html/",
        "/console/nope.js",
        "/consolex",
    ],
)
def test_nothing_outside_the_console_files_is_reachable(plain: Server, path: str) -> None:
    status, body = raw_post(plain, path, b"", [], method="GET")
    assert status == 404, (path, body[:200])
    assert b"NOT_FOUND" in body


def test_in_memory_files_only_serve_known_types_and_compress_when_it_pays() -> None:
    files = ConsoleFiles(
        {
            "index.html": b"<!doctype html>" + b"x" * 2000,
            "tiny.js": b"1",
            "notes.txt": b"secret",
            "views/list.js": b"export {}",
        }
    )
    assert files.names == frozenset({"index.html", "tiny.js", "views/list.js"})
    big = files.respond("GET", "/console/", if_none_match=None, accept_encoding="gzip")
    tiny = files.respond("GET", "/console/tiny.js", if_none_match=None, accept_encoding="gzip")
    assert big is not None
    assert tiny is not None
    assert gzip.decompress(big.body).startswith(b"<!doctype html>")
    assert tiny.body == b"1"  # gzip would be larger
    assert (
        files.respond("GET", "/console/notes.txt", if_none_match=None, accept_encoding=None) is None
    )
    with pytest.raises(ValueError, match=r"index\.html"):
        ConsoleFiles({"app.js": b""})


def test_packaged_console_is_what_the_source_directory_holds() -> None:
    assert ConsoleFiles.from_package().names == frozenset(SHIPPED)


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--no-console"], {}), (["-no-console=true"], {}), ([], {"EVENTODB_NO_CONSOLE": "true"})],
)
def test_the_console_can_be_turned_off(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    assert load_settings(args, env).no_console is True
    srv = Server([f"--token={ADMIN_TOKEN}", "--test-mode", *args], workdir=tmp_path, env=env)
    try:
        for path in ("/console", "/console/", "/console/app.js"):
            assert error_of(srv.client.get(path)) == (404, "NOT_FOUND", "Endpoint not found")
        assert srv.client.get("/health").status_code == 200
    finally:
        assert srv.stop() == 0, srv.output()


def test_the_console_is_on_by_default() -> None:
    assert load_settings([], {}).no_console is False
    assert load_settings(["-no-console=false"], {"EVENTODB_NO_CONSOLE": "true"}).no_console is False
