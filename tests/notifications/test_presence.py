"""Connection counts in Redis under a burst: every acquire and every release of a burst lands,
even past redis-py's 100-connection pool (a proxy closing every socket at once), in a few
batched round trips; a Redis that forgot the scripts or went away."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from notifications.presence import BATCH_MAX, RedisCounter

pytestmark = pytest.mark.asyncio

BURST = 400


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs a real Redis: run with REDIS_URL set (scripts/test does)")
    return url


@pytest.fixture
async def counter(redis_url: str) -> AsyncIterator[RedisCounter]:
    """A started node's counter, under a prefix of its own (its keys deleted afterwards)."""
    node = RedisCounter(redis_url, f"herald-test-{uuid.uuid4().hex[:8]}")
    await node.start("node-a")
    try:
        yield node
    finally:
        await _forget(node)
        await node.stop()


async def _forget(node: RedisCounter) -> None:
    keys = [key async for key in node.redis.scan_iter(f"{node.prefix}:*")]
    if keys:
        await node.redis.delete(*keys)


def _batch_sizes(node: RedisCounter) -> list[int]:
    """The size of every batch the counter sends from now on, in order."""
    sizes: list[int] = []
    real_run = node._run

    async def counting(batch: list[Any], **kwargs: Any) -> list[Any]:
        sizes.append(len(batch))
        return await real_run(batch, **kwargs)

    node._run = counting  # type: ignore[method-assign]
    return sizes


async def test_a_burst_of_connects_then_closes_counts_and_releases_every_one(counter: RedisCounter) -> None:
    batches = _batch_sizes(counter)
    users = range(BURST)
    results = await asyncio.gather(*(counter.acquire(7, user, tenant_limit=10 * BURST, user_limit=1) for user in users))
    assert results == [0] * BURST
    assert int(await counter.redis.hget(f"{counter.prefix}:t7", "node-a")) == BURST
    # Far more calls at once than the pool has connections, in one round trip (calls made
    # while a batch is on its way wait for the next; at most BATCH_MAX per round trip).
    assert 100 < BURST < BATCH_MAX
    assert batches == [BURST]
    await asyncio.gather(*(counter.release(7, user) for user in users))
    assert batches == [BURST, BURST]
    assert await counter.redis.hget(f"{counter.prefix}:t7", "node-a") is None
    # Every user may connect again: nothing was left counted.
    assert await counter.acquire(7, 3, tenant_limit=1, user_limit=1) == 0
    await counter.release(7, 3)


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

        async def connection_lost(batch: list[Any], **kwargs: Any) -> list[Any]:  # what a closing client gives
            raise ConnectionError("Connection lost.")

        node_a._run = connection_lost  # type: ignore[method-assign]
        await node_a.release(7, 1)
        assert "presence release failed" not in caplog.text
        assert await node_b.acquire(7, 1, tenant_limit=10, user_limit=1) == 0  # node-a no longer counts
    finally:
        await _forget(node_b)
        await node_b.stop()


async def test_a_redis_that_forgot_the_scripts_gets_them_again(counter: RedisCounter) -> None:
    await counter.redis.script_flush()  # what a restarted Redis knows
    results = await asyncio.gather(*(counter.acquire(7, user, tenant_limit=3, user_limit=1) for user in range(5)))
    assert results == [0, 0, 0, 1, 1]  # in the order asked for: the tenant is full after three
    assert int(await counter.redis.hget(f"{counter.prefix}:t7", "node-a")) == 3
    await counter.redis.script_flush()
    await asyncio.gather(*(counter.release(7, user) for user in range(3)))
    assert await counter.redis.hget(f"{counter.prefix}:t7", "node-a") is None


async def test_a_failed_round_trip_fails_open_for_its_calls_and_the_next_batch_works(
    counter: RedisCounter, caplog: pytest.LogCaptureFixture
) -> None:
    real_run = counter._run

    async def redis_is_down(batch: list[Any], **kwargs: Any) -> list[Any]:
        raise ConnectionError("Connection refused.")

    counter._run = redis_is_down  # type: ignore[method-assign]
    results = await asyncio.gather(*(counter.acquire(7, user, tenant_limit=1, user_limit=1) for user in range(4)))
    assert results == [0] * 4  # let in, uncounted (limits are not enforced while Redis is away)
    assert caplog.text.count("presence unavailable") == 4
    counter._run = real_run  # type: ignore[method-assign]
    assert await counter.acquire(7, 1, tenant_limit=1, user_limit=1) == 0
    assert await counter.acquire(7, 2, tenant_limit=1, user_limit=1) == 1
    await counter.release(7, 1)


async def test_a_burst_past_batch_max_goes_in_several_round_trips(
    counter: RedisCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from notifications import presence

    monkeypatch.setattr(presence, "BATCH_MAX", 150)
    batches = _batch_sizes(counter)
    results = await asyncio.gather(
        *(counter.acquire(7, user, tenant_limit=BURST, user_limit=1) for user in range(BURST))
    )
    assert results == [0] * BURST and batches == [150, 150, 100]
    assert int(await counter.redis.hget(f"{counter.prefix}:t7", "node-a")) == BURST


def _held(node: RedisCounter) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold every round trip of the counter until `release` is set; `entered` once one waits."""
    entered, release = asyncio.Event(), asyncio.Event()
    real_pipeline = node._pipeline

    async def held(batch: list[Any]) -> list[Any]:
        entered.set()
        await release.wait()
        return await real_pipeline(batch)

    node._pipeline = held  # type: ignore[method-assign]
    return entered, release


async def test_a_call_cancelled_before_it_is_sent_never_happens(counter: RedisCounter) -> None:
    entered, release = _held(counter)
    first = asyncio.create_task(counter.acquire(7, 1, tenant_limit=10, user_limit=1))
    await asyncio.wait_for(entered.wait(), 5)  # user 1's batch is on its way
    second = asyncio.create_task(counter.acquire(7, 2, tenant_limit=10, user_limit=1))
    await asyncio.sleep(0)  # queued for the next batch
    second.cancel()
    release.set()
    assert await first == 0
    with pytest.raises(asyncio.CancelledError):
        await second
    for _ in range(50):  # the sender finishes what is left (nothing)
        if counter._sender is None or counter._sender.done():
            break
        await asyncio.sleep(0.01)
    assert int(await counter.redis.hget(f"{counter.prefix}:t7", "node-a")) == 1  # user 2 never counted
    assert await counter.redis.hget(f"{counter.prefix}:t7:u2", "node-a") is None


async def test_a_sender_cancelled_mid_batch_answers_every_waiting_call(counter: RedisCounter) -> None:
    entered, _ = _held(counter)
    calls = [asyncio.create_task(counter.acquire(7, user, tenant_limit=10, user_limit=1)) for user in range(3)]
    await asyncio.wait_for(entered.wait(), 5)
    later = asyncio.create_task(counter.acquire(7, 9, tenant_limit=10, user_limit=1))
    await asyncio.sleep(0)
    assert counter._sender is not None
    counter._sender.cancel()
    # Failed open, at once: let in uncounted rather than waiting for ever.
    assert await asyncio.wait_for(asyncio.gather(*calls, later), 5) == [0, 0, 0, 0]


async def test_a_script_that_cannot_be_loaded_fails_only_its_own_calls(
    counter: RedisCounter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert await counter.acquire(7, 1, tenant_limit=10, user_limit=1) == 0  # both scripts known
    await counter.redis.script_flush()
    await counter.redis.script_load(counter._acquire.script)  # Redis knows acquire, not release

    async def cannot_load(script: str) -> str:
        raise ConnectionError("Connection reset by peer.")

    monkeypatch.setattr(counter.redis, "script_load", cannot_load)
    acquired, _ = await asyncio.gather(
        counter.acquire(7, 2, tenant_limit=10, user_limit=1),
        counter.release(7, 1),
    )
    assert acquired == 0 and "presence release failed" in caplog.text
    assert "presence unavailable" not in caplog.text  # the acquire ran and was counted
    assert int(await counter.redis.hget(f"{counter.prefix}:t7:u2", "node-a")) == 1
