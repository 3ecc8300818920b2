"""Abuse limits: frame rate, connection counts, API key and IP limits, token origins."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from accounts.models import Tenant
from notifications.models import Event
from tests.notifications.wsclient import Socket, connect


async def _set(tenant: Tenant, **fields) -> None:
    await sync_to_async(Tenant.objects.filter(pk=tenant.pk).update)(**fields)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_stack")
async def test_frame_flood_is_refused_then_closed_4029(tenant, make_token):
    await _set(tenant, client_messages_per_second=2)
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    for index in range(6):
        await socket.send({"type": "ping", "id": index})
    answers = [await socket.receive() for _ in range(5)]
    pongs = [a for a in answers if a["type"] == "pong"]
    errors = [a for a in answers if a["type"] == "error"]
    assert len(pongs) == 4  # the burst allowance: twice the per-second rate
    assert errors and errors[0]["code"] == "rate_limited" and errors[0]["retry_after"] >= 1
    for index in range(20):
        await socket.send({"type": "ping", "id": 100 + index})
    assert await socket.closed_with() == 4029


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_stack")
async def test_connections_per_user_and_per_tenant_are_limited(tenant, make_token):
    await _set(tenant, max_connections_per_user=2, max_connections=3)
    alice = await sync_to_async(make_token)(tenant, "alice")
    first, _ = await connect(alice)
    second, _ = await connect(alice)
    third = await Socket().open()
    await third.send({"type": "auth", "token": alice})
    assert await third.closed_with() == 4009
    bob, _ = await connect(await sync_to_async(make_token)(tenant, "bob"))  # 3rd of the tenant
    carol = await Socket().open()
    await carol.send({"type": "auth", "token": await sync_to_async(make_token)(tenant, "carol")})
    assert await carol.closed_with() == 4009
    await first.close()
    again, welcome = await connect(alice)  # a slot was freed
    assert welcome["user"] == "alice"
    for socket in (second, bob, again):
        await socket.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_stack")
async def test_token_connections_from_other_sites_are_refused_when_the_tenant_lists_origins(tenant, make_token):
    await _set(tenant, allowed_origins="https://app.acme.example\nhttps://admin.acme.example/")
    token = await sync_to_async(make_token)(tenant, "alice")
    evil = await Socket(headers=[(b"origin", b"https://evil.example")]).open()
    await evil.send({"type": "auth", "token": token})
    assert await evil.closed_with() == 4003
    good = await Socket(headers=[(b"origin", b"https://admin.acme.example")]).open()
    welcome, _, _ = await good.auth(token)
    assert welcome["user"] == "alice"
    await good.close()
    server_side = await Socket().open()  # no Origin: not a browser
    welcome, _, _ = await server_side.auth(token)
    assert welcome["user"] == "alice"
    await server_side.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_stack")
async def test_repeated_bad_tokens_from_one_ip_get_4029(tenant, make_token, settings):
    settings.HERALD = {**settings.HERALD, "AUTH_FAILURES_PER_IP_PER_MINUTE": 3}
    for _ in range(3):
        socket = await Socket().open()
        await socket.send({"type": "auth", "token": "x.y.z"})
        assert await socket.closed_with() == 4001
    socket = await Socket().open()
    await socket.send({"type": "auth", "token": await sync_to_async(make_token)(tenant, "alice")})
    assert await socket.closed_with() == 4029  # even a good token, for the rest of the minute


@pytest.mark.django_db
def test_per_api_key_publish_limit(tenant, make_key, client_for):
    tenant.key_publishes_per_minute = 2
    tenant.save()
    first, second = client_for(make_key(tenant)), client_for(make_key(tenant))
    body = {"kind": "k", "recipients": ["a"]}
    assert [first.post("/api/v1/events", body, format="json").status_code for _ in range(3)] == [202, 202, 429]
    assert second.post("/api/v1/events", body, format="json").status_code == 202  # its own budget
    assert Event.objects.count() == 3


@pytest.mark.django_db
def test_a_batch_counts_each_event(tenant, api):
    tenant.key_publishes_per_minute = 5
    tenant.save()
    events = [{"kind": "k", "recipients": ["a"]}] * 4
    assert api.post("/api/v1/events/batch", {"events": events}, format="json").status_code == 202
    response = api.post("/api/v1/events/batch", {"events": events}, format="json")
    assert response.status_code == 429
    assert Event.objects.count() == 4  # nothing partially applied


@pytest.mark.django_db
def test_token_minting_per_ip(api, settings):
    settings.HERALD = {**settings.HERALD, "TOKENS_PER_IP_PER_MINUTE": 2}
    statuses = [api.post("/api/v1/tokens", {"user_id": "a"}, format="json").status_code for _ in range(3)]
    assert statuses == [201, 201, 429]


@pytest.mark.django_db
def test_failed_authentication_per_ip_then_429_even_with_a_good_key(tenant, make_key, client_for, settings):
    settings.HERALD = {**settings.HERALD, "AUTH_FAILURES_PER_IP_PER_MINUTE": 3}
    bad = client_for("hk_nope_nope")
    assert [bad.get("/api/v1/topics").status_code for _ in range(3)] == [401, 401, 401]
    response = client_for(make_key(tenant)).get("/api/v1/topics")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
