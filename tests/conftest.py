"""Shared fixtures: factories for tenants, API keys, tokens and topics; REST clients; fan-out."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, Tenant
from accounts.services import api_key_create, connection_token_mint, tenant_create
from notifications import fanout
from notifications.models import Topic
from notifications.services import topic_create

_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def _isolated_cache() -> Any:
    """Rate-limit counters live in the cache: start every test with an empty one."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_tenant(db: Any) -> Callable[..., Tenant]:
    def make(slug: str | None = None, **limits: Any) -> Tenant:
        return tenant_create(slug=slug or f"tenant{next(_counter)}", **limits)

    return make


@pytest.fixture
def tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant("acme", name="Acme")


@pytest.fixture
def other_tenant(make_tenant: Callable[..., Tenant]) -> Tenant:
    return make_tenant("globex", name="Globex")


@pytest.fixture
def make_key(db: Any) -> Callable[..., str]:
    def make(tenant: Tenant, scopes: tuple[str, ...] = ("publish", "read", "admin")) -> str:
        _, secret = api_key_create(tenant=tenant, name="test", scopes=scopes)
        return secret

    return make


@pytest.fixture
def make_token(db: Any) -> Callable[..., str]:
    def make(tenant: Tenant, user_id: str = "alice", **kwargs: Any) -> str:
        token, _ = connection_token_mint(tenant=tenant, user_id=user_id, **kwargs)
        return token

    return make


@pytest.fixture
def make_topic(db: Any) -> Callable[..., Topic]:
    def make(tenant: Tenant, key: str = "orders.shipped", **fields: Any) -> Topic:
        return topic_create(tenant=tenant, key=key, **fields)

    return make


@pytest.fixture
def client_for() -> Callable[[str], APIClient]:
    """A DRF test client sending `Authorization: Bearer <credential>`."""

    def make(credential: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
        return client

    return make


@pytest.fixture
def api(tenant: Tenant, make_key: Callable[..., str], client_for: Callable[[str], APIClient]) -> APIClient:
    """A client with an all-scopes API key of `tenant`."""
    return client_for(make_key(tenant))


@pytest.fixture
def run_fanout(db: Any) -> Callable[[], int]:
    """Run fan-out for everything pending, as the background loop would; return events completed."""

    def run() -> int:
        total = 0
        while (done := fanout.process_pending()) > 0:
            total += done
        return total

    return run


def api_key_of(secret: str) -> ApiKey:
    return ApiKey.objects.get(prefix=secret.split("_")[1])


@pytest.fixture
async def live_stack() -> Any:
    """For async consumer tests: after the test, stop this loop's hub and fan-out loop and empty
    the in-memory channel layer (its queues belong to the test's event loop)."""
    from channels.layers import channel_layers, get_channel_layer

    from notifications.fanout import stop_local_runner
    from notifications.hub import stop_hub

    yield
    await stop_local_runner()
    await stop_hub()
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        await layer.flush()
    if hasattr(layer, "close_pools"):
        await layer.close_pools()
    # A fresh layer for the next test: channels-redis keeps locks and queues bound to the event
    # loop that created them, and every test has its own loop.
    channel_layers.backends.clear()
