"""Tokens: generation, parsing at the last ``_`` and hashing (docs/API.md, "Tokens")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventodb.core import tokens


def test_the_well_known_test_token_hashes_to_the_spec_vector() -> None:
    assert (
        tokens.hash_token(tokens.TEST_TOKEN)
        == "6fefedfc989ca8bea8ce1b63672607c06fbd0d8b3c0667164cf4f5a02911fb52"
    )
    assert tokens.parse(tokens.TEST_TOKEN) == "default"


@pytest.mark.parametrize(
    ("namespace", "encoded"),
    [("default", "ZGVmYXVsdA"), ("tenant-a", "dGVuYW50LWE"), ("t_0_abc", "dF8wX2FiYw")],
)
def test_generated_tokens_encode_the_namespace_like_upstream(namespace: str, encoded: str) -> None:
    token = tokens.generate(namespace)
    prefix, _, random_part = token.rpartition("_")
    assert prefix == f"ns_{encoded}"
    assert len(random_part) == 64
    assert random_part == random_part.lower()
    int(random_part, 16)
    assert tokens.parse(token) == namespace


def test_two_generated_tokens_differ() -> None:
    assert tokens.generate("x") != tokens.generate("x")


def test_a_namespace_whose_encoding_contains_an_underscore_still_parses() -> None:
    token = tokens.generate("ab?")
    assert "YWI_" in token
    assert tokens.parse(token) == "ab?"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("xx_ZGVmYXVsdA_" + "0" * 64, "missing 'ns_' prefix"),
        ("ns_ZGVmYXVsdA" + "0" * 64, "expected 2 parts after prefix, got 1"),
        ("ns_ZGVmYXVsdA_" + "0" * 63, "random part must be 64 hex characters, got 63"),
        ("ns_ZGVmYXVsdA_" + "g" * 64, "random part is not valid hexadecimal"),
        ("ns_ZGVm+XVsdA_" + "0" * 64, "namespace part is not valid base64url"),
        ("ns_ZGVmYXVsdA==_" + "0" * 64, "namespace part is not valid base64url"),
        ("ns__" + "0" * 64, "namespace is empty"),
    ],
)
def test_malformed_tokens_are_refused_with_the_upstream_message(token: str, message: str) -> None:
    with pytest.raises(tokens.TokenFormatError, match=message):
        tokens.parse(token)


# ``bytes.fromhex`` skips ASCII whitespace between byte pairs, so these 64-character random
# parts pass as "hex" although Go's ``hex.DecodeString`` (and our token rules) refuse them.
RANDOM_WITH_WHITESPACE = ["00 00 " + "0" * 58, "00\t00\n" + "0" * 58]


@pytest.mark.parametrize("random_part", RANDOM_WITH_WHITESPACE)
def test_token_random_part_with_whitespace_is_not_valid_hex(random_part: str) -> None:
    """Token rule 3 (docs/API.md, "Tokens"): R must be exactly 64 characters of valid hex."""
    assert len(random_part) == tokens.RANDOM_HEX_LEN
    with pytest.raises(tokens.TokenFormatError, match="random part is not valid hexadecimal"):
        tokens.parse(f"ns_ZGVmYXVsdA_{random_part}")


def test_uppercase_hex_is_accepted() -> None:
    assert tokens.parse("ns_ZGVmYXVsdA_" + "A" * 64) == "default"


def test_matches_compares_against_the_stored_hash() -> None:
    stored = tokens.hash_token(tokens.TEST_TOKEN)
    assert tokens.matches(tokens.TEST_TOKEN, stored)
    assert not tokens.matches(tokens.TEST_TOKEN[:-1] + "1", stored)


@given(st.text(min_size=1, max_size=40))
def test_every_namespace_round_trips_through_its_token(namespace: str) -> None:
    try:
        namespace.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert tokens.parse(tokens.generate(namespace)) == namespace
