"""The example programs in examples/ run as real processes against the real server: the
consumer resumes after ``kill -9`` at a random message handling at most its position update
interval again, stops gracefully on SIGTERM, and group workers share a category exactly once."""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from eventodb.client import EventoDB
from tests.client.conftest import Tenant

pytestmark = pytest.mark.timeout(90)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HANDLED = re.compile(r"handled (\d+)")


class Example:
    """An example program running against the test's namespace; its output lines are read by
    a thread as they come."""

    def __init__(self, tenant: Tenant, script: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTODB_")}
        env |= {"EVENTODB_URL": tenant.url, "EVENTODB_TOKEN": tenant.token}
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def _drain(self, wait: float) -> bool:
        """Move arrived lines to :attr:`lines`; False once the output has ended."""
        try:
            line = self._queue.get(timeout=wait)
            while True:
                if line is None:
                    return False
                self.lines.append(line)
                line = self._queue.get_nowait()
        except queue.Empty:
            return True

    def handled(self) -> list[int]:
        """Global positions of the messages handled so far, in order."""
        self._drain(0.0)
        return [int(m.group(1)) for line in self.lines if (m := HANDLED.search(line))]

    def wait_handled(self, done: Callable[[list[int]], bool], timeout: float = 20.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while not done(self.handled()):
            assert self.proc.poll() is None or not self._queue.empty(), self.output()
            assert time.monotonic() < deadline, self.output()
            self._drain(0.05)
        return self.handled()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.wait()

    def wait(self) -> int:
        """The exit status, once the program has ended and all its output is read."""
        code = self.proc.wait(20)
        deadline = time.monotonic() + 10
        while self._drain(0.1):
            assert time.monotonic() < deadline
        return code

    def output(self) -> str:
        self._drain(0.0)
        return "\n".join(self.lines)


def write_deposits(db: EventoDB, count: int) -> list[int]:
    return [
        db.write(f"account-{n % 5}", "Deposited", {"amount": n}).global_position
        for n in range(count)
    ]


def test_the_producer_writes_deposits(tenant: Tenant) -> None:
    producer = Example(tenant, "sdk_producer.py", "7")
    assert producer.wait() == 0, producer.output()
    assert len([line for line in producer.lines if line.startswith("wrote account-")]) == 7
    with tenant.sync() as db:
        assert [m.data["amount"] for m in db.iter_category("account")] == list(range(10, 17))


def test_the_consumer_resumes_after_kill_9_handling_at_most_its_interval_again(
    tenant: Tenant,
) -> None:
    interval = 7
    seed = random.randrange(1 << 30)
    kill_after = random.Random(seed).randint(1, 59)
    with tenant.sync() as db:
        positions = write_deposits(db, 60)

        first = Example(tenant, "sdk_consumer.py", "--interval", str(interval))
        first.wait_handled(lambda h: len(h) >= kill_after)
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        before = first.handled()

        second = Example(tenant, "sdk_consumer.py", "--interval", str(interval))
        # One message written after it started: handling it shows the second consumer is in
        # its loop (its SIGTERM handler installed) even when the first one handled everything.
        positions += write_deposits(db, 1)
        after = second.wait_handled(lambda h: set(before) | set(h) == set(positions))
        assert second.stop() == 0, second.output()
        assert second.output().endswith(f"stopped at position {positions[-1] + 1}")

        context = (seed, kill_after, before, after)
        assert after == sorted(set(after)), context  # in order, each once within a run
        repeated = set(before) & set(after)
        assert len(repeated) <= interval, context
        assert after[0] <= before[-1] + 1, context  # nothing skipped

        # A graceful stop stored the position: the next run handles only new messages.
        third = Example(tenant, "sdk_consumer.py", "--interval", str(interval))
        new = write_deposits(db, 3)
        assert third.wait_handled(lambda h: len(h) >= 3) == new
        time.sleep(0.2)
        assert third.stop() == 0
        assert third.handled() == new
        last = db.get_last("account:position-balances")
        assert last is not None
        assert last.data == {"position": new[-1]}


def test_group_workers_share_the_category_exactly_once(tenant: Tenant) -> None:
    size = 3
    with tenant.sync() as db:
        early = write_deposits(db, 20)
        workers = [Example(tenant, "sdk_group_worker.py", str(m), str(size)) for m in range(size)]
        late = write_deposits(db, 10)
        everything = early + late
        deadline = time.monotonic() + 20
        while set().union(*(set(w.handled()) for w in workers)) != set(everything):
            assert time.monotonic() < deadline, [w.output() for w in workers]
            time.sleep(0.05)
        assert [w.stop() for w in workers] == [0] * size
        counts = Counter(p for w in workers for p in w.handled())
        assert set(counts.values()) == {1}
        for member, worker in enumerate(workers):
            share = db.get_category("account", batch_size=-1, consumer_group=(member, size))
            assert worker.handled() == [m.global_position for m in share]
