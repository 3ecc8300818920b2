"""Admin for topics, subscriptions, events, inbox rows and fan-out jobs: relation choices stay inside
one tenant, and delivery history is read-only for everyone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import EndUser, Tenant
from accounts.services import membership_create
from notifications.models import Event, FanoutJob, Notification, Subscription, Topic
from notifications.services import EventInput, events_publish, subscriptions_add

pytestmark = pytest.mark.django_db

MISSING_PK = 987654


def populate(tenant: Tenant, readers: int = 1) -> None:
    """A topic with subscribers, one delivered event to it (so inbox rows), and one pending event."""
    topic = Topic.objects.create(tenant=tenant, key=f"{tenant.slug}.news")
    for number in range(readers):
        subscriptions_add(tenant=tenant, user_id=f"{tenant.slug}-reader{number}", topic_keys=[topic.key])
    events_publish(
        tenant=tenant, api_key=None, items=[EventInput(kind=f"{tenant.slug}.news", title="Hello", topics=(topic.key,))]
    )


@pytest.fixture
def world(tenant: Tenant, other_tenant: Tenant, run_fanout: Callable[[], int]) -> None:
    populate(tenant)
    populate(other_tenant)
    run_fanout()
    events_publish(tenant=tenant, api_key=None, items=[EventInput(kind="acme.later", broadcast=True)])
    events_publish(tenant=other_tenant, api_key=None, items=[EventInput(kind="globex.later", broadcast=True)])


def login_staff(tenant: Tenant, role: str = "admin") -> Client:
    user = User.objects.create_user(username=f"{tenant.slug}-{role}", password="pw", is_staff=True)
    membership_create(user=user, tenant=tenant, role=role)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff(tenant: Tenant, world: None) -> Client:
    return login_staff(tenant)


@pytest.fixture
def root(world: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(username="root", password="pw"))
    return client


def form_errors(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, "the form is shown again with its errors"
    return dict(response.context["adminform"].form.errors)


def listed(response: Any) -> list[Any]:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


# --- Relation choices ----------------------------------------------------------------------------------


def test_staff_cannot_subscribe_a_user_to_another_tenants_topic(
    staff: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    own_user = EndUser.objects.get(tenant=tenant)
    foreign_topic = Topic.objects.get(tenant=other_tenant)
    before = Subscription.objects.count()
    errors = form_errors(
        staff.post("/admin/notifications/subscription/add/", {"topic": foreign_topic.pk, "user": own_user.pk})
    )
    missing = form_errors(
        staff.post("/admin/notifications/subscription/add/", {"topic": MISSING_PK, "user": own_user.pk})
    )
    assert errors["topic"] == missing["topic"]  # "not a valid choice", like an id that does not exist
    assert Subscription.objects.count() == before


def test_staff_cannot_repoint_their_subscription_at_another_tenants_user(
    staff: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    subscription = Subscription.objects.get(tenant=tenant)
    foreign_user = EndUser.objects.get(tenant=other_tenant, external_id="globex-reader0")
    errors = form_errors(
        staff.post(
            f"/admin/notifications/subscription/{subscription.pk}/change/",
            {"topic": subscription.topic_id, "user": foreign_user.pk, "tenant": other_tenant.pk},
        )
    )
    assert "user" in errors
    subscription.refresh_from_db()
    assert subscription.user.tenant == tenant and subscription.tenant == tenant


def test_staff_subscription_form_offers_only_their_own_rows(staff: Client, tenant: Tenant) -> None:
    form = staff.get("/admin/notifications/subscription/add/").context["adminform"].form
    assert set(form.fields["topic"].queryset) == set(Topic.objects.filter(tenant=tenant))
    assert set(form.fields["user"].queryset) == set(EndUser.objects.filter(tenant=tenant))


def test_staff_subscribes_their_own_user(staff: Client, tenant: Tenant) -> None:
    topic = Topic.objects.create(tenant=tenant, key="acme.extra")
    user = EndUser.objects.get(tenant=tenant)
    response = staff.post("/admin/notifications/subscription/add/", {"topic": topic.pk, "user": user.pk})
    assert response.status_code == 302
    assert Subscription.objects.get(topic=topic, user=user).tenant == tenant


def test_superuser_cannot_wire_one_tenants_topic_to_another_tenants_user(
    root: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    topic = Topic.objects.create(tenant=tenant, key="acme.extra")
    foreign_user = EndUser.objects.get(tenant=other_tenant)
    errors = form_errors(
        root.post(
            "/admin/notifications/subscription/add/",
            {"tenant": tenant.pk, "topic": topic.pk, "user": foreign_user.pk},
        )
    )
    assert "user" in errors
    assert not Subscription.objects.filter(topic=topic).exists()


# --- Topics --------------------------------------------------------------------------------------------


def test_staff_creates_a_topic_in_their_tenant(staff: Client, tenant: Tenant, other_tenant: Tenant) -> None:
    response = staff.post(
        "/admin/notifications/topic/add/",
        {"tenant": other_tenant.pk, "key": "acme.chat", "name": "Chat", "allow_client_subscribe": "on"},
    )
    assert response.status_code == 302
    topic = Topic.objects.get(key="acme.chat")
    assert topic.tenant == tenant and topic.allow_client_subscribe and not topic.allow_client_publish


def test_a_duplicate_topic_key_is_a_form_error(staff: Client, tenant: Tenant, other_tenant: Tenant) -> None:
    errors = form_errors(staff.post("/admin/notifications/topic/add/", {"key": "acme.news"}))
    assert errors
    assert Topic.objects.filter(tenant=tenant, key="acme.news").count() == 1
    # The same key in another tenant is no obstacle: keys are unique per tenant only.
    assert staff.post("/admin/notifications/topic/add/", {"key": "globex.news"}).status_code == 302
    assert Topic.objects.filter(key="globex.news").count() == 2


def test_an_invalid_topic_key_is_a_form_error(staff: Client) -> None:
    assert "key" in form_errors(staff.post("/admin/notifications/topic/add/", {"key": "has space"}))


def test_a_topic_key_is_never_renamed(staff: Client, tenant: Tenant) -> None:
    topic = Topic.objects.get(tenant=tenant)
    response = staff.post(
        f"/admin/notifications/topic/{topic.pk}/change/",
        {"key": "acme.renamed", "name": "News", "description": "Daily", "allow_client_publish": "on"},
    )
    assert response.status_code == 302
    topic.refresh_from_db()
    assert (topic.key, topic.name, topic.description, topic.allow_client_publish) == (
        "acme.news",
        "News",
        "Daily",
        True,
    )


def test_staff_deletes_their_topic_and_its_subscriptions(staff: Client, tenant: Tenant) -> None:
    topic = Topic.objects.get(tenant=tenant)
    response = staff.post(f"/admin/notifications/topic/{topic.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Topic.objects.filter(pk=topic.pk).exists()
    assert not Subscription.objects.filter(tenant=tenant).exists()
    assert Event.objects.filter(tenant=tenant).count() == 2  # the events it carried stay


def test_staff_deletes_an_end_user_together_with_their_inbox(
    staff: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    user = EndUser.objects.get(tenant=tenant)
    assert Notification.objects.filter(user=user).exists()
    response = staff.post(f"/admin/accounts/enduser/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not EndUser.objects.filter(pk=user.pk).exists()
    assert not Notification.objects.filter(tenant=tenant).exists()
    assert Notification.objects.filter(tenant=other_tenant).exists()


# --- Delivery history is read-only -------------------------------------------------------------------


@pytest.mark.parametrize("who", ["root", "staff"])
@pytest.mark.parametrize("model", [Event, Notification])
def test_events_and_inbox_rows_are_read_only_for_everyone(who: str, model: Any, request: Any, tenant: Tenant) -> None:
    client: Client = request.getfixturevalue(who)
    base = f"/admin/notifications/{model._meta.model_name}/"
    row = model.objects.filter(tenant=tenant).first()
    before = model.objects.filter(pk=row.pk).values().get()

    assert client.get(f"{base}add/").status_code == 403
    assert client.post(f"{base}add/", {"kind": "forged", "seq": 1}).status_code == 403
    page = client.get(f"{base}{row.pk}/change/")
    assert page.status_code == 200 and not page.context["has_change_permission"]
    assert 'name="_save"' not in page.content.decode()
    forged = {"kind": "forged", "title": "forged", "status": "pending", "read_at": "", "seq": 99}
    assert client.post(f"{base}{row.pk}/change/", forged).status_code == 403
    assert client.post(f"{base}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    changelist = client.get(base)
    assert changelist.context["action_form"] is None
    client.post(base, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"})
    assert model.objects.filter(pk=row.pk).values().get() == before


def test_fanout_jobs_are_read_only_and_for_platform_operators(root: Client, tenant: Tenant) -> None:
    job = FanoutJob.objects.filter(tenant=tenant).get()
    assert len(listed(root.get("/admin/notifications/fanoutjob/"))) == 2
    assert root.get(f"/admin/notifications/fanoutjob/{job.pk}/change/").status_code == 200
    assert root.post(f"/admin/notifications/fanoutjob/{job.pk}/change/", {"attempts": 9}).status_code == 403
    assert root.post(f"/admin/notifications/fanoutjob/{job.pk}/delete/", {"post": "yes"}).status_code == 403
    assert FanoutJob.objects.filter(pk=job.pk, attempts=0).exists()
    assert login_staff(tenant).get("/admin/notifications/fanoutjob/").status_code == 403


# --- Searching and filtering ---------------------------------------------------------------------------


def test_events_are_searchable_by_kind_title_and_id(staff: Client, tenant: Tenant) -> None:
    event = Event.objects.get(tenant=tenant, kind="acme.news")
    base = "/admin/notifications/event/"
    assert [row.pk for row in listed(staff.get(base, {"q": "acme.news"}))] == [event.pk]
    assert [row.pk for row in listed(staff.get(base, {"q": "hello"}))] == [event.pk]
    assert [row.pk for row in listed(staff.get(base, {"q": str(event.number)}))] == [event.pk]
    # Ids are counted per tenant: a search for another tenant's id finds at most the own event
    # with that number, never theirs.
    for foreign in Event.objects.exclude(tenant=tenant):
        assert {row.pk for row in listed(staff.get(base, {"q": str(foreign.number)}))} <= {
            own.pk for own in Event.objects.filter(tenant=tenant, number=foreign.number)
        }


def test_events_filter_by_status(staff: Client, tenant: Tenant) -> None:
    base = "/admin/notifications/event/"
    delivered = listed(staff.get(base, {"status__exact": "delivered"}))
    pending = listed(staff.get(base, {"status__exact": "pending"}))
    assert [row.kind for row in delivered] == ["acme.news"] and [row.kind for row in pending] == ["acme.later"]


def test_inbox_rows_are_searchable_by_user_and_event(staff: Client, tenant: Tenant, other_tenant: Tenant) -> None:
    row = Notification.objects.get(tenant=tenant)
    base = "/admin/notifications/notification/"
    assert [found.pk for found in listed(staff.get(base, {"q": "acme-reader0"}))] == [row.pk]
    assert [found.pk for found in listed(staff.get(base, {"q": str(row.event.number)}))] == [row.pk]
    assert listed(staff.get(base, {"q": "globex-reader0"})) == []


def test_inbox_rows_filter_by_read_state(staff: Client, tenant: Tenant) -> None:
    base = "/admin/notifications/notification/"
    row = Notification.objects.get(tenant=tenant)
    assert listed(staff.get(base, {"read_state": "unread"})) == [row]
    assert listed(staff.get(base, {"read_state": "read"})) == []
    Notification.objects.filter(pk=row.pk).update(read_at=timezone.now())
    assert listed(staff.get(base, {"read_state": "unread"})) == []
    assert listed(staff.get(base, {"read_state": "read"})) == [row]


@pytest.mark.parametrize("path", ["notification", "event", "subscription"])
def test_changelists_cost_the_same_queries_for_one_row_or_many(
    path: str, tenant: Tenant, other_tenant: Tenant, run_fanout: Callable[[], int]
) -> None:
    populate(tenant, readers=1)
    populate(other_tenant, readers=12)
    events_publish(tenant=other_tenant, api_key=None, items=[EventInput(kind="more", topics=("globex.news",))] * 5)
    run_fanout()
    counts = []
    for owner in (tenant, other_tenant):
        client = login_staff(owner)
        client.get(f"/admin/notifications/{path}/")  # warm the session and content types
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/admin/notifications/{path}/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
