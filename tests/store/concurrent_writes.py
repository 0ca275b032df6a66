"""A concurrent write workload whose accepted/rejected outcomes do not depend on the interleaving.

Many tasks write at once, mixing three kinds of writes:

* races: every task of a race stream tries the expected versions -1, 0, ... ``RACE_ATTEMPTS - 2``
  in turn. Whatever the interleaving, each of those versions is won by exactly one attempt (a
  task's attempt at ``e`` happens after its attempt at ``e - 1`` left the stream at ``e`` or
  beyond, and only a win at ``e`` writes position ``e + 1``), so every race stream ends with
  ``RACE_ATTEMPTS`` messages and the number of conflicts is fixed too;
* piles: plain appends to streams of several categories (they all succeed);
* repeated ids: groups of tasks write one id, with the same content (one write, the others
  idempotent retries answered with its positions) or with different content, some in another
  category (one write, the others ``DuplicateMessageId``).

:func:`run_workload` runs it and :func:`check_outcomes` checks every outcome against what the
store holds afterwards; the summary it returns is the same for every correct store, batched or
not.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from eventodb.core.errors import DuplicateMessageId, VersionConflict
from eventodb.store.base import Message, Store, WriteResult

TASKS = 64
RACE_STREAMS = 3
RACE_ATTEMPTS = 6
GROUP_SIZE = 8


@dataclass(frozen=True, slots=True)
class Attempt:
    """One write of the workload and what the store answered."""

    kind: str
    """``race``, ``pile``, ``same`` (repeated id, same content) or ``clash`` (different)."""
    id: str
    stream: str
    data: dict[str, Any]
    expected: int | None
    outcome: WriteResult | VersionConflict | DuplicateMessageId


def _group_id(run: str, group: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{group}"))


async def _task(store: Store, ns: str, run: str, t: int, out: list[Attempt]) -> None:
    race = f"race-{t % RACE_STREAMS}"
    group = t // GROUP_SIZE
    for step in range(RACE_ATTEMPTS):
        await _attempt(store, ns, out, "race", race, {"t": t}, step - 1)
        await _attempt(store, ns, out, "pile", f"pile{t % 8}-{t % 3}", {"t": t, "s": step}, None)
        if step == 2:
            message_id = _group_id(run, group)
            if group % 2 == 0:
                await _attempt(
                    store, ns, out, "same", f"same-{group}", {"g": group}, None, message_id
                )
            else:
                # Different content, half of it in another category (no shared lock).
                stream = f"clash-{group}" if t % 2 else f"other{t}-{group}"
                await _attempt(store, ns, out, "clash", stream, {"t": t}, None, message_id)


async def _attempt(
    store: Store,
    ns: str,
    out: list[Attempt],
    kind: str,
    stream: str,
    data: dict[str, Any],
    expected: int | None,
    message_id: str | None = None,
) -> None:
    message_id = message_id or str(uuid.uuid4())
    outcome: WriteResult | VersionConflict | DuplicateMessageId
    try:
        outcome = await store.write_message(
            ns, stream, "T", data, message_id=message_id, expected_version=expected
        )
    except (VersionConflict, DuplicateMessageId) as exc:
        outcome = exc
    out.append(Attempt(kind, message_id, stream, data, expected, outcome))


async def run_workload(store: Store, ns: str) -> list[Attempt]:
    """Run the workload with :data:`TASKS` concurrent tasks; every attempt with its outcome."""
    run = str(uuid.uuid4())
    attempts: list[Attempt] = []
    await asyncio.gather(*(_task(store, ns, run, t, attempts) for t in range(TASKS)))
    return attempts


def check_outcomes(attempts: list[Attempt], stored: list[Message]) -> Counter[tuple[str, str]]:
    """Assert that the outcomes agree with each other and with ``stored`` (the whole namespace);
    return the count of each (kind, outcome), which every correct store must reproduce."""
    by_gp = {m.global_position: m for m in stored}
    assert len(by_gp) == len(stored), "a global position is used twice"
    by_id = {m.id: m for m in stored}
    assert len(by_id) == len(stored), "an id is stored twice"
    streams: dict[str, list[int]] = {}
    for m in stored:
        streams.setdefault(m.stream_name, []).append(m.position)
    for name, positions in streams.items():
        assert sorted(positions) == list(range(len(positions))), f"{name}: {positions}"

    written = [
        a for a in attempts if isinstance(a.outcome, WriteResult) and not a.outcome.duplicate
    ]
    assert sorted(a.id for a in written) == sorted(by_id), "stored and acknowledged differ"
    for a in written:
        assert isinstance(a.outcome, WriteResult)
        m = by_id[a.id]
        assert (m.stream_name, m.position, m.global_position, m.data) == (
            a.stream,
            a.outcome.position,
            a.outcome.global_position,
            a.data,
        )

    for a in attempts:
        if isinstance(a.outcome, WriteResult) and a.outcome.duplicate:
            original = by_id[a.id]  # an idempotent retry answers with the original positions
            assert (a.outcome.position, a.outcome.global_position) == (
                original.position,
                original.global_position,
            )
            assert (a.stream, a.data) == (original.stream_name, original.data)
        elif isinstance(a.outcome, DuplicateMessageId):
            assert a.outcome.stream_name == by_id[a.id].stream_name
            assert a.data != by_id[a.id].data
        elif isinstance(a.outcome, VersionConflict):
            assert a.expected is not None
            assert a.outcome.actual > a.expected  # the stream only grows
            assert a.outcome.actual <= len(streams[a.stream]) - 1

    races: dict[str, Counter[int]] = {}
    for a in attempts:
        if a.kind == "race" and isinstance(a.outcome, WriteResult):
            assert a.expected is not None
            assert a.outcome.position == a.expected + 1
            races.setdefault(a.stream, Counter())[a.expected] += 1
    assert len(races) == RACE_STREAMS
    for name, wins in races.items():
        assert wins == Counter(range(-1, RACE_ATTEMPTS - 1)), f"{name}: winners {wins}"
        assert len(streams[name]) == RACE_ATTEMPTS

    for message_id in {a.id for a in attempts if a.kind in ("same", "clash")}:
        group = [a for a in attempts if a.id == message_id]
        assert len(group) == GROUP_SIZE
        firsts = [
            a for a in group if isinstance(a.outcome, WriteResult) and not a.outcome.duplicate
        ]
        assert len(firsts) == 1, f"{message_id}: {[a.outcome for a in group]}"

    return Counter((a.kind, _outcome_name(a.outcome)) for a in attempts)


def _outcome_name(outcome: WriteResult | VersionConflict | DuplicateMessageId) -> str:
    if isinstance(outcome, WriteResult):
        return "retry" if outcome.duplicate else "written"
    return type(outcome).__name__


def expected_summary() -> Counter[tuple[str, str]]:
    """The outcome counts of the workload on any correct store."""
    groups = TASKS // GROUP_SIZE
    same_groups = (groups + 1) // 2
    clash_groups = groups // 2
    race_wins = RACE_STREAMS * RACE_ATTEMPTS
    return Counter(
        {
            ("race", "written"): race_wins,
            ("race", "VersionConflict"): TASKS * RACE_ATTEMPTS - race_wins,
            ("pile", "written"): TASKS * RACE_ATTEMPTS,
            ("same", "written"): same_groups,
            ("same", "retry"): same_groups * (GROUP_SIZE - 1),
            ("clash", "written"): clash_groups,
            ("clash", "DuplicateMessageId"): clash_groups * (GROUP_SIZE - 1),
        }
    )
