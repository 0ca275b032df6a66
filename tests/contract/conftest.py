"""Fixtures of the contract suite: every test runs on every backend through ``store``."""

from __future__ import annotations

import pytest

from eventodb.core import tokens
from eventodb.store.base import Store


@pytest.fixture
async def ns(store: Store) -> str:
    """A fresh namespace in ``store``; returns its id."""
    await store.create_namespace("tenant-a", tokens.hash_token(tokens.generate("tenant-a")))
    return "tenant-a"
