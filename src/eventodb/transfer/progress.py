"""Progress of a long transfer on stderr.

On a terminal: a tqdm bar (messages, rate, percentage and ETA against the total when one is
known: the input file's size, or the number of messages to copy). Anywhere else (a log, CI):
one plain line every ``interval`` seconds, so logs stay readable.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

DEFAULT_INTERVAL = 5.0
"""Seconds between two progress lines when stderr is not a terminal."""


def _has_width(stream: TextIO) -> bool:
    """Whether the terminal reports its size (a pseudo-terminal may say 0x0: then tqdm would
    hide the bar, so assume 80x24)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Counts messages and advances toward ``total`` (in ``unit``: ``B`` for bytes of input,
    ``msg`` for messages).

    Args:
        verb: what is counted, e.g. ``Imported``.
        total: where the bar ends, or ``None`` when unknown (no percentage, no ETA).
        interval: seconds between lines when ``stream`` is not a terminal.
    """

    def __init__(
        self,
        verb: str,
        *,
        total: int | None,
        unit: str = "msg",
        interval: float = DEFAULT_INTERVAL,
        stream: TextIO | None = None,
    ) -> None:
        self.verb = verb
        self.total = total or None
        self.unit = unit
        self.messages = 0
        self.done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._started = time.monotonic()
        self._next_line = self._started + interval
        self._bar: tqdm[Any] | None = None
        if self._stream.isatty():
            sized = _has_width(self._stream)
            self._bar = tqdm(
                total=self.total,
                unit=unit,
                unit_scale=True,
                unit_divisor=1024 if unit == "B" else 1000,
                desc=verb,
                file=self._stream,
                dynamic_ncols=sized,
                ncols=None if sized else 80,
                nrows=None if sized else 24,
                mininterval=0.2,
            )

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    @property
    def rate(self) -> float:
        """Messages per second so far."""
        return self.messages / max(self.elapsed, 1e-9)

    def advance(self, messages: int, amount: int | None = None) -> None:
        """``messages`` more were handled, moving the bar by ``amount`` (default: the messages)."""
        self.messages += messages
        step = messages if amount is None else amount
        self.done += step
        if self._bar is not None:
            if self.unit != "msg":
                self._bar.set_postfix_str(
                    f"{self.messages:,} messages, {self.rate:,.0f} msg/s", refresh=False
                )
            self._bar.update(step)
            return
        now = time.monotonic()
        if now >= self._next_line:
            self._next_line = now + self._interval
            self._line(self._status())

    def _status(self) -> str:
        text = f"{self.verb} {self.messages:,} messages ({self.rate:,.0f} msg/s"
        if self.total:
            share = min(self.done / self.total, 1.0)
            text += f", {share:.0%}"
            if 0 < share < 1:
                text += f", ETA {_duration(self.elapsed * (1 - share) / share)}"
        return text + ")"

    def _line(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()

    def write(self, text: str) -> None:
        """A line of its own, above the bar when there is one."""
        if self._bar is not None:
            self._bar.write(text, file=self._stream)
        else:
            self._line(text)

    def close(self) -> None:
        """Remove the bar (the caller prints the outcome)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
