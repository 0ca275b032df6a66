"""The client's parts that do no I/O: error mapping, SSE parsing, resume positions, message
ids, retry decisions, consumer bookkeeping."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from eventodb.client import (
    AuthInvalidToken,
    BackendError,
    ClearFailed,
    ConsumerGroup,
    EventoDBError,
    ExpectedVersionError,
    InternalError,
    InvalidRequest,
    Message,
    Poke,
    StreamNotFound,
    TransportError,
    UnexpectedResponse,
    new_message_id,
)
from eventodb.client.config import Attempts, ClientConfig
from eventodb.client.consumers import ConsumerCore
from eventodb.client.errors import ERRORS_BY_CODE, error_from_response
from eventodb.client.sse import EventParser, Target
from eventodb.core.errors import HTTP_STATUS, ErrorCode


def envelope(code: str, message: str = "m", **details: object) -> bytes:
    error: dict[str, object] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json.dumps({"error": error}).encode()


def test_every_server_error_code_has_its_exception_class() -> None:
    assert set(ERRORS_BY_CODE) == {code.value for code in ErrorCode}
    for code, status in HTTP_STATUS.items():
        error = error_from_response(status, envelope(code.value, "text"))
        assert type(error) is ERRORS_BY_CODE[code.value]
        assert (error.code, error.message, error.status) == (code.value, "text", status)
    assert isinstance(error_from_response(500, envelope("BACKEND_ERROR")), BackendError)
    assert isinstance(error_from_response(500, envelope("INTERNAL_ERROR")), InternalError)
    assert isinstance(error_from_response(500, envelope("CLEAR_FAILED")), ClearFailed)
    assert isinstance(error_from_response(404, envelope("STREAM_NOT_FOUND")), StreamNotFound)


def test_error_details_and_unknown_or_foreign_answers() -> None:
    conflict = error_from_response(409, envelope("STREAM_VERSION_CONFLICT", expected=3, actual=5))
    assert isinstance(conflict, ExpectedVersionError)
    assert (conflict.expected, conflict.actual) == (3, 5)
    assert str(conflict) == "STREAM_VERSION_CONFLICT: m"
    newer = error_from_response(429, envelope("RATE_LIMITED"))
    assert type(newer) is EventoDBError
    assert newer.code == "RATE_LIMITED"
    plain = error_from_response(400, b"Invalid position parameter")
    assert isinstance(plain, InvalidRequest)
    assert plain.message == "Invalid position parameter"
    page = error_from_response(502, b"<html>Bad Gateway</html>")
    assert isinstance(page, UnexpectedResponse)
    assert page.status == 502
    assert "Bad Gateway" in page.message
    assert isinstance(error_from_response(401, envelope("AUTH_INVALID_TOKEN")), AuthInvalidToken)


def test_the_event_parser_yields_pokes_and_skips_comments() -> None:
    parser = EventParser()
    lines = [
        ": ready",
        "",
        "event: poke",
        'data: {"stream":"a-1","position":2,"globalPosition":9}',
        "",
        ": ping",
        "",
        "event: other",
        "data: {}",
        "",
        "event:poke",
        'data:{"stream":"b","position":0,"globalPosition":10}',
        "",
    ]
    pokes = [p for p in (parser.feed(line) for line in lines) if p is not None]
    assert pokes == [Poke("a-1", 2, 9), Poke("b", 0, 10)]
    parser.feed("event: poke")
    parser.feed('data: {"stream": "x"}')
    with pytest.raises(ValueError, match="malformed poke"):
        parser.feed("")


def test_targets_build_queries_and_resume_after_the_highest_poke() -> None:
    stream = Target("stream", "a-1", 0)
    assert stream.params() == {"stream": "a-1", "position": "0"}
    stream.delivered(Poke("a-1", 4, 100))
    assert stream.position == 5
    group = Target("category", "a", 1, ConsumerGroup(1, 3))
    assert group.params() == {"category": "a", "position": "1", "consumer": "1", "size": "3"}
    everything = Target("all", "", 1)
    everything.delivered(Poke("x-1", 0, 7))
    everything.delivered(Poke("y-1", 0, 6))  # out of order: never backwards
    assert everything.params() == {"all": "true", "position": "8"}


def test_message_ids_are_time_ordered_uuid7() -> None:
    first = new_message_id()
    time.sleep(0.002)
    second = new_message_id()
    parsed = uuid.UUID(first)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert str(parsed) == first
    assert first < second
    assert len({new_message_id() for _ in range(1000)}) == 1000
    millis = int(first.replace("-", "")[:12], 16)
    assert abs(millis / 1000 - time.time()) < 5


def test_messages_decode_both_wire_shapes() -> None:
    row = ["i", "T", 3, 12, {"a": 1}, None, "2024-01-15T10:30:00.12345Z"]
    message = Message.from_stream_row("acct-1", row)
    assert message.time == datetime(2024, 1, 15, 10, 30, 0, 123450, tzinfo=UTC)
    assert message.category == "acct"
    category_row = ["i", "acct-1", "T", 3, 12, {"a": 1}, None, "2024-01-15T10:30:00Z"]
    assert Message.from_category_row(category_row).stream_name == "acct-1"


def test_retry_decisions() -> None:
    config = ClientConfig(retries=2, backoff=0.1, max_backoff=0.15)
    request = httpx.Request("POST", "http://x/rpc")
    lost = httpx.ReadError("reset", request=request)
    never_sent = httpx.ConnectError("refused", request=request)

    reads = Attempts(config, idempotent=True)
    assert 0.05 <= reads.after_error(lost) <= 0.1
    assert 0.075 <= reads.after_error(lost) <= 0.15
    with pytest.raises(TransportError):
        reads.after_error(lost)

    creates = Attempts(config, idempotent=False)
    assert creates.after_error(never_sent) > 0
    with pytest.raises(TransportError):
        creates.after_error(lost)
    assert creates.after_response(httpx.Response(503, request=request)) is not None
    with pytest.raises(UnexpectedResponse):
        creates.after_response(httpx.Response(502, request=request))
    assert Attempts(config, idempotent=True).after_response(httpx.Response(504, request=request))
    assert Attempts(config, idempotent=True).after_response(httpx.Response(200)) is None
    assert config.persistent().retries > 1_000_000


def test_consumer_bookkeeping_stores_every_interval_and_at_the_end() -> None:
    core = ConsumerCore(
        "acct",
        group=None,
        batch_size=10,
        position_update_interval=3,
        correlation=None,
        start_position=1,
    )
    core.resume(None)
    assert core.position == 1
    assert core.pending() is None

    def message(gp: int) -> Message:
        return Message("i", "acct-1", "T", 0, gp, {}, None, datetime.now(UTC))

    stores = []
    for gp in (4, 7, 9, 12):
        due = core.handled(message(gp))
        if due is not None:
            stores.append(due)
            core.stored(due)
    assert stores == [9]
    assert core.pending() == 12
    assert core.position == 13
    core.stored(12)
    assert core.pending() is None
    core.resume(20)
    assert core.position == 21
    assert core.read_options()["position"] == 21


def test_only_a_consumer_of_every_category_reads_up_to_the_head() -> None:
    def message(gp: int) -> Message:
        return Message("i", "acct-1", "T", 0, gp, {}, None, datetime.now(UTC))

    assert not ConsumerCore("acct").reads_up_to_head
    core = ConsumerCore("")
    assert core.reads_up_to_head
    batch = [message(gp) for gp in (1, 2, 5)]
    assert core.within_head(batch, None) == (batch, False)
    assert core.within_head(batch, 5) == (batch, False)
    assert core.within_head(batch, 4) == (batch[:2], True)
    assert core.within_head(batch, 0) == ([], True)
    assert core.within_head([], 0) == ([], False)
