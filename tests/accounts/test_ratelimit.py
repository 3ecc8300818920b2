"""The rate limiter's ordered charges, on whichever shared cache the suite runs with (local memory
in the SQLite phase, Redis in the PostgreSQL phase)."""

from __future__ import annotations

import asyncio
import contextvars
import uuid

import pytest

from accounts.exceptions import RateLimited
from accounts.ratelimit import Charge, consume_in_order


def _charges(key: str, *, key_limit: int, tenant_limit: int, cost: int = 1) -> list[Charge]:
    return [Charge("test.key", key, key_limit, 60, cost), Charge("test.tenant", "t-" + key, tenant_limit, 60, cost)]


def test_charges_count_in_order_and_stop_at_the_first_over_its_limit():
    key = uuid.uuid4().hex
    consume_in_order(_charges(key, key_limit=2, tenant_limit=3))
    consume_in_order(_charges(key, key_limit=2, tenant_limit=3))
    with pytest.raises(RateLimited) as refused:
        consume_in_order(_charges(key, key_limit=2, tenant_limit=3))
    assert refused.value.action == "test.key"  # type: ignore[attr-defined]
    assert 1 <= refused.value.retry_after <= 60
    # The refused request spent none of the second limit: 2 used of 3, so one more fits there.
    consume_in_order([Charge("test.tenant", "t-" + key, 3, 60)])
    with pytest.raises(RateLimited) as second:
        consume_in_order([Charge("test.tenant", "t-" + key, 3, 60)])
    assert second.value.action == "test.tenant"  # type: ignore[attr-defined]


def test_a_cost_counts_whole_and_a_zero_limit_refuses_without_counting_later_charges():
    key = uuid.uuid4().hex
    with pytest.raises(RateLimited):
        consume_in_order(_charges(key, key_limit=5, tenant_limit=5, cost=6))
    with pytest.raises(RateLimited):
        consume_in_order([Charge("test.key", "z-" + key, 10, 60), Charge("test.zero", key, 0, 60)])
    # The charge before the zero limit was counted: with a limit of 1 the next one is refused.
    with pytest.raises(RateLimited):
        consume_in_order([Charge("test.key", "z-" + key, 1, 60)])


async def test_the_limiter_uses_one_cache_object_for_the_process_not_one_per_task():
    """Django's `cache` gives every asyncio task (every WebSocket connection) an instance of its
    own, held for the task's life; the limiter must not create one."""
    from django.core.cache import DEFAULT_CACHE_ALIAS, caches

    async def connection_task() -> bool:
        consume_in_order([Charge("test.per_task", uuid.uuid4().hex, 10, 60)])
        return hasattr(caches._connections, DEFAULT_CACHE_ALIAS)  # asgiref Local: this task's own

    # A context of its own, as a server gives each connection's task (nothing inherited from the test).
    assert await asyncio.create_task(connection_task(), context=contextvars.Context()) is False
