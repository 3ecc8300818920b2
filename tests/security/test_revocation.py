"""Revoking credentials takes effect at once: new connections are refused and live ones closed."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from accounts.models import SigningKey
from accounts.services import membership_create, signing_key_revoke, signing_key_rotate
from tests.notifications.wsclient import Socket, connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_stack")]


async def auth_close_code(token: str) -> int:
    socket = await Socket().open()
    await socket.send({"type": "auth", "token": token})
    return await socket.closed_with()


async def test_revoking_a_signing_key_closes_its_connections_and_refuses_its_tokens(tenant, make_token):
    old_token = await sync_to_async(make_token)(tenant, "alice")
    old_key = await sync_to_async(lambda: SigningKey.objects.get(tenant=tenant, revoked_at__isnull=True))()
    await sync_to_async(signing_key_rotate)(tenant=tenant)
    new_token = await sync_to_async(make_token)(tenant, "bob")
    on_old, _ = await connect(old_token)
    on_new, _ = await connect(new_token)
    await sync_to_async(signing_key_revoke)(tenant=tenant, signing_key=old_key)
    assert await on_old.closed_with() == 4003
    assert await on_new.nothing(0.3)  # other keys' connections stay
    assert await auth_close_code(old_token) == 4001
    await on_new.close()


async def test_revoking_the_last_key_makes_a_new_one(tenant, make_token):
    key = await sync_to_async(lambda: SigningKey.objects.get(tenant=tenant))()
    await sync_to_async(signing_key_revoke)(tenant=tenant, signing_key=key)
    fresh = await sync_to_async(make_token)(tenant, "alice")
    socket, welcome = await connect(fresh)
    assert welcome["user"] == "alice"
    await socket.close()


async def test_revoking_a_users_tokens_over_rest_closes_their_sockets(tenant, make_key, make_token, client_for):
    alice_token = await sync_to_async(make_token)(tenant, "alice")
    alice, _ = await connect(alice_token)
    bob, _ = await connect(await sync_to_async(make_token)(tenant, "bob"))
    api = client_for(await sync_to_async(make_key)(tenant, ("admin",)))
    response = await sync_to_async(api.post)("/api/v1/users/alice/revoke-tokens")
    assert response.status_code == 204
    assert await alice.closed_with() == 4003
    assert await bob.nothing(0.3)
    assert await auth_close_code(alice_token) == 4001
    inbox = await sync_to_async(client_for(alice_token).get)("/api/v1/inbox")
    assert inbox.status_code == 401
    # A token minted after the revocation works (iat is in whole seconds: wait past this one).
    import asyncio

    await asyncio.sleep(1.1)
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    await socket.close()
    await bob.close()


@pytest.mark.django_db
def test_revoke_tokens_needs_the_admin_scope(tenant, make_key, client_for):
    response = client_for(make_key(tenant, ("publish", "read"))).post("/api/v1/users/alice/revoke-tokens")
    assert response.status_code == 403


def _staff(tenant, role: str):
    user = get_user_model().objects.create_user(f"{tenant.slug}-{role}", password="pw-123456", is_staff=True)
    membership_create(user=user, tenant=tenant, role=role)
    return user


def test_admin_actions_revoke_only_within_the_staff_tenant(tenant, other_tenant, client):
    mine = SigningKey.objects.get(tenant=tenant)
    theirs = SigningKey.objects.get(tenant=other_tenant)
    client.force_login(_staff(tenant, "admin"))
    client.post(
        "/admin/accounts/signingkey/", {"action": "revoke_signing_keys", "_selected_action": [mine.pk, theirs.pk]}
    )
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.revoked_at is not None and theirs.revoked_at is None
    viewer = client.__class__()
    viewer.force_login(_staff(tenant, "viewer"))
    page = viewer.get("/admin/accounts/signingkey/")
    assert b"revoke_signing_keys" not in page.content
