"""The NDJSON record format of export/import: time spellings and line layout."""

from __future__ import annotations

import json

import pytest

from eventodb.transfer import records


@pytest.mark.parametrize(
    ("given", "kept", "whole"),
    [
        ("2025-01-15T10:00:07.24387Z", "2025-01-15T10:00:07.24387Z", "2025-01-15T10:00:07Z"),
        ("2025-01-15T10:00:07Z", "2025-01-15T10:00:07Z", "2025-01-15T10:00:07Z"),
        ("2025-01-15T10:00:07.999999Z", "2025-01-15T10:00:07.999999Z", "2025-01-15T10:00:07Z"),
        # Other spellings (a Go server, offsets, trailing zeros) become ours.
        ("2025-01-15T10:00:07.500000Z", "2025-01-15T10:00:07.5Z", "2025-01-15T10:00:07Z"),
        ("2025-01-15T12:00:07.5+02:00", "2025-01-15T10:00:07.5Z", "2025-01-15T10:00:07Z"),
        ("2025-01-15T10:00:07.1234567Z", "2025-01-15T10:00:07.123456Z", "2025-01-15T10:00:07Z"),
    ],
)
def test_times_keep_microseconds_or_drop_the_fraction(given: str, kept: str, whole: str) -> None:
    assert records.canonical_time(given) == kept
    assert records.whole_seconds(given) == whole


def test_a_bad_time_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid time format"):
        records.canonical_time("yesterday")


def test_a_category_message_becomes_one_compact_line_in_key_order() -> None:
    message = ["id-1", "a-1", "T", 0, 7, {"x": [1, 2.5]}, None, "2025-01-15T10:00:07.1Z"]
    line = records.from_category_message(message)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert b", " not in line
    parsed = json.loads(line)
    assert list(parsed) == ["id", "stream", "type", "pos", "gpos", "data", "meta", "time"]
    assert list(parsed.values()) == message
    assert json.loads(records.from_category_message(message, whole=True))["time"] == (
        "2025-01-15T10:00:07Z"
    )


@pytest.mark.parametrize(
    ("line", "gpos"),
    [(b'{"gpos": 5}', 5), (b'{"gpos": true}', None), (b"{oops", None), (b"[1]", None)],
)
def test_the_global_position_of_a_line(line: bytes, gpos: int | None) -> None:
    assert records.global_position_of(line) == gpos
