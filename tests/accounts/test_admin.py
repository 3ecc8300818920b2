"""The Django admin from every side: superusers see all, tenant staff only their own tenant, and
another tenant's rows are unreachable (not listed, not openable, not choosable, not actionable)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.db import models
from django.test import Client

from accounts.models import ApiKey, EndUser, Membership, SigningKey, Tenant
from accounts.services import membership_create
from notifications.models import Event, FanoutJob, Notification, Subscription, Topic
from notifications.services import EventInput, events_publish, subscriptions_add

pytestmark = pytest.mark.django_db

HERALD_MODELS = sorted(
    (model for model in admin.site._registry if model._meta.app_label in {"accounts", "notifications"}),
    key=lambda model: model._meta.label,
)
MISSING_PK = 987654


@dataclass
class TenantWorld:
    """One tenant with a row of every kind the admin shows. Every name contains the tenant's slug,
    so a page can be searched for any trace of it."""

    tenant: Tenant
    staff_admin: User
    staff_viewer: User
    api_key: ApiKey
    api_key_secret: str
    end_user: EndUser
    topic: Topic
    subscription: Subscription
    event: Event
    notification: Notification
    pending_event: Event
    rows: dict[type[models.Model], models.Model] = field(default_factory=dict)


def make_staff(username: str, tenant: Tenant | None = None, role: str = "admin") -> User:
    user = User.objects.create_user(username=username, password="pw", is_staff=True)
    if tenant is not None:
        membership_create(user=user, tenant=tenant, role=role)
    return user


def build_world(tenant: Tenant, make_key: Callable[..., str], run_fanout: Callable[[], int]) -> TenantWorld:
    slug = tenant.slug
    secret = make_key(tenant)
    api_key = ApiKey.objects.get(prefix=secret.split("_")[1])
    api_key.name = f"{slug}-key"
    api_key.save()
    topic = Topic.objects.create(tenant=tenant, key=f"{slug}.orders", name=f"{slug} orders")
    subscriptions_add(tenant=tenant, user_id=f"{slug}-customer", topic_keys=[topic.key])
    events_publish(
        tenant=tenant,
        api_key=api_key,
        items=[EventInput(kind=f"{slug}.shipped", title=f"{slug} shipped", topics=(topic.key,))],
    )
    run_fanout()
    # Left in the outbox, so there is a fan-out job to look at.
    events_publish(tenant=tenant, api_key=api_key, items=[EventInput(kind=f"{slug}.pending", broadcast=True)])
    staff_admin = make_staff(f"{slug}-admin", tenant, "admin")
    world = TenantWorld(
        tenant=tenant,
        staff_admin=staff_admin,
        staff_viewer=make_staff(f"{slug}-viewer", tenant, "viewer"),
        api_key=api_key,
        api_key_secret=secret,
        end_user=EndUser.objects.get(tenant=tenant, external_id=f"{slug}-customer"),
        topic=topic,
        subscription=Subscription.objects.get(tenant=tenant),
        event=Event.objects.get(tenant=tenant, kind=f"{slug}.shipped"),
        notification=Notification.objects.get(tenant=tenant),
        pending_event=Event.objects.get(tenant=tenant, kind=f"{slug}.pending"),
    )
    world.rows = {
        Tenant: tenant,
        Membership: staff_admin.herald_membership,
        ApiKey: api_key,
        SigningKey: SigningKey.objects.filter(tenant=tenant).first(),
        EndUser: world.end_user,
        Topic: topic,
        Subscription: world.subscription,
        Event: world.event,
        Notification: world.notification,
        FanoutJob: FanoutJob.objects.get(tenant=tenant),
    }
    return world


@pytest.fixture
def acme(tenant: Tenant, make_key: Callable[..., str], run_fanout: Callable[[], int]) -> TenantWorld:
    return build_world(tenant, make_key, run_fanout)


@pytest.fixture
def globex(other_tenant: Tenant, make_key: Callable[..., str], run_fanout: Callable[[], int]) -> TenantWorld:
    return build_world(other_tenant, make_key, run_fanout)


@pytest.fixture
def superuser(db: Any) -> User:
    return User.objects.create_superuser(username="root", password="pw")


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def url(model: type[models.Model], view: str, *args: Any) -> str:
    opts = model._meta
    return (
        f"/admin/{opts.app_label}/{opts.model_name}/"
        + "".join(f"{arg}/" for arg in args)
        + (f"{view}/" if view else "")
    )


def listed(response: Any) -> list[models.Model]:
    return list(response.context["cl"].result_list)


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_every_herald_model_is_registered() -> None:
    assert set(HERALD_MODELS) == {
        Tenant,
        Membership,
        ApiKey,
        SigningKey,
        EndUser,
        Topic,
        Subscription,
        Event,
        Notification,
        FanoutJob,
    }


# --- Attacks from another tenant's staff -----------------------------------------------------------


@pytest.mark.parametrize("model", HERALD_MODELS, ids=lambda model: model.__name__)
def test_staff_changelist_lists_only_their_own_tenants_rows(model: Any, acme: TenantWorld, globex: TenantWorld) -> None:
    response = login(acme.staff_admin).get(url(model, ""))
    if model is FanoutJob:  # outbox internals are for platform operators only
        assert response.status_code == 403
        return
    assert response.status_code == 200
    rows = listed(response)
    assert rows, "the tenant's own rows are listed"
    own_pk = acme.tenant.pk
    assert all((row.pk if model is Tenant else row.tenant_id) == own_pk for row in rows)
    assert "globex" not in response.content.decode()


@pytest.mark.parametrize("model", HERALD_MODELS, ids=lambda model: model.__name__)
@pytest.mark.parametrize("view", ["change", "delete", "history"])
@pytest.mark.parametrize("role", ["staff_admin", "staff_viewer"])
def test_another_tenants_object_answers_exactly_like_a_missing_one(
    model: Any, view: str, role: str, acme: TenantWorld, globex: TenantWorld
) -> None:
    client = login(getattr(acme, role))
    foreign = client.get(url(model, view, globex.rows[model].pk))
    missing = client.get(url(model, view, MISSING_PK))
    assert foreign.status_code == missing.status_code
    assert foreign.get("Location") == missing.get("Location")
    assert foreign.status_code in (302, 403)
    if foreign.status_code == 302:
        followed = client.get(foreign["Location"])
        assert any("exist. Perhaps it was deleted?" in message for message in messages_of(followed))
        assert "globex" not in followed.content.decode()


def test_staff_own_object_pages_do_open(acme: TenantWorld, globex: TenantWorld) -> None:
    """The page above is a real page for one's own rows: the 'not found' is scoping, not a bad URL."""
    client = login(acme.staff_admin)
    for model, row in acme.rows.items():
        expected = 403 if model is FanoutJob else 200
        assert client.get(url(model, "change", row.pk)).status_code == expected, model


def test_staff_change_post_cannot_move_a_row_to_another_tenant(acme: TenantWorld, globex: TenantWorld) -> None:
    client = login(acme.staff_admin)
    response = client.post(
        url(Topic, "change", acme.topic.pk),
        {"tenant": globex.tenant.pk, "name": "renamed", "description": ""},
    )
    assert response.status_code == 302
    acme.topic.refresh_from_db()
    assert acme.topic.tenant == acme.tenant and acme.topic.name == "renamed"


def test_staff_add_post_naming_another_tenant_creates_the_row_in_their_own(
    acme: TenantWorld, globex: TenantWorld
) -> None:
    client = login(acme.staff_admin)
    response = client.post(url(EndUser, "add"), {"tenant": globex.tenant.pk, "external_id": "newcomer"})
    assert response.status_code == 302
    assert EndUser.objects.get(external_id="newcomer").tenant == acme.tenant


def test_staff_form_never_offers_another_tenant(acme: TenantWorld, globex: TenantWorld) -> None:
    response = login(acme.staff_admin).get(url(Topic, "add"))
    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields["tenant"].queryset) == [acme.tenant]
    assert "globex" not in response.content.decode()


def test_staff_bulk_revoke_with_another_tenants_key_ids_touches_nothing(acme: TenantWorld, globex: TenantWorld) -> None:
    response = login(acme.staff_admin).post(
        url(ApiKey, ""),
        {"action": "revoke_keys", "_selected_action": [globex.api_key.pk]},
    )
    assert response.status_code == 302
    globex.api_key.refresh_from_db()
    assert globex.api_key.revoked_at is None


def test_staff_bulk_revoke_mixing_ids_revokes_only_their_own(acme: TenantWorld, globex: TenantWorld) -> None:
    response = login(acme.staff_admin).post(
        url(ApiKey, ""),
        {"action": "revoke_keys", "_selected_action": [acme.api_key.pk, globex.api_key.pk]},
        follow=True,
    )
    assert "Revoked 1 API key(s)." in messages_of(response)
    acme.api_key.refresh_from_db()
    globex.api_key.refresh_from_db()
    assert acme.api_key.revoked_at is not None and globex.api_key.revoked_at is None


def test_staff_bulk_delete_with_another_tenants_ids_deletes_nothing_of_theirs(
    acme: TenantWorld, globex: TenantWorld
) -> None:
    client = login(acme.staff_admin)
    response = client.post(
        url(EndUser, ""),
        {"action": "delete_selected", "_selected_action": [globex.end_user.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert EndUser.objects.filter(pk=globex.end_user.pk).exists()
    # Even "select all across pages" means all of one's own tenant.
    client.post(
        url(EndUser, ""),
        {
            "action": "delete_selected",
            "select_across": "1",
            "index": "0",
            "_selected_action": [globex.end_user.pk],
            "post": "yes",
        },
    )
    assert not EndUser.objects.filter(tenant=acme.tenant).exists()
    assert EndUser.objects.filter(pk=globex.end_user.pk).exists()


def test_staff_cannot_run_platform_actions_even_on_their_own_tenant(acme: TenantWorld, globex: TenantWorld) -> None:
    client = login(acme.staff_admin)
    changelist = client.get(url(Tenant, ""))
    assert changelist.context["action_form"] is None
    for tenant in (acme.tenant, globex.tenant):
        client.post(url(Tenant, ""), {"action": "deactivate_tenants", "_selected_action": [tenant.pk]})
        tenant.refresh_from_db()
        assert tenant.is_active
    keys_before = SigningKey.objects.count()
    client.post(url(Tenant, ""), {"action": "rotate_signing_keys", "_selected_action": [acme.tenant.pk]})
    assert SigningKey.objects.count() == keys_before


def test_staff_cannot_probe_secrets_through_changelist_filters(acme: TenantWorld, globex: TenantWorld) -> None:
    """Django allows `?<field>__startswith=` on any local field; for secrets that would be an oracle."""
    client = login(acme.staff_viewer)
    secret = SigningKey.objects.get(pk=acme.rows[SigningKey].pk).secret
    assert client.get(url(SigningKey, ""), {"secret__startswith": secret[:1]}).status_code == 400
    assert client.get(url(ApiKey, ""), {"secret_hash__startswith": acme.api_key.secret_hash[:1]}).status_code == 400
    assert client.get(url(Tenant, ""), {"signing_keys__secret__startswith": secret[:1]}).status_code == 400
    searched = client.get(url(SigningKey, ""), {"q": secret})
    assert searched.status_code == 200 and listed(searched) == []


def test_staff_autocomplete_offers_only_their_own_tenants_rows(acme: TenantWorld, globex: TenantWorld) -> None:
    client = login(acme.staff_admin)
    for model_field, expected in (("user", acme.end_user.external_id), ("topic", acme.topic.key)):
        response = client.get(
            "/admin/autocomplete/",
            {"app_label": "notifications", "model_name": "subscription", "field_name": model_field, "term": ""},
        )
        assert response.status_code == 200
        assert [result["text"] for result in response.json()["results"]] == [expected]


# --- Roles ------------------------------------------------------------------------------------------


def test_staff_need_no_permission_rows(acme: TenantWorld) -> None:
    assert not acme.staff_admin.user_permissions.exists() and not acme.staff_admin.groups.exists()
    response = login(acme.staff_admin).get("/admin/")
    models_shown = {entry["object_name"] for app in response.context["available_apps"] for entry in app["models"]}
    assert models_shown == {"Tenant", "Membership", "ApiKey", "SigningKey", "EndUser", "Topic", "Subscription"} | {
        "Event",
        "Notification",
    }


def test_viewer_sees_but_cannot_add_change_or_delete(acme: TenantWorld) -> None:
    client = login(acme.staff_viewer)
    assert client.get(url(Topic, "")).context["action_form"] is None  # no action bar, no checkboxes
    assert client.get(url(Topic, "add")).status_code == 403
    assert client.post(url(Topic, "add"), {"key": "viewer.topic"}).status_code == 403
    assert not Topic.objects.filter(key="viewer.topic").exists()

    page = client.get(url(Topic, "change", acme.topic.pk))
    assert page.status_code == 200 and not page.context["has_change_permission"]
    response = client.post(url(Topic, "change", acme.topic.pk), {"name": "viewer was here"})
    assert response.status_code == 403
    acme.topic.refresh_from_db()
    assert acme.topic.name != "viewer was here"

    assert client.get(url(Topic, "delete", acme.topic.pk)).status_code == 403
    assert client.post(url(Topic, "delete", acme.topic.pk), {"post": "yes"}).status_code == 403
    client.post(url(Topic, ""), {"action": "delete_selected", "_selected_action": [acme.topic.pk], "post": "yes"})
    client.post(url(ApiKey, ""), {"action": "revoke_keys", "_selected_action": [acme.api_key.pk]})
    assert Topic.objects.filter(pk=acme.topic.pk).exists()
    acme.api_key.refresh_from_db()
    assert acme.api_key.revoked_at is None


def test_viewer_does_not_see_memberships_and_admin_sees_only_their_tenants(
    acme: TenantWorld, globex: TenantWorld
) -> None:
    assert login(acme.staff_viewer).get(url(Membership, "")).status_code == 403
    client = login(acme.staff_admin)
    response = client.get(url(Membership, ""))
    assert {row.pk for row in listed(response)} == set(
        Membership.objects.filter(tenant=acme.tenant).values_list("pk", flat=True)
    )
    assert client.get(url(Membership, "add")).status_code == 403
    # Promoting oneself is not possible either.
    own = acme.staff_viewer.herald_membership
    assert client.post(url(Membership, "change", own.pk), {"role": "admin"}).status_code == 403
    own.refresh_from_db()
    assert own.role == "viewer"


def test_staff_see_their_own_tenant_read_only(acme: TenantWorld) -> None:
    client = login(acme.staff_admin)
    page = client.get(url(Tenant, "change", acme.tenant.pk))
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert str(acme.tenant.max_connections) in page.content.decode()
    response = client.post(url(Tenant, "change", acme.tenant.pk), {"name": "Acme", "max_connections": 10**9})
    assert response.status_code == 403
    acme.tenant.refresh_from_db()
    assert acme.tenant.max_connections != 10**9
    assert client.get(url(Tenant, "add")).status_code == 403


def test_staff_without_membership_see_nothing(acme: TenantWorld) -> None:
    client = login(make_staff("drifter"))
    index = client.get("/admin/")
    assert index.status_code == 200 and index.context["available_apps"] == []
    for model in HERALD_MODELS:
        assert client.get(url(model, "")).status_code == 403, model
        assert client.get(url(model, "change", acme.rows[model].pk)).status_code == 403, model


def test_staff_cannot_reach_django_users_even_with_permission_rows(acme: TenantWorld) -> None:
    user = acme.staff_admin
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="auth"))
    client = login(user)
    assert client.get("/admin/auth/user/").status_code == 403
    assert client.post(f"/admin/auth/user/{user.pk}/change/", {"is_superuser": "on"}).status_code == 403
    user.refresh_from_db()
    assert not user.is_superuser


# --- API keys -------------------------------------------------------------------------------------------


def test_api_key_secret_is_shown_once_and_only_its_hash_is_stored(acme: TenantWorld, globex: TenantWorld) -> None:
    client = login(acme.staff_admin)
    response = client.post(
        url(ApiKey, "add"),
        {"tenant": globex.tenant.pk, "name": "deploy bot", "scopes": ["read", "publish"]},
        follow=True,
    )
    assert response.status_code == 200
    shown = [re.search(r"hk_[0-9a-f]+_[A-Za-z0-9_-]+", message) for message in messages_of(response)]
    raw = next(match.group(0) for match in shown if match)
    prefix, secret = raw.split("_", 2)[1:]
    api_key = ApiKey.objects.get(name="deploy bot")
    assert api_key.tenant == acme.tenant  # not the tenant the POST named
    assert api_key.prefix == prefix and api_key.scopes == ["publish", "read"]
    assert api_key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiKey.objects.filter(pk=api_key.pk).values().get())

    for page in (url(ApiKey, ""), url(ApiKey, "change", api_key.pk), url(ApiKey, "history", api_key.pk)):
        content = client.get(page).content.decode()
        assert secret not in content and api_key.secret_hash not in content
        assert f"hk_{prefix}_" in content or page.endswith("history/")


def test_the_new_key_works_against_the_api(acme: TenantWorld) -> None:
    response = login(acme.staff_admin).post(url(ApiKey, "add"), {"name": "bot", "scopes": ["admin"]}, follow=True)
    raw = re.search(r"hk_[0-9a-f]+_[A-Za-z0-9_-]+", " ".join(messages_of(response)))
    assert raw is not None
    api = Client(HTTP_AUTHORIZATION=f"Bearer {raw.group(0)}")
    assert api.get("/api/v1/topics").status_code == 200


def test_api_key_needs_at_least_one_known_scope(acme: TenantWorld) -> None:
    client = login(acme.staff_admin)
    for scopes in ([], ["root"]):
        response = client.post(url(ApiKey, "add"), {"name": "bad", "scopes": scopes})
        assert response.status_code == 200 and response.context["adminform"].form.errors["scopes"]
    assert not ApiKey.objects.filter(name="bad").exists()


def test_api_key_change_form_is_read_only_except_the_name(acme: TenantWorld, globex: TenantWorld) -> None:
    client = login(acme.staff_admin)
    page = client.get(url(ApiKey, "change", acme.api_key.pk))
    assert set(page.context["adminform"].form.fields) == {"tenant", "name"}
    client.post(
        url(ApiKey, "change", acme.api_key.pk),
        {"tenant": globex.tenant.pk, "name": "renamed", "scopes": ["admin"], "revoked_at": ""},
    )
    before = acme.api_key.secret_hash
    acme.api_key.refresh_from_db()
    assert (acme.api_key.name, acme.api_key.tenant, acme.api_key.secret_hash) == ("renamed", acme.tenant, before)
    assert acme.api_key.scopes == ["admin", "publish", "read"]


def test_superuser_cannot_move_an_api_key_to_another_tenant(
    superuser: User, acme: TenantWorld, globex: TenantWorld
) -> None:
    response = login(superuser).post(
        url(ApiKey, "change", acme.api_key.pk), {"tenant": globex.tenant.pk, "name": "moved?"}
    )
    assert response.status_code == 302
    acme.api_key.refresh_from_db()
    assert acme.api_key.tenant == acme.tenant and acme.api_key.name == "moved?"


def test_superuser_creates_a_key_for_the_tenant_they_choose(
    superuser: User, acme: TenantWorld, globex: TenantWorld
) -> None:
    response = login(superuser).post(
        url(ApiKey, "add"), {"tenant": globex.tenant.pk, "name": "ops", "scopes": ["read"]}, follow=True
    )
    assert any("hk_" in message for message in messages_of(response))
    assert ApiKey.objects.get(name="ops").tenant == globex.tenant


def test_api_keys_cannot_be_deleted_only_revoked(superuser: User, acme: TenantWorld) -> None:
    client = login(superuser)
    assert client.post(url(ApiKey, "delete", acme.api_key.pk), {"post": "yes"}).status_code == 403
    client.post(url(ApiKey, ""), {"action": "revoke_keys", "_selected_action": [acme.api_key.pk]})
    acme.api_key.refresh_from_db()
    assert acme.api_key.revoked_at is not None


# --- Signing keys ---------------------------------------------------------------------------------------


def test_signing_key_secrets_appear_on_no_admin_page(superuser: User, acme: TenantWorld, globex: TenantWorld) -> None:
    secrets = list(SigningKey.objects.values_list("secret", flat=True))
    assert len(secrets) == 2
    for user in (superuser, acme.staff_admin, acme.staff_viewer):
        client = login(user)
        pages = ["/admin/", "/admin/accounts/", "/admin/notifications/"]
        for model, row in acme.rows.items():
            pages += [url(model, ""), url(model, "change", row.pk), url(model, "history", row.pk)]
            pages += [url(model, "delete", row.pk), url(model, "add")]
        for page in pages:
            response = client.get(page, follow=True)
            content = response.content.decode()
            for secret in secrets:
                assert secret not in content, (user, page)


def test_signing_keys_are_read_only_even_for_superusers(superuser: User, acme: TenantWorld) -> None:
    client = login(superuser)
    key = acme.rows[SigningKey]
    assert client.get(url(SigningKey, "add")).status_code == 403
    assert client.post(url(SigningKey, "change", key.pk), {"revoked_at": "2020-01-01"}).status_code == 403
    assert client.post(url(SigningKey, "delete", key.pk), {"post": "yes"}).status_code == 403
    assert SigningKey.objects.filter(pk=key.pk, revoked_at__isnull=True).exists()


# --- Platform admin ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", HERALD_MODELS, ids=lambda model: model.__name__)
def test_superuser_sees_every_tenants_rows(model: Any, superuser: User, acme: TenantWorld, globex: TenantWorld) -> None:
    response = login(superuser).get(url(model, ""))
    assert response.status_code == 200
    assert {row.pk for row in listed(response)} == set(model._default_manager.values_list("pk", flat=True))
    assert "globex" in response.content.decode() and "acme" in response.content.decode()


def test_superuser_creating_a_tenant_also_creates_its_signing_key(superuser: User) -> None:
    response = login(superuser).post(
        url(Tenant, "add"),
        {
            "slug": "initech",
            "name": "Initech",
            "is_active": "on",
            "max_connections": 50,
            "max_connections_per_user": 5,
            "publishes_per_minute": 60,
            "key_publishes_per_minute": 60,
            "client_messages_per_second": 20,
            "max_subscriptions_per_connection": 100,
            "retention_days": 7,
            "max_payload_bytes": 1024,
        },
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="initech")
    assert (tenant.max_connections, tenant.retention_days) == (50, 7)
    assert SigningKey.objects.filter(tenant=tenant, revoked_at__isnull=True).count() == 1


def test_superuser_tenant_form_validates_limits(superuser: User) -> None:
    response = login(superuser).post(
        url(Tenant, "add"),
        {
            "slug": "tiny",
            "name": "Tiny",
            "max_connections": 1,
            "publishes_per_minute": 1,
            "retention_days": 1,
            "max_payload_bytes": 10,
        },
    )
    assert response.status_code == 200 and "max_payload_bytes" in response.context["adminform"].form.errors
    assert not Tenant.objects.filter(slug="tiny").exists()


def test_superuser_deactivates_activates_and_rotates(superuser: User, acme: TenantWorld, globex: TenantWorld) -> None:
    client = login(superuser)
    client.post(url(Tenant, ""), {"action": "deactivate_tenants", "_selected_action": [acme.tenant.pk]})
    acme.tenant.refresh_from_db()
    globex.tenant.refresh_from_db()
    assert not acme.tenant.is_active and globex.tenant.is_active
    inactive_list = client.get(url(Tenant, ""), {"is_active__exact": "0"})
    assert [row.pk for row in listed(inactive_list)] == [acme.tenant.pk]

    client.post(url(Tenant, ""), {"action": "activate_tenants", "_selected_action": [acme.tenant.pk]})
    acme.tenant.refresh_from_db()
    assert acme.tenant.is_active

    first = acme.rows[SigningKey]
    response = client.post(
        url(Tenant, ""), {"action": "rotate_signing_keys", "_selected_action": [acme.tenant.pk]}, follow=True
    )
    assert any("Rotated the signing key of 1 tenant" in message for message in messages_of(response))
    keys = SigningKey.objects.filter(tenant=acme.tenant)
    assert keys.count() == 2 and keys.filter(revoked_at__isnull=True).count() == 2
    assert SigningKey.objects.filter(tenant=globex.tenant).count() == 1
    assert keys.exclude(pk=first.pk).get().kid != first.kid


def test_superuser_searches_tenants(superuser: User, acme: TenantWorld, globex: TenantWorld) -> None:
    response = login(superuser).get(url(Tenant, ""), {"q": "glob"})
    assert [row.pk for row in listed(response)] == [globex.tenant.pk]


def test_superuser_manages_memberships(superuser: User, acme: TenantWorld) -> None:
    newcomer = User.objects.create_user(username="newcomer", password="pw", is_staff=True)
    response = login(superuser).post(
        url(Membership, "add"),
        {"user": newcomer.pk, "tenant": acme.tenant.pk, "role": "viewer", "external_id": "newcomer"},
    )
    assert response.status_code == 302
    membership = Membership.objects.get(user=newcomer)
    assert (membership.tenant, membership.role) == (acme.tenant, "viewer")
    assert login(newcomer).get(url(Topic, "")).status_code == 200


def test_tenants_are_deactivated_not_deleted(superuser: User, acme: TenantWorld) -> None:
    assert login(superuser).post(url(Tenant, "delete", acme.tenant.pk), {"post": "yes"}).status_code == 403
    assert Tenant.objects.filter(pk=acme.tenant.pk).exists()
