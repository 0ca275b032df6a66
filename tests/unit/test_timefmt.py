"""The wire time format (docs/API.md) and microsecond conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventodb.core import timefmt


@pytest.mark.parametrize(
    ("micro", "text"),
    [
        (123450, "2024-01-15T10:30:00.12345Z"),
        (0, "2024-01-15T10:30:00Z"),
        (100000, "2024-01-15T10:30:00.1Z"),
        (1, "2024-01-15T10:30:00.000001Z"),
    ],
)
def test_fractions_are_trimmed(micro: int, text: str) -> None:
    dt = datetime(2024, 1, 15, 10, 30, 0, micro, tzinfo=UTC)
    assert timefmt.format_time(dt) == text


def test_seconds_format_truncates_the_fraction() -> None:
    dt = datetime(2024, 1, 15, 10, 30, 0, 999999, tzinfo=UTC)
    assert timefmt.format_seconds(dt) == "2024-01-15T10:30:00Z"
    assert timefmt.format_unix_seconds(0) == "1970-01-01T00:00:00Z"


@given(st.integers(min_value=0, max_value=4_000_000_000_000_000))
def test_micros_round_trip_exactly(micros: int) -> None:
    assert timefmt.to_micros(timefmt.from_micros(micros)) == micros


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-15T10:00:00Z", datetime(2025, 1, 15, 10, tzinfo=UTC)),
        ("2025-01-15T10:00:00.123456789Z", datetime(2025, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2025-01-15T12:00:00+02:00", datetime(2025, 1, 15, 10, tzinfo=UTC)),
    ],
)
def test_rfc3339_parses_to_utc(text: str, expected: datetime) -> None:
    assert timefmt.parse_time(text) == expected


@pytest.mark.parametrize(
    "text", ["2025-01-15", "2025-01-15T10:00:00", "yesterday", "2025-01-15T10:00:00.Z"]
)
def test_non_rfc3339_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid time format"):
        timefmt.parse_time(text)


def test_format_is_accepted_by_the_client_regex() -> None:
    import re

    pattern = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
    dt = datetime.now(timezone(timedelta(0)))
    assert pattern.match(timefmt.format_time(dt))
