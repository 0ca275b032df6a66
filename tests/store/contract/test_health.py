"""Store contract: ``check_health`` checks every component for real and never raises."""

from __future__ import annotations

from eventodb.store.base import Store


async def test_an_open_store_is_healthy(store: Store) -> None:
    components = await store.check_health()
    assert components
    assert all(c.ok and c.error is None for c in components), components
    assert all(c.seconds >= 0 for c in components)
    expected = {"database", "notifications"} if store.backend == "postgres" else {"registry"}
    assert {c.name for c in components} == expected


async def test_a_closed_store_is_reported_down_with_a_cause(store: Store) -> None:
    await store.close()
    components = await store.check_health()
    assert not any(c.ok for c in components)
    assert all(c.error and c.error.startswith("BackendError: ") for c in components), components
