"""Where the files of ``tests/fixtures`` are: databases as other programs left them (the EventoDB
Go server 0.7, Message DB 1.3.0), which the Bun suite in ``test/`` reads too."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
