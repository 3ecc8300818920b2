"""/ws/v1/ops/: who may watch which tenant's live figures, and that figures arrive."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import membership_create
from config.asgi import application
from notifications import services
from notifications.services import EventInput
from tests.notifications.wsclient import connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_stack")]


async def ops_socket(client, user) -> WebsocketCommunicator:
    await sync_to_async(client.force_login)(user)
    cookie = client.cookies["sessionid"].value
    return WebsocketCommunicator(
        application,
        "/ws/v1/ops/",
        headers=[(b"origin", b"http://localhost"), (b"cookie", f"sessionid={cookie}".encode())],
    )


async def test_staff_watch_their_own_tenant_and_figures_arrive(
    client, django_user_model, tenant, other_tenant, make_token
):
    staff = await sync_to_async(django_user_model.objects.create_user)("ops", password="pw-123456", is_staff=True)
    await sync_to_async(membership_create)(user=staff, tenant=tenant, role="viewer")
    ops = await ops_socket(client, staff)
    assert (await ops.connect())[0]
    assert await ops.receive_json_from() == {"type": "tenants", "tenants": ["acme"]}
    await ops.send_json_to({"type": "watch", "tenant": "globex"})
    assert (await ops.receive_json_from())["type"] == "error"
    await ops.send_json_to({"type": "watch", "tenant": "acme"})
    assert await ops.receive_json_from() == {"type": "watching", "tenant": "acme"}

    user_socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    await sync_to_async(services.events_publish)(
        tenant=tenant, api_key=None, items=[EventInput(kind="k", recipients=("alice",))]
    )
    await user_socket.receive_type("notification")
    seen_delivery = False
    for _ in range(8):  # one stats frame per second
        stats = await ops.receive_json_from(timeout=3)
        assert stats["type"] == "stats" and stats["tenant"] == "acme"
        assert stats["connections"] <= 1
        if stats["deliveries_per_s"] > 0:
            assert stats["connections"] == 1 and stats["latency_ms"]["p99"] is not None
            seen_delivery = True
            break
    assert seen_delivery
    await user_socket.close()
    await ops.disconnect()


async def test_platform_admin_may_switch_tenants(client, django_user_model, tenant, other_tenant):
    admin = await sync_to_async(django_user_model.objects.create_superuser)("root", password="pw-123456")
    ops = await ops_socket(client, admin)
    assert (await ops.connect())[0]
    assert (await ops.receive_json_from())["tenants"] == ["acme", "globex"]
    for slug in ("globex", "acme"):
        await ops.send_json_to({"type": "watch", "tenant": slug})
        assert (await ops.receive_json_from())["tenant"] == slug
    await ops.disconnect()


async def test_anonymous_and_end_users_cannot_open_it(client, django_user_model):
    plain = await sync_to_async(django_user_model.objects.create_user)("nobody", password="pw-123456")
    for user in (None, plain):
        if user is None:
            ops = WebsocketCommunicator(application, "/ws/v1/ops/", headers=[(b"origin", b"http://localhost")])
        else:
            ops = await ops_socket(client, user)
        connected, _ = await ops.connect()
        assert not connected
