"""The Redis cache backend Herald uses: Django's, with ONE client per process.

Django keeps a cache object (and so a Redis connection pool) per thread, and under ASGI every
request runs its sync code in a thread of its own: each request would open a new Redis
connection. Sharing the client keeps a handful of pooled connections per process instead."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_clients: dict[tuple[Any, ...], Any] = {}
# KEYS: the counters; ARGV: delta, timeout, limit per key. EXPIRE NX keeps an existing window's end.
_INCR_IN_ORDER = """
local counts = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCRBY', key, ARGV[3 * i - 2])
  redis.call('EXPIRE', key, ARGV[3 * i - 1], 'NX')
  counts[i] = count
  if count > tonumber(ARGV[3 * i]) then
    return counts
  end
end
return counts
"""
_lock = threading.Lock()


class _ReusingClient(RedisCacheClient):
    """Django's client builds a new redis.Redis (copying its ~170 response callbacks) for every
    cache call; one per connection pool is enough, as redis.Redis is thread-safe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # id(connection pool) -> (its redis.Redis, the incr_in_order script registered on it)
        self._clients: dict[int, tuple[Any, Any]] = {}

    def _pooled(self, write: bool) -> tuple[Any, Any]:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]  # django-stubs omit it
        pooled = self._clients.get(id(pool))
        if pooled is None:
            client = self._client(connection_pool=pool)  # type: ignore[attr-defined]
            pooled = self._clients[id(pool)] = (client, client.register_script(_INCR_IN_ORDER))
        return pooled

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        return self._pooled(write)[0]

    def incr_script(self) -> Any:
        """The incr_in_order Lua script, on the client of the write connection pool."""
        return self._pooled(True)[1]


class SharedRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> Any:
        servers, options = self.__dict__["_servers"], self.__dict__["_options"]  # set by RedisCache
        key = (tuple(servers), tuple(sorted((name, repr(value)) for name, value in options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = _ReusingClient(servers, **options)
        return client

    def incr_in_order(self, keys: list[str], deltas: list[int], timeouts: list[int], limits: list[int]) -> list[int]:
        """Add each delta to its counter (creating it with its timeout if new), in order, and stop
        after the first counter that goes over its limit: one round trip for all of them. Returns
        the counters reached, one per key counted."""
        redis_keys = [self.make_and_validate_key(key) for key in keys]
        script = self._cache.incr_script()
        args = [value for triple in zip(deltas, timeouts, limits, strict=True) for value in triple]
        return [int(count) for count in script(keys=redis_keys, args=args)]
