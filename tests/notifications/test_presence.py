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


async def test_a_stopped_node_stops_counting_and_its_late_releases_are_quiet(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"herald-test-{uuid.uuid4().hex[:8]}"
    node_a, node_b = RedisCounter(redis_url, prefix), RedisCounter(redis_url, prefix)
    await node_a.start("node-a")
    await node_b.start("node-b")
    try:
        assert await node_a.acquire(7, 1, tenant_limit=10, user_limit=1) == 0
        assert await node_b.acquire(7, 1, tenant_limit=10, user_limit=1) == 2  # the user is full
        await node_a.stop()  # shutdown: its sockets close after (or while) the client goes

        async def connection_lost(**kwargs: object) -> None:  # what a closing client gives
            raise ConnectionError("Connection lost.")

        node_a._release = connection_lost  # type: ignore[assignment]
        await node_a.release(7, 1)
        assert "presence release failed" not in caplog.text
        assert await node_b.acquire(7, 1, tenant_limit=10, user_limit=1) == 0  # node-a no longer counts
    finally:
        keys = [key async for key in node_b.redis.scan_iter(f"{prefix}:*")]
        if keys:
            await node_b.redis.delete(*keys)
        await node_b.stop()
