"""End to end with real processes: REST publish -> Daphne -> a real `websockets` client, the
inbox over REST, and two Daphne processes sharing Redis."""

from __future__ import annotations

import asyncio
import json

import pytest

from accounts.services import api_key_create, tenant_create
from notifications.services import topic_create
from tests.integration.client import LiveClient, rest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def acme_key(transactional_db) -> str:
    tenant = tenant_create(slug="acme", name="Acme")
    topic_create(tenant=tenant, key="news", allow_client_subscribe=True)
    return api_key_create(tenant=tenant, name="it", scopes=["publish", "read", "admin"])[1]


def mint(base: str, key: str, user_id: str) -> str:
    status, body = rest(base, "POST", "/api/v1/tokens", {"user_id": user_id}, key)
    assert status == 201, body
    return str(body["token"])


async def test_rest_publish_reaches_a_real_websocket_client_and_the_inbox(herald_processes, acme_key):
    server = herald_processes("node")
    token = mint(server.url, acme_key, "alice")
    client = await LiveClient.open(server.ws_url, token)
    assert client.welcome["user"] == "alice" and client.resumed["recovered"] is True

    status, body = rest(
        server.url,
        "POST",
        "/api/v1/events",
        {"kind": "order.shipped", "title": "Shipped", "data": {"order": 7}, "recipients": ["alice"]},
        acme_key,
    )
    assert status == 202
    (frame,) = await client.collect(1)
    assert frame["id"] == body["id"] and frame["title"] == "Shipped" and frame["data"] == {"order": 7}

    status, inbox = rest(server.url, "GET", "/api/v1/inbox", credential=token)
    assert status == 200
    assert [item["id"] for item in inbox["results"]] == [body["id"]]
    assert inbox["unread"] == 1

    await client.ws.send(json.dumps({"type": "mark_read", "id": "r1", "ids": [body["id"]]}))
    ack = await client.next_of("ack")
    assert ack["unread"] == 0
    assert rest(server.url, "GET", "/api/v1/inbox/unread-count", credential=token) == (200, {"count": 0})
    await client.close()


async def test_two_daphne_processes_sharing_redis_deliver_across_nodes(herald_processes, acme_key, redis_url):
    node_a = herald_processes("node-a")
    node_b = herald_processes("node-b")
    token = mint(node_a.url, acme_key, "alice")
    on_b = await LiveClient.open(node_b.ws_url, token)
    on_a = await LiveClient.open(node_a.ws_url, token)
    listener = await LiveClient.open(node_b.ws_url, mint(node_b.url, acme_key, "bob"))
    await listener.ws.send('{"type":"subscribe","id":1,"topics":["news"]}')
    assert (await listener.next_of("ack"))["topics"] == ["news"]

    _, direct = rest(node_a.url, "POST", "/api/v1/events", {"kind": "k", "recipients": ["alice"]}, acme_key)
    _, topic = rest(node_a.url, "POST", "/api/v1/events", {"kind": "k", "topics": ["news"]}, acme_key)
    assert [frame["id"] for frame in await on_b.collect(1)] == [direct["id"]]
    assert [frame["id"] for frame in await on_a.collect(1)] == [direct["id"]]
    assert [frame["id"] for frame in await listener.collect(1)] == [topic["id"]]

    # Read state changed through node A is pushed to alice's socket on node B.
    await on_a.ws.send('{"type":"mark_all_read","id":"all"}')
    assert (await on_a.next_of("ack"))["unread"] == 0
    assert (await on_b.next_of("unread"))["count"] == 0
    # And REST on node B sees what node A wrote.
    assert rest(node_b.url, "GET", "/api/v1/inbox/unread-count", credential=token) == (200, {"count": 0})
    for client in (on_a, on_b, listener):
        await client.close()


async def test_many_publishes_arrive_in_stream_order_across_nodes(herald_processes, acme_key, redis_url):
    node_a = herald_processes("node-a")
    node_b = herald_processes("node-b")
    token = mint(node_a.url, acme_key, "alice")
    client = await LiveClient.open(node_b.ws_url, token)
    loop = asyncio.get_running_loop()
    published = []
    for index in range(30):
        node = node_a if index % 2 else node_b
        status, body = await loop.run_in_executor(
            None, lambda n=node: rest(n.url, "POST", "/api/v1/events", {"kind": "k", "recipients": ["alice"]}, acme_key)
        )
        assert status == 202
        published.append(body["id"])
    frames = await client.collect(30)
    assert sorted(frame["id"] for frame in frames) == sorted(published)
    cursors = [int(frame["cursor"]) for frame in frames]
    assert cursors == sorted(cursors) and len(set(cursors)) == 30
    await client.close()


async def test_worker_mode_web_node_plus_separate_fanout_worker(herald_processes, acme_key, redis_url):
    import subprocess
    import sys

    from tests.integration.conftest import ROOT, base_env

    web = herald_processes("web", HERALD_FANOUT_MODE="worker")
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "herald_worker"],
        cwd=ROOT,
        env=base_env(HERALD_FANOUT_MODE="worker"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        token = mint(web.url, acme_key, "alice")
        client = await LiveClient.open(web.ws_url, token)
        _, body = rest(web.url, "POST", "/api/v1/events", {"kind": "k", "recipients": ["alice"]}, acme_key)
        (frame,) = await client.collect(1)
        assert frame["id"] == body["id"]
        await client.close()
    finally:
        worker.terminate()
        assert worker.wait(15) == 0  # SIGTERM: finishes in-hand work, exits cleanly


@pytest.mark.parametrize(("setting", "negotiated"), [("0", False), ("1", True)])
async def test_permessage_deflate_is_refused_unless_enabled(herald_processes, acme_key, setting, negotiated):
    """Every browser offers permessage-deflate; accepting it costs ~40 KB per connection."""
    from websockets.asyncio.client import connect

    server = herald_processes("node", HERALD_WS_COMPRESSION=setting)
    token = mint(server.url, acme_key, "alice")
    async with connect(server.ws_url, compression="deflate", ping_interval=None) as socket:
        extensions = socket.response.headers.get("Sec-WebSocket-Extensions")
        assert (extensions is not None and "permessage-deflate" in extensions) is negotiated
        await socket.send(json.dumps({"type": "auth", "token": token}))
        welcome = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert welcome["type"] == "welcome" and welcome["user"] == "alice"
        while json.loads(await asyncio.wait_for(socket.recv(), 10))["type"] != "resumed":
            pass
        # Live frames are written to the socket uncompressed, which a deflate session allows.
        status, body = rest(server.url, "POST", "/api/v1/events", {"kind": "k", "recipients": ["alice"]}, acme_key)
        assert status == 202
        frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert frame["type"] == "notification" and frame["id"] == body["id"]
