"""The one rate limiter: fixed windows counted in the shared cache (Redis in production, so every
node counts together). REST and WebSocket code both call `consume()`; over the limit it raises
RateLimited carrying the seconds until the window resets (REST sends them as Retry-After)."""

from __future__ import annotations

import hashlib
import time

from django.core.cache import cache

from accounts.exceptions import RateLimited


def consume(action: str, *, key: str, limit: int, period: int, cost: int = 1) -> None:
    """Count `cost` units of `action` for `key` in the current `period`-second window; raise
    RateLimited if that goes over `limit`. A refused request still counts, so hammering a limit
    does not shorten the wait."""
    if limit <= 0:
        raise RateLimited(retry_after=period)
    now = time.time()
    window = int(now // period)
    # Hash the key: it may hold an IP address or user id, and cache keys must stay short and safe.
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    cache_key = f"rl:{action}:{period}:{window}:{digest}"
    # The window's counter lives a little longer than the window so the last increment lands.
    if cache.add(cache_key, cost, timeout=period + 5):
        count = cost
    else:
        try:
            count = cache.incr(cache_key, cost)
        except ValueError:  # expired between add() and incr(): start the window again
            cache.set(cache_key, cost, timeout=period + 5)
            count = cost
    if count > limit:
        retry_after = max(1, int((window + 1) * period - now + 0.999))
        raise RateLimited(
            f"Rate limit for {action} exceeded: at most {limit} per {period} s.",
            retry_after=retry_after,
        )
