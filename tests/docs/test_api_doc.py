"""docs/API.md is a session a reader can replay: its console examples run against the real
server and print what the page shows; and the page covers every method and error code."""

from __future__ import annotations

import re

from eventodb.api.rpc import METHODS
from eventodb.core.errors import HTTP_STATUS, ErrorCode
from tests.docs.conftest import DOCS
from tests.docs.sessions import (
    Command,
    Shell,
    check_session,
    console_commands,
    normalise,
    outputs_match,
)

API = DOCS / "API.md"


def _api_text() -> str:
    return API.read_text("utf-8")


def test_every_console_example_prints_what_the_page_shows(doc_shell: Shell) -> None:
    commands = console_commands(_api_text())
    assert len(commands) >= 40, "the examples of docs/API.md were not found"
    check_session(doc_shell, commands, "docs/API.md")


def test_every_rpc_method_has_a_section_and_an_example() -> None:
    text = _api_text()
    called = " ".join(c.text for c in console_commands(text))
    for name in METHODS:
        assert f"### `{name}`" in text, f"docs/API.md has no section for {name}"
        assert f'["{name}"' in called, f"docs/API.md has no example calling {name}"


def test_every_error_code_is_in_the_table_with_its_status() -> None:
    text = _api_text()
    for code in ErrorCode:
        row = re.search(rf"^\| `{code.value}` \| (\d{{3}})", text, re.MULTILINE)
        assert row, f"docs/API.md: no row for {code.value} in the error table"
        assert int(row.group(1)) == HTTP_STATUS[code], code


def test_the_example_checker_notices_a_wrong_output() -> None:
    """The comparison is not vacuous: a different value, status or header fails it."""
    assert outputs_match('{"position":0}', '{"position": 0}')
    assert not outputs_match('{"position":0}', '{"position":1}')
    assert not outputs_match("[1, 2]", "[1, 2, 3]")
    response = 'HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ndate: x\r\n\r\n{"a":1}'
    documented = 'HTTP/1.1 409 Conflict\ncontent-type: application/json\n\n{"a":1}'
    assert outputs_match(documented, response)
    assert not outputs_match('HTTP/1.1 200 OK\n\n{"a":1}', response)
    assert not outputs_match('HTTP/1.1 409 Conflict\nx-other: 1\n\n{"a":1}', response)
    assert not outputs_match(": ready\n\nevent: poke", ": ready\n")
    token = "ns_dGVuYW50LWE_" + "ab" * 32
    assert normalise(token) == normalise("ns_dGVuYW50LWE_" + "0" * 64)
    assert normalise(token) != normalise("ns_dGVuYW50LWI_" + "0" * 64)


def test_console_blocks_are_parsed_with_continuations_and_outputs() -> None:
    markdown = "\n".join(
        [
            "```console",
            "$ curl -s a \\",
            "    -d 'b'",
            "out 1",
            "$ true",
            "```",
            "```sh",
            "$ not a console block",
            "```",
        ]
    )
    assert console_commands(markdown) == [
        Command("curl -s a \\\n    -d 'b'", "out 1", 2),
        Command("true", "", 5),
    ]
