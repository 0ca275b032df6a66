"""Read bodies built by the database equal the Python encoding they replaced.

``stream.get``, ``category.get`` and ``stream.last`` bodies come from the database: from the
wire JSON each message got when it was written, or rendered in SQL for rows without it (written
by another program, or before the namespace migration that added it). Either way every value
must be what the server used to encode in Python from the stored row: ``[id, type, position,
global position, data, metadata, time]`` (``category.get`` adds the stream name after the id),
the time in RFC 3339 UTC with the fraction's trailing zeros trimmed.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventodb.core import jsoncodec, timefmt
from eventodb.store.base import Store
from tests.store.fast_paths import texts
from tests.store.storage_access import RawMessages

# -- payloads ---------------------------------------------------------------------------------

awkward_texts = st.sampled_from(
    ['"', "\\", '\\"', "\x01\x1f\x7f", "\n\t\r\b\f", "\u2028\u2029", "😀𝄞", "\ufeff", "</script>"]
)
names = st.one_of(texts, awkward_texts).filter(bool)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from([2**63 - 1, -(2**63), 2**64, -(2**64) - 1, 10**30]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            1e300,
            -1e300,
            1e-300,
            -0.0,
            0.0,
            5e-324,
            1.7976931348623157e308,
            1e16,
            1e21,
            0.1 + 0.2,
            123456789.12345679,
            1.0,
            -1.5e-7,
            2.0**70,
        ]
    ),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts, awkward_texts)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(names, children, max_size=3)
    ),
    max_leaves=12,
)
objects = st.dictionaries(names, values, max_size=4)
metadatas = st.one_of(st.none(), st.just({}), objects)


@dataclass(frozen=True)
class Written:
    id: str
    stream: str
    type: str
    position: int
    global_position: int
    data: dict[str, Any]
    metadata: dict[str, Any] | None


messages = st.lists(st.tuples(names, objects, metadatas), min_size=1, max_size=3)
stream_ids = st.one_of(texts, awkward_texts)
times = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)),
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(1980, 1, 1)),
    st.sampled_from(
        [
            datetime(1970, 1, 1),
            datetime(1969, 12, 31, 23, 59, 59, 999999),
            datetime(1969, 12, 31, 23, 59, 59),
            datetime(1969, 7, 20, 20, 17, 40, 500000),
            datetime(2024, 1, 15, 10, 30),
            datetime(2024, 1, 15, 10, 30, 0, 120000),
            datetime(2024, 1, 15, 10, 30, 0, 1),
        ]
    ),
)


# -- the encoding the database replaced -------------------------------------------------------


def stream_element(w: Written, time: datetime) -> list[Any]:
    return [
        w.id, w.type, w.position, w.global_position, w.data, w.metadata, timefmt.format_time(time)
    ]  # fmt: skip


def category_element(w: Written, time: datetime) -> list[Any]:
    element = stream_element(w, time)
    return [element[0], w.stream, *element[1:]]


def same(a: Any, b: Any) -> bool:
    """JSON equality that tells integers from floats and ``true`` from ``1``.

    The sign of a zero is not compared: Message DB keeps data as jsonb, which has no -0.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def assert_same(body: str, expected: Any) -> None:
    decoded = jsoncodec.loads(body)
    assert same(decoded, expected), f"\nbody:     {body}\nexpected: {expected!r}"


async def assert_bodies(
    store: Store, ns: str, category: str, written: list[Written], at: dict[int, datetime]
) -> None:
    """Every read of ``written`` (one stream, the only one of its category) as expected."""
    stream = written[0].stream
    elements = [stream_element(w, at[w.global_position]) for w in written]
    assert_same(await store.read_stream_json(ns, stream), elements)
    assert_same(await store.read_stream_json(ns, stream, position=1, batch_size=1), elements[1:2])
    assert_same(
        await store.read_category_json(ns, category),
        [category_element(w, at[w.global_position]) for w in written],
    )
    assert_same(await store.read_last_json(ns, stream), elements[-1])
    first_type = written[0].type
    last_of_type = [e for e in elements if e[1] == first_type][-1]
    assert_same(await store.read_last_json(ns, stream, first_type), last_of_type)


examples = itertools.count()


@pytest.mark.timeout(300)
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=messages, stream_id=stream_ids, new_times=st.lists(times, min_size=3, max_size=3))
async def test_database_built_bodies_equal_the_python_encoding(
    store: Store,
    ns: str,
    batch: list[tuple[str, dict[str, Any], dict[str, Any] | None]],
    stream_id: str,
    new_times: list[datetime],
) -> None:
    category = f"bodies{next(examples)}"
    stream = f"{category}-{stream_id}"
    written = []
    for message_type, data, metadata in batch:
        message_id = str(uuid.uuid4())
        result = await store.write_message(
            ns, stream, message_type, data, metadata, message_id=message_id
        )
        written.append(
            Written(
                message_id, stream, message_type, result.position, result.global_position,
                data, metadata,
            )
        )  # fmt: skip
    async with RawMessages(store, ns) as raw:
        # From the wire JSON stored at write time.
        await assert_bodies(store, ns, category, written, await raw.times(stream))
        # Rendered by the database for rows without it, with other stored times.
        assert await raw.forget_fast_paths(stream) == len(written)
        for w, time in zip(written, new_times, strict=False):
            await raw.set_time(w.global_position, time.replace(tzinfo=UTC))
        at = await raw.times(stream)
        assert [at[w.global_position] for w in written] == [
            t.replace(tzinfo=UTC) for t in new_times[: len(written)]
        ]
        await assert_bodies(store, ns, category, written, at)
