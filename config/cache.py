"""The Redis cache backend Herald uses: Django's, with ONE client per process.

Django keeps a cache object (and so a Redis connection pool) per thread, and under ASGI every
request runs its sync code in a thread of its own: each request would open a new Redis
connection. Sharing the client keeps a handful of pooled connections per process instead."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from django.core.cache.backends.redis import RedisCache

_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> Any:
        servers, options = self.__dict__["_servers"], self.__dict__["_options"]  # set by RedisCache
        key = (tuple(servers), tuple(sorted((name, repr(value)) for name, value in options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self.__dict__["_class"](servers, **options)
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
