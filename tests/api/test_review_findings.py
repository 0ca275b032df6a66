"""Deviations from SPEC found in review (each test names the rule it checks)."""

from __future__ import annotations

import pytest

from eventodb.core import tokens
from tests.api.conftest import Server, error_of

# ``bytes.fromhex`` skips ASCII whitespace between byte pairs, so these 64-character random
# parts pass as "hex" although Go's ``hex.DecodeString`` (and SPEC §3.2 step 3) refuse them.
RANDOM_WITH_WHITESPACE = ["00 00 " + "0" * 58, "00\t00\n" + "0" * 58]


@pytest.mark.parametrize("random_part", RANDOM_WITH_WHITESPACE)
def test_token_random_part_with_whitespace_is_not_valid_hex(random_part: str) -> None:
    """SPEC §3.2 step 3: R must be exactly 64 characters of valid hex."""
    assert len(random_part) == tokens.RANDOM_HEX_LEN
    with pytest.raises(tokens.TokenFormatError, match="random part is not valid hexadecimal"):
        tokens.parse(f"ns_ZGVmYXVsdA_{random_part}")


def test_token_with_whitespace_in_random_part_is_auth_invalid_token(prod_server: Server) -> None:
    """SPEC §3.4: a token that fails §3.2 is 401 AUTH_INVALID_TOKEN, not a 403 hash mismatch."""
    token = f"ns_ZGVmYXVsdA_{RANDOM_WITH_WHITESPACE[0]}"
    response = prod_server.client.post("/rpc", params={"token": token}, json=["sys.version"])
    assert error_of(response) == (401, "AUTH_INVALID_TOKEN", "Invalid token format")
