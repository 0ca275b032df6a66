"""Stream-name rules: every row of the table in docs/API.md."""

from __future__ import annotations

import pytest

from eventodb.core.streams import cardinal_id, category, stream_id

ROWS = [
    # name, category, id, cardinal id, is category
    ("account-123", "account", "123", "123", False),
    ("account-123+retry", "account", "123+retry", "123", False),
    ("account-a-b", "account", "a-b", "a-b", False),
    ("account", "account", None, None, True),
    ("account-", "account", "", "", False),
    ("-x", "", "x", "x", False),
    ("test-stream_123.abc", "test", "stream_123.abc", "stream_123.abc", False),
]


@pytest.mark.parametrize(("name", "cat", "ident", "cardinal", "is_cat"), ROWS)
def test_name_functions_follow_the_spec_table(
    name: str, cat: str, ident: str | None, cardinal: str | None, is_cat: bool
) -> None:
    assert category(name) == cat
    assert stream_id(name) == ident
    assert cardinal_id(name) == cardinal
    assert (stream_id(name) is None) is is_cat  # no id: the name is a whole category


def test_cardinal_id_stops_at_the_first_plus_only() -> None:
    assert cardinal_id("a-1+x+y") == "1"
    assert stream_id("a-1+x+y") == "1+x+y"
