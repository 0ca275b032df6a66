"""Error-code table (docs/API.md, "Errors"), UUID spellings and the exact JSON codec."""

from __future__ import annotations

import pytest

from eventodb.core import ids, jsoncodec
from eventodb.core.errors import HTTP_STATUS, ErrorCode, VersionConflict

DOCUMENTED_STATUSES = {
    "INVALID_REQUEST": 400,
    "METHOD_NOT_FOUND": 404,
    "AUTH_REQUIRED": 401,
    "AUTH_INVALID_TOKEN": 401,
    "AUTH_UNAUTHORIZED": 403,
    "NAMESPACE_NOT_FOUND": 404,
    "STREAM_NOT_FOUND": 404,
    "NAMESPACE_EXISTS": 409,
    "STREAM_VERSION_CONFLICT": 409,
    "DUPLICATE_MESSAGE_ID": 409,
    "BACKEND_ERROR": 500,
    "INTERNAL_ERROR": 500,
    "NOT_FOUND": 404,
    "CLEAR_FAILED": 500,
    "SERVER_BUSY": 503,  # ours: a limit of the server is reached (docs/API.md, "Limits")
}


def test_every_code_has_the_spec_status() -> None:
    assert {code.value: status for code, status in HTTP_STATUS.items()} == DOCUMENTED_STATUSES
    assert set(ErrorCode) == set(HTTP_STATUS)


def test_version_conflict_envelope_is_the_detailed_form() -> None:
    error = VersionConflict("s-1", 3, 5)
    assert error.http_status == 409
    assert error.envelope() == {
        "error": {
            "code": "STREAM_VERSION_CONFLICT",
            "message": "Expected version 3, stream is at version 5",
            "details": {"expected": 3, "actual": 5},
        }
    }


CANONICAL = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


@pytest.mark.parametrize(
    "spelling",
    [
        CANONICAL,
        CANONICAL.upper(),
        CANONICAL.replace("-", ""),
        "{" + CANONICAL + "}",
        "urn:uuid:" + CANONICAL,
        "URN:UUID:" + CANONICAL.upper(),
    ],
)
def test_go_uuid_spellings_become_canonical(spelling: str) -> None:
    assert ids.canonical_uuid(spelling) == CANONICAL


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-a-uuid",
        CANONICAL[:-1],
        CANONICAL + "0",
        CANONICAL.replace("-", "_"),
        "{" + CANONICAL,
    ],
)
def test_non_uuids_are_refused(bad: str) -> None:
    assert ids.canonical_uuid(bad) is None


def test_new_ids_are_canonical_version_7() -> None:
    value = ids.new_id()
    assert ids.canonical_uuid(value) == value
    assert value[14] == "7"


def test_integers_wider_than_64_bits_round_trip_exactly() -> None:
    raw = b'{"big":123456789012345678901234567890,"neg":-98765432109876543210,"f":1.5}'
    value = jsoncodec.loads(raw)
    assert value["big"] == 123456789012345678901234567890
    assert jsoncodec.loads(jsoncodec.dumps(value)) == value


@pytest.mark.parametrize("raw", [b"[1,]", b"NaN", b"\xff", b'"\\ud800"', b"{"])
def test_invalid_json_is_refused(raw: bytes) -> None:
    with pytest.raises(jsoncodec.JSONError):
        jsoncodec.loads(raw)


def test_depth_is_measured_in_containers() -> None:
    assert not jsoncodec.depth_exceeds([[[1]]], 3)
    assert jsoncodec.depth_exceeds([[[[1]]]], 3)
    assert jsoncodec.find_nul({"a": ["x\x00"]})
    assert jsoncodec.find_nul({"k\x00": 1})
    assert not jsoncodec.find_nul({"a": ["x"]})
