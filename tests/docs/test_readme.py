"""The README's examples run against the real server, so they cannot rot."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from eventodb.core import jsoncodec
from tests.docs.conftest import ROOT
from tests.support.server import Server

README = ROOT / "README.md"
_UUID = re.compile(r'"[0-9a-f]{4}(?:\.\.\.|[0-9a-f-]{32})"')
_TIME = re.compile(r'"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"')


def _examples() -> list[tuple[str, str | None]]:
    """(request body, expected output or None) for every ``curl ... -d '...'`` in the README."""
    lines = README.read_text("utf-8").splitlines()
    found: list[tuple[str, str | None]] = []
    for i, line in enumerate(lines):
        joined = line
        j = i
        while joined.rstrip().endswith("\\"):
            j += 1
            joined = joined.rstrip()[:-1] + lines[j]
        if not line.lstrip().startswith("curl") or "/rpc" not in joined:
            continue
        match = re.search(r"-d '(.+?)'", joined)
        assert match, joined
        after = lines[j + 1].strip() if j + 1 < len(lines) else ""
        found.append((match.group(1), after[2:] if after.startswith("# ") else None))
    return found


def _normalise(text: str) -> str:
    return _TIME.sub('"<time>"', _UUID.sub('"<id>"', text))


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``eventodb serve`` with no database flags: the embedded default of the README."""
    workdir = tmp_path_factory.mktemp("readme")
    server = Server(["serve"], workdir=workdir)
    yield server
    assert server.stop() == 0, server.output()


def test_the_readme_has_examples_with_outputs() -> None:
    examples = _examples()
    assert len(examples) >= 3
    assert any(expected for _, expected in examples)


def test_serve_without_flags_keeps_sqlite_files_in_eventodb_data(embedded: Server) -> None:
    assert (embedded.workdir / "eventodb-data" / "metadata.db").exists()
    assert "eventodb-data" in embedded.output()


def test_every_readme_rpc_example_answers_as_documented(embedded: Server) -> None:
    token = embedded.banner_token()
    for body, expected in _examples():
        response = embedded.client.post(
            "/rpc", content=body.encode(), headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, (body, response.text)
        if expected is not None:
            actual = jsoncodec.dumps_str(response.json())
            assert _normalise(actual) == _normalise(expected), body
