"""The machine figures every benchmark prints (scripts/benchlib.py): the hypervisor's steal."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

# a script beside the package, not a module of it
import benchlib


def test_steal_and_total_are_read_from_the_first_line() -> None:
    text = "cpu  100 5 50 800 10 1 4 30 7 0\ncpu0 50 2 25 400 5 0 2 15 3 0\n"
    # guest time (7) is already counted in user time: it is not added again
    assert benchlib.parse_proc_stat(text) == (30, 100 + 5 + 50 + 800 + 10 + 1 + 4 + 30)


def test_a_kernel_without_a_steal_field_gives_none() -> None:
    assert benchlib.parse_proc_stat("cpu  100 5 50 800 10 1 4\n") is None


def test_steal_since_is_a_percentage_of_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchlib, "machine_ticks", lambda: (130, 1200))
    assert benchlib.steal_since((30, 1000)) == pytest.approx(50.0)
    assert benchlib.steal_since(None) is None
    assert benchlib.steal_since((130, 1200)) is None  # no time passed: no share to give
