"""The one rate limiter: fixed windows counted in the shared cache (Redis in production, so every
node counts together). REST and WebSocket code both call `consume()`; over the limit it raises
RateLimited carrying the seconds until the window resets (REST sends them as Retry-After)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time

from django.core.cache import cache

from accounts.exceptions import RateLimited

logger = logging.getLogger("herald.ratelimit")


def _count(cache_key: str, cost: int, period: int) -> int:
    # The window's counter lives a little longer than the window so the last increment lands.
    if hasattr(cache, "incr_with_expiry"):  # Redis: one round trip (config/cache.py)
        return int(cache.incr_with_expiry(cache_key, cost, period + 5))
    if cache.add(cache_key, cost, timeout=period + 5):
        return cost
    try:
        return int(cache.incr(cache_key, cost))
    except ValueError:  # expired between add() and incr(): start the window again
        cache.set(cache_key, cost, timeout=period + 5)
        return cost


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
    try:
        count = _count(cache_key, cost, period)
    except Exception:
        # The shared cache (Redis) is down. Fail open: the database, not Redis, decides whether a
        # publish is stored, and refusing every request while Redis restarts would turn a brief
        # outage into a full one. Logged so that operators see limits were not enforced.
        logger.warning("rate limiter unavailable; allowing", extra={"action": action})
        return
    if count > limit:
        retry_after = max(1, int((window + 1) * period - now + 0.999))
        error = RateLimited(f"Rate limit for {action} exceeded; retry later.", retry_after=retry_after)
        error.action = action
        raise error


def auth_failures_check(*, ip: str) -> None:
    """Raise RateLimited if this client IP failed authentication too often this minute."""
    from config.herald import herald_settings

    # cost=0 only reads the count; limit - 1 refuses once `limit` failures are reached.
    limit = herald_settings.AUTH_FAILURES_PER_IP_PER_MINUTE
    consume("auth_failure.ip", key=ip, limit=limit - 1, period=60, cost=0)


def auth_failure_record(*, ip: str) -> None:
    """Count a failed authentication from this IP (the request itself still answers 401)."""
    from config.herald import herald_settings

    with contextlib.suppress(RateLimited):
        consume("auth_failure.ip", key=ip, limit=herald_settings.AUTH_FAILURES_PER_IP_PER_MINUTE, period=60)
