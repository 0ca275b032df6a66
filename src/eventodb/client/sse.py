"""Subscriptions without I/O: what to ask ``/subscribe`` for, where to resume, how to read the
event stream. Both clients' subscriptions drive these.

Resuming (docs/CLIENT.md, "Subscriptions"): a subscription remembers the highest position it has
delivered — the stream position for a stream subscription, the global position for category and
``all`` subscriptions — and reconnects from the one after it. The server replays every matching
message from the position it is given, so nothing written while the connection was down is
missed, and nothing already delivered is delivered again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from eventodb.client.models import ConsumerGroup, Poke

Kind = Literal["stream", "category", "all"]


@dataclass
class Target:
    """What a subscription listens to and the position it (re)starts from.

    Attributes:
        kind: ``stream``, ``category`` or ``all``.
        name: the stream or category name (``""`` for ``all``).
        position: the next position wanted: a stream position for ``stream``, a global position
            otherwise. Advanced by every delivered poke.
        group: the consumer group (category subscriptions only).
    """

    kind: Kind
    name: str
    position: int
    group: ConsumerGroup | None = None

    def params(self) -> dict[str, str]:
        """The query parameters of ``GET /subscribe``."""
        params: dict[str, str] = {"position": str(self.position)}
        if self.kind == "all":
            params["all"] = "true"
        else:
            params[self.kind] = self.name
        if self.group is not None:
            params["consumer"] = str(self.group.member)
            params["size"] = str(self.group.size)
        return params

    def delivered(self, poke: Poke) -> None:
        """Move the resume position past a delivered poke (never backwards: pokes of different
        streams may arrive out of global-position order)."""
        after = (poke.position if self.kind == "stream" else poke.global_position) + 1
        self.position = max(self.position, after)


class EventParser:
    """Reads an SSE body line by line and yields its ``poke`` events.

    Comments (``: ready``, ``: ping``) and other event names are skipped. Lines arrive without
    their line ending.
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Poke | None:
        """Take one line; the poke it completes, if any.

        Raises:
            ValueError: when a poke's data is not the expected JSON object.
        """
        if not line:
            event, data = self._event or "message", "\n".join(self._data)
            self._event, self._data = "", []
            if event != "poke" or not data:
                return None
            payload = json.loads(data)
            try:
                return Poke.from_wire(payload)
            except (KeyError, TypeError) as exc:
                raise ValueError(f"malformed poke: {data!r}") from exc
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None
