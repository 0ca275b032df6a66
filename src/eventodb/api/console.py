"""The web console's static files, served at ``/console/`` (see ``docs/CONSOLE.md``).

The files ship inside the package (``src/eventodb/console/``) and are read once, when the app is
built: each request is a dictionary lookup of an exact file name, so nothing outside that
directory can be reached whatever the path says (``..``, encoded slashes, absolute paths). Each
file is kept plain and gzip-compressed with a strong ETag per encoding; responses say
``Cache-Control: no-cache`` so browsers revalidate (a cheap ``304``) and never run a stale console
after an upgrade.

The console talks to the server only through the public ``/rpc`` and ``/subscribe`` endpoints; a
Content-Security-Policy keeps it (and anything injected into it) from loading or sending
anything anywhere else.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from eventodb.api.asgi import Headers
from eventodb.core import jsoncodec
from eventodb.core.errors import InvalidArgument

PREFIX = "/console"
INDEX = "index.html"

CONTENT_TYPES: Mapping[str, bytes] = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
}
"""Served extensions; other files in the directory are not served."""

_COMPRESSIBLE = (".html", ".js", ".css", ".svg")

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)

_WRONG_METHOD = jsoncodec.dumps(InvalidArgument("Only GET and HEAD methods allowed").envelope())


@dataclass(frozen=True, slots=True)
class Response:
    """What to answer: the app sends it as is."""

    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class _Variant:
    body: bytes
    etag: bytes


@dataclass(frozen=True, slots=True)
class _Asset:
    content_type: bytes
    plain: _Variant
    gzipped: _Variant | None


def _etag(body: bytes, suffix: str = "") -> bytes:
    return f'"{hashlib.sha256(body).hexdigest()[:20]}{suffix}"'.encode()


def _asset(name: str, body: bytes) -> _Asset | None:
    extension = name[name.rfind(".") :] if "." in name else ""
    content_type = CONTENT_TYPES.get(extension)
    if content_type is None:
        return None
    gzipped = None
    if extension in _COMPRESSIBLE:
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        if len(packed) < len(body):
            gzipped = _Variant(packed, _etag(body, "-gz"))
    return _Asset(content_type, _Variant(body, _etag(body)), gzipped)


def _etag_matches(if_none_match: str, etag: bytes) -> bool:
    """``If-None-Match`` uses the weak comparison: ``W/`` prefixes are ignored."""
    wanted = etag.decode()
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def _accepts_gzip(accept_encoding: str) -> bool:
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            q = params.strip().replace(" ", "")
            return q not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


class ConsoleFiles:
    """The console's files, in memory.

    Args:
        files: file name (relative to the console directory, ``/``-separated) → content.
    """

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self._assets: dict[str, _Asset] = {}
        for name, body in files.items():
            asset = _asset(name, body)
            if asset is not None:
                self._assets[name] = asset
        if INDEX not in self._assets:
            raise ValueError(f"the console has no {INDEX}")

    @classmethod
    def from_package(cls) -> ConsoleFiles:
        """The files shipped in the ``eventodb/console`` package directory."""
        root = resources.files("eventodb") / "console"
        files: dict[str, bytes] = {}
        pending = [("", root)]
        while pending:
            prefix, directory = pending.pop()
            for entry in directory.iterdir():
                if entry.is_dir():
                    pending.append((f"{prefix}{entry.name}/", entry))
                elif entry.is_file():
                    files[prefix + entry.name] = entry.read_bytes()
        return cls(files)

    @property
    def names(self) -> frozenset[str]:
        """The files served (relative names)."""
        return frozenset(self._assets)

    def respond(
        self, method: str, path: str, *, if_none_match: str | None, accept_encoding: str | None
    ) -> Response | None:
        """The answer to a request for ``path`` (``/console`` or below it).

        Returns:
            ``None`` when no such file exists (the app answers its usual 404).
        """
        if path == PREFIX:
            # Relative, so the console also works behind a proxy that mounts it under a prefix.
            return Response(308, [(b"location", b"console/"), (b"content-length", b"0")], b"")
        name = path[len(PREFIX) + 1 :] or INDEX
        asset = self._assets.get(name)
        if asset is None:
            return None
        if method not in ("GET", "HEAD"):
            return Response(
                405,
                [
                    (b"allow", b"GET, HEAD"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_WRONG_METHOD)).encode()),
                ],
                _WRONG_METHOD,
            )
        variant = asset.plain
        if asset.gzipped is not None and accept_encoding and _accepts_gzip(accept_encoding):
            variant = asset.gzipped
        headers: Headers = [
            (b"etag", variant.etag),
            (b"cache-control", b"no-cache"),
            (b"vary", b"Accept-Encoding"),
            *SECURITY_HEADERS,
        ]
        if if_none_match is not None and _etag_matches(if_none_match, variant.etag):
            return Response(304, headers, b"")
        headers.append((b"content-type", asset.content_type))
        if variant is asset.gzipped:
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(variant.body)).encode()))
        return Response(200, headers, b"" if method == "HEAD" else variant.body)
