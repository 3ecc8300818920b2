"""The one rate limiter: fixed windows counted in the shared cache (Redis in production, so every
node counts together). REST and WebSocket code both call `consume()` (or
`consume_in_order()` for several limits at once); over the limit it raises
RateLimited carrying the seconds until the window resets (REST sends them as Retry-After)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
from dataclasses import dataclass

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.signals import setting_changed
from django.dispatch import receiver

from accounts.exceptions import RateLimited

logger = logging.getLogger("herald.ratelimit")


@dataclass(frozen=True)
class Charge:
    """`cost` units of `action` for `key`, at most `limit` per `period`-second window."""

    action: str
    key: str
    limit: int
    period: int
    cost: int = 1


@functools.cache
def _cache() -> BaseCache:
    """The default cache as ONE object for the whole process. `django.core.cache.cache` would give
    every asyncio task its own instance, kept for the task's life: every WebSocket connection
    (whose auth is rate limited) would hold one, ~0.8 KB each (docs/performance.md, "Memory").
    Herald's two backends are safe to share: Redis has one thread-safe client per process
    (config/cache.py), locmem locks its dictionary."""
    return caches.create_connection(DEFAULT_CACHE_ALIAS)


@receiver(setting_changed)
def _cache_setting_changed(*, setting: str, **kwargs: object) -> None:
    if setting == "CACHES":  # override_settings(CACHES=...) in a test: use the new cache
        _cache.cache_clear()


def consume(action: str, *, key: str, limit: int, period: int, cost: int = 1) -> None:
    """Count `cost` units of `action` for `key` in the current `period`-second window; raise
    RateLimited if that goes over `limit`. A refused request still counts, so hammering a limit
    does not shorten the wait."""
    consume_in_order([Charge(action, key, limit, period, cost)])


def consume_in_order(charges: list[Charge]) -> None:
    """Count the charges one after another and raise RateLimited at the first that goes over its
    limit; the ones after it are not counted (a key over its own limit must not spend its
    tenant's budget). On Redis that is one round trip for all of them."""
    now = time.time()
    for index, charge in enumerate(charges):
        if charge.limit <= 0:  # nothing is allowed: count the ones before it, then refuse
            consume_in_order(charges[:index])
            raise RateLimited(retry_after=charge.period)
    # Hash the key: it may hold an IP address or user id, and cache keys must stay short and safe.
    windows = [int(now // charge.period) for charge in charges]
    cache_keys = [
        f"rl:{charge.action}:{charge.period}:{window}:{hashlib.sha256(charge.key.encode()).hexdigest()[:32]}"
        for charge, window in zip(charges, windows, strict=True)
    ]
    try:
        counts = _count(cache_keys, charges)
    except Exception:
        # The shared cache (Redis) is down. Fail open: the database, not Redis, decides whether a
        # publish is stored, and refusing every request while Redis restarts would turn a brief
        # outage into a full one. Logged so that operators see limits were not enforced.
        logger.warning("rate limiter unavailable; allowing", extra={"action": charges[0].action if charges else ""})
        return
    for charge, window, count in zip(charges, windows, counts, strict=False):
        if count > charge.limit:
            retry_after = max(1, int((window + 1) * charge.period - now + 0.999))
            error = RateLimited(f"Rate limit for {charge.action} exceeded; retry later.", retry_after=retry_after)
            error.action = charge.action
            raise error


def _count(cache_keys: list[str], charges: list[Charge]) -> list[int]:
    """The counters after adding each charge's cost, stopping after the first over its limit."""
    # A window's counter lives a little longer than the window so the last increment lands.
    expiries = [charge.period + 5 for charge in charges]
    cache = _cache()
    if hasattr(cache, "incr_in_order"):  # Redis: one round trip (config/cache.py)
        return list(cache.incr_in_order(cache_keys, [c.cost for c in charges], expiries, [c.limit for c in charges]))
    counts = []
    for cache_key, charge, expiry in zip(cache_keys, charges, expiries, strict=True):
        if cache.add(cache_key, charge.cost, timeout=expiry):
            count = charge.cost
        else:
            try:
                count = int(cache.incr(cache_key, charge.cost))
            except ValueError:  # expired between add() and incr(): start the window again
                cache.set(cache_key, charge.cost, timeout=expiry)
                count = charge.cost
        counts.append(count)
        if count > charge.limit:
            break
    return counts


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
