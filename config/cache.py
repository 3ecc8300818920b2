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
_lock = threading.Lock()


class _ReusingClient(RedisCacheClient):
    """Django's client builds a new redis.Redis (copying its ~170 response callbacks) for every
    cache call; one per connection pool is enough, as redis.Redis is thread-safe."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]  # django-stubs omit it
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


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

    def incr_with_expiry(self, key: str, delta: int, timeout: int) -> int:
        """Add `delta` to a counter, creating it with a `timeout` if it is new: one round trip
        (Django's incr() needs two, and cannot create)."""
        redis_key = self.make_and_validate_key(key)
        client = self._cache.get_client(redis_key, write=True)
        pipeline = client.pipeline()
        pipeline.incrby(redis_key, delta)
        pipeline.expire(redis_key, timeout, nx=True)
        count, _ = pipeline.execute()
        return int(count)
