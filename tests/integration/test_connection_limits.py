"""Connection limits are counted across nodes in Redis, and a crashed node's connections stop
counting once its presence expires."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect

from accounts.services import api_key_create, tenant_create
from tests.integration.client import LiveClient, rest
from tests.integration.faults import record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def close_code_of_auth(ws_url: str, token: str) -> int | None:
    async with connect(ws_url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame["type"] == "welcome":
                    return None
        except Exception:
            return ws.close_code


@pytest.fixture
def limited_key(transactional_db) -> str:
    tenant = tenant_create(slug="acme", name="Acme", max_connections_per_user=2)
    return api_key_create(tenant=tenant, name="k", scopes=["publish"])[1]


async def test_user_limit_spans_nodes_and_a_crashed_node_stops_counting(herald_processes, limited_key, redis_url):
    key = limited_key
    env = {"HERALD_PRESENCE_NODE_TTL_SECONDS": "3"}
    node_a, node_b = herald_processes("node-a", **env), herald_processes("node-b", **env)
    token = rest(node_a.url, "POST", "/api/v1/tokens", {"user_id": "alice"}, key)[1]["token"]
    on_a = await LiveClient.open(node_a.ws_url, token)
    on_b = await LiveClient.open(node_b.ws_url, token)
    assert await close_code_of_auth(node_b.ws_url, token) == 4009
    assert await close_code_of_auth(node_a.ws_url, token) == 4009

    node_a.kill()  # its connection is gone, but nobody told Redis
    started = time.monotonic()
    while await close_code_of_auth(node_b.ws_url, token) == 4009:
        assert time.monotonic() - started < 15, "the crashed node's connection kept counting"
        await asyncio.sleep(0.5)
    freed_after = round(time.monotonic() - started, 1)
    record(
        "connection limit across nodes",
        limit_per_user=2,
        refused_third="4009 on both nodes",
        crashed_node_freed_after_s=freed_after,
        node_ttl_s=3,
    )
    await on_b.close()
    del on_a
