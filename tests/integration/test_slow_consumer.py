"""A client that stops reading is closed (4010) and its memory released, without delaying the
others; it gets what it missed when it comes back."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from accounts.services import api_key_create, tenant_create
from tests.integration.client import LiveClient, rest
from tests.integration.faults import record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture
def acme(transactional_db) -> str:
    tenant = tenant_create(slug="acme", name="Acme", max_payload_bytes=64 * 1024)
    return api_key_create(tenant=tenant, name="slow", scopes=["publish", "read", "admin"])[1]


def mint(base: str, key: str, user_id: str) -> str:
    return str(rest(base, "POST", "/api/v1/tokens", {"user_id": user_id}, key)[1]["token"])


async def test_stalled_reader_is_closed_and_the_bystander_is_not_delayed(herald_processes, acme):
    node = herald_processes("node")
    # The stalled client: a tiny receive buffer and a library queue of 1, and it never reads.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small TCP window
    sock.connect(("127.0.0.1", node.port))
    stalled = await connect(node.ws_url, sock=sock, max_queue=1, open_timeout=10, close_timeout=1, ping_interval=None)
    await stalled.send(json.dumps({"type": "auth", "token": mint(node.url, acme, "slow")}))
    bystander = await LiveClient.open(node.ws_url, mint(node.url, acme, "fast"))

    loop = asyncio.get_running_loop()
    payload = {"blob": "x" * 30_000}
    ids, latencies = [], []
    for _ in range(60):  # 60 x 30 KB = 1.8 MB for the stalled client, far over its 512 KiB allowance
        sent = time.monotonic()
        status, body = await loop.run_in_executor(
            None,
            lambda: rest(
                node.url,
                "POST",
                "/api/v1/events",
                {"kind": "big", "data": payload, "recipients": ["slow", "fast"]},
                acme,
            ),
        )
        assert status == 202
        ids.append(body["id"])
        frame = await bystander.next_of("notification")
        latencies.append(time.monotonic() - sent)
        assert frame["id"] == body["id"]

    # The stalled client now reads: it gets what was buffered, then the close.
    received, code = [], None
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(stalled.recv(), 10))
            if frame["type"] == "notification":
                received.append(frame)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else 1006
    assert code in (4010, 1006)
    assert len(received) < len(ids)

    # It reconnects with its cursor and recovers the rest.
    cursor = received[-1]["cursor"] if received else "0"
    back = await LiveClient.open(node.ws_url, mint(node.url, acme, "slow"), since=cursor)
    await back.collect(len(ids) - len(received), timeout=20)
    assert {f["id"] for f in received} | {f["id"] for f in back.notifications} == set(ids)
    latencies.sort()
    record(
        "slow consumer",
        frames_before_close=len(received),
        close_code=code,
        recovered_after_reconnect=True,
        bystander_p50_ms=round(latencies[len(latencies) // 2] * 1000, 1),
        bystander_max_ms=round(latencies[-1] * 1000, 1),
    )
    await back.close()
    await bystander.close()
