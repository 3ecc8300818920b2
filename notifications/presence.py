"""Connection counts per tenant and per end user, across all nodes, for the connection limits.

With Redis, each node keeps its own count in a hash field per tenant and per user, and keeps a
liveness key that expires PRESENCE_NODE_TTL_SECONDS after its last refresh: the counts of a node that
crashed stop counting within that time, without anyone having to clean up after it. Without
Redis (the embedded default: one process) the counts are simply kept in memory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from config.herald import herald_settings

logger = logging.getLogger("herald.presence")

# A node refreshes its liveness three times per TTL (HERALD_PRESENCE_NODE_TTL_SECONDS, 30 s by
# default): one lost refresh never makes a live node look dead.
REFRESHES_PER_TTL = 3
# A user's counts expire a day after their last connect, so users who never come back leave
# nothing behind even if their node crashed.
USER_KEY_TTL_SECONDS = 86400
# Presence calls sent to Redis per round trip, at most. A call made while a batch is on its way
# waits and goes in the next one (as the hub's group joins do): a burst of connects or closes costs
# a round trip per batch on ONE pooled connection, where a call each costs redis-py's per-command
# work (connection checkout, timeouts, a round trip) for every socket, and a burst of closes (a
# proxy dropping every socket at once) could exhaust its 100-connection pool.
BATCH_MAX = 500

# KEYS: tenant hash, user hash. ARGV: node id, tenant limit, user limit, node key prefix, user TTL.
# Returns 0 (counted), 1 (tenant full) or 2 (user full). Fields of dead nodes are dropped.
_ACQUIRE = """
local function live_total(key)
  local total = 0
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local node = fields[i]
    if node == ARGV[1] or redis.call('EXISTS', ARGV[4] .. node) == 1 then
      total = total + tonumber(fields[i + 1])
    else
      redis.call('HDEL', key, node)
    end
  end
  return total
end
if live_total(KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
if live_total(KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 0
"""
_RELEASE = """
for i = 1, 2 do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[i], ARGV[1]) end
end
return 0
"""

TENANT_FULL, USER_FULL = 1, 2


class LocalCounter:
    """In-process counts (one node)."""

    def __init__(self) -> None:
        self.tenants: dict[int, int] = {}
        self.users: dict[tuple[int, int], int] = {}

    async def start(self, node_id: str) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def acquire(self, tenant_id: int, user_pk: int, *, tenant_limit: int, user_limit: int) -> int:
        if self.tenants.get(tenant_id, 0) >= tenant_limit:
            return TENANT_FULL
        if self.users.get((tenant_id, user_pk), 0) >= user_limit:
            return USER_FULL
        self.tenants[tenant_id] = self.tenants.get(tenant_id, 0) + 1
        self.users[(tenant_id, user_pk)] = self.users.get((tenant_id, user_pk), 0) + 1
        return 0

    async def release(self, tenant_id: int, user_pk: int) -> None:
        self.tenants[tenant_id] = self.tenants.get(tenant_id, 1) - 1
        if self.tenants[tenant_id] <= 0:
            del self.tenants[tenant_id]
        user = (tenant_id, user_pk)
        self.users[user] = self.users.get(user, 1) - 1
        if self.users[user] <= 0:
            del self.users[user]


class RedisCounter:
    """Counts shared by every node through Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        self.redis: Any = redis_client(url)
        self.prefix = f"{prefix}:presence"
        self.node_id = ""
        self.node_ttl = max(1, herald_settings.PRESENCE_NODE_TTL_SECONDS)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._release = self.redis.register_script(_RELEASE)
        self._refresher: asyncio.Task[None] | None = None
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None
        self.stopped = False

    def _keys(self, tenant_id: int, user_pk: int) -> list[str]:
        return [f"{self.prefix}:t{tenant_id}", f"{self.prefix}:t{tenant_id}:u{user_pk}"]

    async def start(self, node_id: str) -> None:
        self.node_id = node_id
        with contextlib.suppress(Exception):
            await self._alive()
        self._refresher = asyncio.create_task(self._refresh_loop(), name="herald-presence")

    async def stop(self) -> None:
        # From here on this node's counts stop counting as a whole (its liveness key goes), so
        # the releases of the sockets closing at shutdown have nothing left to do.
        self.stopped = True
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.wait([self._refresher], timeout=2)
        if self._sender is not None and not self._sender.done():
            await asyncio.wait([self._sender], timeout=2)  # the batch on its way
        with contextlib.suppress(Exception):
            await self.redis.delete(f"{self.prefix}:node:{self.node_id}")
            await self.redis.aclose()

    async def _alive(self) -> None:
        await self.redis.set(f"{self.prefix}:node:{self.node_id}", 1, ex=self.node_ttl)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.node_ttl / REFRESHES_PER_TTL)
            try:
                await self._alive()
            except Exception:
                logger.warning("presence refresh failed", exc_info=True)

    async def acquire(self, tenant_id: int, user_pk: int, *, tenant_limit: int, user_limit: int) -> int:
        try:
            return await self._call(
                self._acquire,
                self._keys(tenant_id, user_pk),
                [self.node_id, tenant_limit, user_limit, f"{self.prefix}:node:", USER_KEY_TTL_SECONDS],
            )
        except Exception:
            # Redis is down: let the connection in (fail open) rather than lock every user out.
            logger.warning("presence unavailable; connection limits not enforced", exc_info=True)
            return 0

    async def release(self, tenant_id: int, user_pk: int) -> None:
        if self.stopped:
            return
        try:
            await self._call(self._release, self._keys(tenant_id, user_pk), [self.node_id])
        except Exception:
            logger.warning("presence release failed", exc_info=True)

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> int:
        """Run the script in the next batch (see BATCH_MAX) and return its result."""
        loop = asyncio.get_running_loop()
        call = _Call(script, keys, args, loop.create_future())
        self._waiting.append(call)
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_batches(), name="herald-presence")
        try:
            # Shielded: a connection cancelled while waiting must not cancel the others' batch.
            result = await asyncio.shield(call.result)
        except asyncio.CancelledError:
            if call in self._waiting:  # not sent yet: it never happens (sent, it is counted as before)
                self._waiting.remove(call)
            raise
        if isinstance(result, Exception):
            # A new error for each caller: the batch's one error, raised in each of up to BATCH_MAX
            # callers, would carry a traceback longer by each of them.
            raise ConnectionError(f"presence call failed: {result!r}") from result
        return int(result)

    async def _send_batches(self) -> None:
        batch: list[_Call] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:BATCH_MAX], self._waiting[BATCH_MAX:]
                try:
                    results = await self._run(batch)
                except Exception as error:  # the whole round trip failed: every call of it did
                    results = [error] * len(batch)
                for call, result in zip(batch, results, strict=True):
                    # An error is the call's result, not the future's exception: nobody may be
                    # waiting any more (a cancelled connection), and asyncio would log it as never
                    # retrieved.
                    call.result.set_result(result)
        finally:
            # Cancelled (the node stopping): nobody waits for ever for a batch that will not come.
            stopped = ConnectionError("presence stopped")
            for call in [*batch, *self._waiting]:
                if not call.result.done():
                    call.result.set_result(stopped)

    async def _run(self, batch: list[_Call]) -> list[Any]:
        """One pipeline of EVALSHAs (not a transaction: each script is atomic on its own; they run
        in the order asked for). Calls of a script Redis did not know (it restarted: NOSCRIPT, they
        did nothing) are sent again once it is loaded, after the others; if that fails, only they
        fail."""
        results = await self._pipeline(batch)
        unknown = [index for index, result in enumerate(results) if isinstance(result, NoScriptError)]
        if unknown:
            try:
                for script in {batch[index].script for index in unknown}:
                    await self.redis.script_load(script.script)
                retried = await self._pipeline([batch[index] for index in unknown])
            except Exception as error:
                retried = [error] * len(unknown)
            for index, result in zip(unknown, retried, strict=True):
                results[index] = result
        return results

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in batch:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results


@dataclass(frozen=True, eq=False, slots=True)
class _Call:
    """One script call waiting for its batch (equal only to itself: `_call` removes it by identity)."""

    script: Any  # a redis-py Script: its .sha and .script
    keys: list[str]
    args: list[Any]
    result: asyncio.Future[Any]  # the script's answer, or the error that stopped it


def redis_client(url: str) -> Any:
    """An asyncio Redis client for REDIS_URL, or for the master the sentinels name."""
    import redis.asyncio
    from django.conf import settings

    timeouts: dict[str, Any] = {"socket_timeout": settings.REDIS_SOCKET_TIMEOUT, "socket_connect_timeout": 5}
    if settings.REDIS_SENTINELS:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        sentinel = redis.asyncio.Sentinel(settings.REDIS_SENTINELS, socket_timeout=0.5)
        return sentinel.master_for(
            settings.REDIS_SENTINEL_MASTER, db=int(parts.path.lstrip("/") or 0), password=parts.password, **timeouts
        )
    return redis.asyncio.Redis.from_url(url, **timeouts)


def counter_for_settings() -> LocalCounter | RedisCounter:
    from django.conf import settings

    if settings.REDIS_URL:
        return RedisCounter(settings.REDIS_URL, settings.REDIS_PREFIX)
    return LocalCounter()
