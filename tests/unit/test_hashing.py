"""hash_64 and consumer-group membership, bit-exact with the Postgres function (docs/API.md)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventodb.core.hashing import group_member, hash_64

HASH_VECTORS = [
    ("123", 2318431741638412123),
    ("1", -4266524885998034046),
    ("2", -4026655064267673757),
    ("3", -1383792015730482434),
    ("4", -6305049951010035939),
    ("", -3162216497309240828),
    ("account-123", 2828383952216582226),
]

MEMBER_VECTORS = [
    ("test-1", 0, 2),
    ("test-2", 1, 1),
    ("test-3", 0, 2),
    ("test-4", 1, 3),
    ("account-123", 1, 3),
    ("account-123+retry", 1, 3),
    ("account-", 0, 0),
]


@pytest.mark.parametrize(("value", "expected"), HASH_VECTORS)
def test_hash_64_matches_the_spec_vectors(value: str, expected: int) -> None:
    assert hash_64(value) == expected


@pytest.mark.parametrize(("stream", "of_two", "of_four"), MEMBER_VECTORS)
def test_group_member_matches_the_spec_vectors(stream: str, of_two: int, of_four: int) -> None:
    assert group_member(stream, 2) == of_two
    assert group_member(stream, 4) == of_four


def test_streams_without_an_id_belong_to_no_member() -> None:
    assert group_member("account", 2) is None
    assert not any(group_member("account", 3) == m for m in range(3))


def test_hash_64_is_signed_64_bit() -> None:
    assert -(1 << 63) <= hash_64("anything") < (1 << 63)


@given(
    stream=st.text(min_size=0, max_size=20).map(lambda s: "cat-" + s),
    size=st.integers(min_value=1, max_value=16),
)
def test_membership_partitions_every_stream_with_an_id(stream: str, size: int) -> None:
    owners = [m for m in range(size) if group_member(stream, size) == m]
    assert len(owners) == 1
    assert owners[0] == group_member(stream, size)
