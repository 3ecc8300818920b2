"""Connection counts in Redis under a burst: every acquire and every release of a burst lands,
even past redis-py's 100-connection pool (a proxy closing every socket at once)."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from notifications.presence import MAX_CALLS_IN_FLIGHT, RedisCounter

pytestmark = pytest.mark.asyncio

BURST = 400


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs a real Redis: run with REDIS_URL set (scripts/test does)")
    return url


async def test_a_burst_of_connects_then_closes_counts_and_releases_every_one(redis_url: str) -> None:
    counter = RedisCounter(redis_url, f"herald-test-{uuid.uuid4().hex[:8]}")
    await counter.start("node-a")
    try:
        users = range(BURST)
        results = await asyncio.gather(
            *(counter.acquire(7, user, tenant_limit=10 * BURST, user_limit=1) for user in users)
        )
        assert results == [0] * BURST
        assert int(await counter.redis.hget(f"{counter.prefix}:t7", "node-a")) == BURST
        # Far more calls at once than the pool has connections (and than MAX_CALLS_IN_FLIGHT).
        assert BURST > 100 > MAX_CALLS_IN_FLIGHT
        await asyncio.gather(*(counter.release(7, user) for user in users))
        assert await counter.redis.hget(f"{counter.prefix}:t7", "node-a") is None
        # Every user may connect again: nothing was left counted.
        assert await counter.acquire(7, 3, tenant_limit=1, user_limit=1) == 0
        await counter.release(7, 3)
    finally:
        keys = [key async for key in counter.redis.scan_iter(f"{counter.prefix}:*")]
        if keys:
            await counter.redis.delete(*keys)
        await counter.stop()
