"""docs/CONFIGURATION.md lists exactly the flags of src/eventodb/config.py, with their
environment variables, defaults and accepted values; and the docs name no flag or variable
that does not exist."""

from __future__ import annotations

import re

import pytest

from eventodb import config
from eventodb.config import Flag
from tests.docs.conftest import DOCS, ROOT

CONFIGURATION = DOCS / "CONFIGURATION.md"


def _commands() -> dict[str, tuple[Flag, ...]]:
    """Every flag table of config.py by command: ``SERVE_FLAGS`` is ``eventodb serve``, and so
    on, so a command added later is covered without touching this test."""
    return {
        name.removesuffix("_FLAGS").lower().replace("_", "-"): value
        for name, value in vars(config).items()
        if name.endswith("_FLAGS") and isinstance(value, tuple)
    }


def _flag_table(text: str, command: str) -> dict[str, list[str]]:
    """The rows of the first ``| Flag |`` table under the heading of ``command``, by flag."""
    heading = re.search(rf"^##+ `eventodb {command}`\s*$", text, re.MULTILINE)
    assert heading, f"docs/CONFIGURATION.md has no section `eventodb {command}`"
    rows: dict[str, list[str]] = {}
    in_table = False
    for line in text[heading.end() :].splitlines():
        if line.startswith("| Flag |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            match = re.fullmatch(r"`--([a-z0-9-]+)`", cells[0])
            if match:
                rows[match.group(1)] = cells
    assert rows, f"no flag table under `eventodb {command}`"
    return rows


def _rendered_default(flag: Flag) -> str | None:
    """How the docs write a flag's default (``None``: the docs describe it in words)."""
    if flag.kind == "bool":
        return "`false`"
    if flag.default is None:
        return None
    if isinstance(flag.default, float):
        return f"`{flag.default:g}`"
    return f"`{flag.default}`"


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_flag_is_documented_with_its_variable_default_and_values(command: str) -> None:
    flags = _commands()[command]
    rows = _flag_table(CONFIGURATION.read_text("utf-8"), command)
    assert set(rows) == {f.name for f in flags}, (
        f"eventodb {command}: documented flags differ from config.py "
        f"(undocumented: {sorted({f.name for f in flags} - set(rows))}, "
        f"no longer existing: {sorted(set(rows) - {f.name for f in flags})})"
    )
    for flag in flags:
        _, env, default, values, meaning = rows[flag.name]
        assert env == (f"`{flag.env}`" if flag.env else "—"), flag.name
        expected_default = _rendered_default(flag)
        if expected_default is not None:
            assert default.startswith(expected_default), (flag.name, default)
        else:
            assert default, flag.name
        for choice in flag.choices:
            assert f"`{choice}`" in values, (flag.name, choice)
        if flag.kind == "bool":
            assert values == "boolean", flag.name
        assert meaning, flag.name


def test_the_flag_checker_notices_a_missing_or_wrong_row() -> None:
    text = CONFIGURATION.read_text("utf-8")
    without_port = "\n".join(line for line in text.splitlines() if "`--port`" not in line)
    assert "port" not in _flag_table(without_port, "serve")
    assert _rendered_default(config.SERVE_FLAGS[0]) == "`8080`"


_USER_DOCS = [DOCS / "API.md", CONFIGURATION, DOCS / "DEPLOYMENT.md", ROOT / "README.md"]
_FOREIGN_FLAGS = {"max-time"}
"""Flags of other programs (curl) that the docs mention in inline code."""
_COMMAND_LINE_WORDS = {"help", "h", "full", "f", "name"}
"""``--help``, ``version --full`` and the placeholder of the flag syntax (``-name value``)."""
_OTHER_VARIABLES = re.compile(r"^\| `(EVENTODB_[A-Z_]+)` \|", re.MULTILINE)


def test_the_docs_name_only_flags_and_variables_that_exist() -> None:
    flags = {f.name for flags in _commands().values() for f in flags} | _COMMAND_LINE_WORDS
    variables = {f.env for flags in _commands().values() for f in flags if f.env}
    variables |= set(_OTHER_VARIABLES.findall(CONFIGURATION.read_text("utf-8")))
    for path in _USER_DOCS:
        if not path.exists():
            continue
        text = path.read_text("utf-8")
        for name in re.findall(r"\bEVENTODB_[A-Z_]*[A-Z]\b", text):
            assert name in variables, f"{path.name} names {name}, which nothing reads"
        for name in re.findall(r"`--([a-z][a-z0-9-]*)[^`]*`", text):
            assert name in flags | _FOREIGN_FLAGS, f"{path.name} names the flag --{name}"
