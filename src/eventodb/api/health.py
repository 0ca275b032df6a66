"""Readiness: whether this server can serve requests right now (``GET /ready``, ``sys.health``).

``/health`` only says the process answers (liveness, no I/O). Readiness asks the store to check
each of its components for real (:meth:`Store.check_health`: a query on Postgres, the registry
file on SQLite, with a short timeout) and is false while the server shuts down, so a load
balancer stops sending traffic before connections close. Changes are logged once each way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from eventodb.api.broker import Broker
from eventodb.store.base import ComponentHealth, Store

log = logging.getLogger("eventodb.health")


@dataclass(frozen=True, slots=True)
class Report:
    ready: bool
    components: list[ComponentHealth]

    @property
    def status(self) -> str:
        return "ok" if self.ready else "unavailable"

    def checks(self) -> dict[str, Any]:
        """``{component: {"status", "duration_ms", "error"?}}`` for JSON bodies."""
        result: dict[str, Any] = {}
        for c in self.components:
            entry: dict[str, Any] = {
                "status": "ok" if c.ok else "down",
                "duration_ms": round(c.seconds * 1000, 2),
            }
            if c.error is not None:
                entry["error"] = c.error
            result[c.name] = entry
        return result


class Readiness:
    """Runs readiness checks; concurrent callers share one check instead of piling up queries."""

    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker
        self.last: Report | None = None
        """The latest outcome (``/metrics`` reports it without checking again)."""
        self._running: asyncio.Future[Report] | None = None

    async def check(self) -> Report:
        running = self._running
        if running is None or running.done():
            running = self._running = asyncio.ensure_future(self._check())
        return await asyncio.shield(running)

    async def _check(self) -> Report:
        components = await self.store.check_health()
        if self.broker.closed:
            components.append(ComponentHealth("server", False, 0.0, "shutting down"))
        report = Report(all(c.ok for c in components), components)
        self._log_change(report)
        self.last = report
        return report

    def _log_change(self, report: Report) -> None:
        before = self.last
        if before is not None and before.ready == report.ready:
            return
        if not report.ready:
            down = "; ".join(f"{c.name}: {c.error}" for c in report.components if not c.ok)
            log.warning("not ready: %s", down)
        elif before is not None:
            log.info("ready again")
