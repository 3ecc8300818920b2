"""The live page's socket: a browser signed in to the dashboard authenticates /ws/v1/ with its
session cookie (no token), only from Herald's own origin, and then receives its inbox live."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from dashboard.services import demo_notification_send
from notifications.fanout import stop_local_runner
from notifications.hub import stop_hub
from notifications.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

OWN_ORIGIN = b"http://testserver"
FOREIGN_ORIGIN = b"http://evil.example"
# Every wait is bounded; fan-out sweeps every 0.2 s in the test settings, so 5 s is generous.
TIMEOUT = 5


@pytest.fixture
def session_cookie(staff: Any) -> str:
    client = Client()
    client.force_login(staff)
    return client.cookies["sessionid"].value


@pytest.fixture
async def stop_background_tasks() -> Any:
    yield
    await stop_local_runner()
    await stop_hub()


async def open_socket(*, origin: bytes, cookie: str | None) -> WebsocketCommunicator:
    headers = [(b"origin", origin)]
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/v1/", headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def next_frame(communicator: WebsocketCommunicator) -> dict[str, Any]:
    return json.loads(await communicator.receive_from(timeout=TIMEOUT))


async def wait_until_delivered(event_id: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not await Event.objects.filter(
            tenant__slug="acme", number=event_id, status=Event.Status.DELIVERED
        ).aexists():
            await asyncio.sleep(0.02)


async def test_session_auth_from_own_origin_is_welcomed_and_gets_its_inbox_live(
    staff, session_cookie, stop_background_tasks
):
    communicator = await open_socket(origin=OWN_ORIGIN, cookie=session_cookie)
    await communicator.send_json_to({"type": "auth"})
    welcome = await next_frame(communicator)
    assert welcome["type"] == "welcome"
    assert (welcome["user"], welcome["tenant"], welcome["unread"]) == ("ann-ext", "acme", 0)
    assert (await next_frame(communicator))["type"] == "resumed"

    membership = await database_sync_to_async(lambda: staff.herald_membership)()
    event_id = await database_sync_to_async(demo_notification_send)(
        membership=membership, title="<img src=x onerror=alert(1)>", body="live"
    )
    notification = await next_frame(communicator)
    assert notification["type"] == "notification" and notification["id"] == event_id
    assert notification["title"] == "<img src=x onerror=alert(1)>"  # text; the page renders it as text
    assert notification["inbox"] is True and notification["read"] is False

    # Let fan-out finish its bookkeeping first: the test database is in-memory SQLite in shared-cache
    # mode, where a write that overlaps another thread's open read fails ("database table is
    # locked") instead of waiting as it does on a file database.
    await wait_until_delivered(event_id)

    await communicator.send_json_to({"type": "mark_read", "id": "r1", "ids": [event_id]})
    frames = [await next_frame(communicator), await next_frame(communicator)]
    by_type = {frame["type"]: frame for frame in frames}
    assert by_type["ack"]["id"] == "r1" and by_type["ack"]["updated"] == 1
    assert by_type["unread"]["count"] == 0
    await communicator.disconnect()


async def test_session_auth_from_a_foreign_origin_is_refused(session_cookie, stop_background_tasks):
    communicator = await open_socket(origin=FOREIGN_ORIGIN, cookie=session_cookie)
    await communicator.send_json_to({"type": "auth"})
    closed = await communicator.receive_output(timeout=TIMEOUT)
    assert closed["type"] == "websocket.close" and closed["code"] == 4001
    await communicator.disconnect()


async def test_auth_without_a_session_is_refused(db, stop_background_tasks):
    communicator = await open_socket(origin=OWN_ORIGIN, cookie=None)
    await communicator.send_json_to({"type": "auth"})
    closed = await communicator.receive_output(timeout=TIMEOUT)
    assert closed["type"] == "websocket.close" and closed["code"] == 4001
    await communicator.disconnect()
