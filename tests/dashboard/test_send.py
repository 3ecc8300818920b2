"""The "send a test notification" form: it publishes to the signed-in member only, validates its
input, reports publish errors, and is CSRF-protected."""

from __future__ import annotations

import pytest
from django.test import Client

from dashboard.services import DEMO_NOTIFICATION_KIND, demo_notification_send
from notifications.models import Event, Notification

pytestmark = pytest.mark.django_db


def test_send_publishes_to_the_members_own_id_in_their_tenant_and_redirects(
    staff_client, tenant, other_tenant, run_fanout
):
    response = staff_client.post("/send/", {"title": "Hello", "body": "From the form"})
    assert response.status_code == 302 and response["Location"] == "/"
    event = Event.objects.get()
    assert event.tenant == tenant
    assert event.recipients == ["ann-ext"] and not event.broadcast and not event.topics.exists()
    assert (event.kind, event.title, event.body, event.api_key) == (
        DEMO_NOTIFICATION_KIND,
        "Hello",
        "From the form",
        None,
    )
    run_fanout()
    row = Notification.objects.get()
    assert row.user.external_id == "ann-ext" and row.tenant == tenant
    assert not Notification.objects.filter(tenant=other_tenant).exists()
    page = staff_client.get("/").content.decode()
    assert "Sent. It appears in your inbox" in page and "From the form" in page


def test_send_by_fetch_answers_json_with_the_event_id(staff_client):
    response = staff_client.post("/send/", {"title": "Hello"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 202
    assert response.json() == {"id": Event.objects.get().number}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"title": "", "body": "no title"}, "title"),
        ({"title": "   ", "body": ""}, "title"),
        ({"body": "missing title"}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "body": "x" * 2001}, "body"),
        ({"title": "nul\x00"}, "title"),
    ],
)
def test_invalid_input_shows_the_error_and_publishes_nothing(staff_client, data, field):
    response = staff_client.post("/send/", data)
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert f'id="{field}-error">' in response.content.decode()
    assert 'id="center"' in response.content.decode()  # the page again, with the input kept
    assert not Event.objects.exists()

    response = staff_client.post("/send/", data, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"]
    assert not Event.objects.exists()


def test_longest_allowed_title_and_body_are_accepted(staff_client):
    response = staff_client.post("/send/", {"title": "t" * 200, "body": "b" * 2000})
    assert response.status_code == 302
    assert Event.objects.get().title == "t" * 200


def test_tenant_rate_limit_is_shown_and_nothing_more_is_published(staff_client, tenant):
    tenant.publishes_per_minute = 2
    tenant.save()
    for _ in range(2):
        assert staff_client.post("/send/", {"title": "ok"}).status_code == 302
    response = staff_client.post("/send/", {"title": "one too many"})
    assert response.status_code == 429
    assert "Rate limit for publish.tenant exceeded" in response.content.decode()
    assert 1 <= int(response["Retry-After"]) <= 60
    json_response = staff_client.post("/send/", {"title": "again"}, HTTP_ACCEPT="application/json")
    assert json_response.status_code == 429
    assert json_response.json()["error"]["code"] == "rate_limited"
    assert Event.objects.count() == 2


def test_send_needs_a_signed_in_member(make_staff):
    assert Client().post("/send/", {"title": "x"}).status_code == 302  # to the login page
    loner = Client()
    loner.force_login(make_staff("loner"))
    assert loner.post("/send/", {"title": "x"}).status_code == 403
    assert loner.post("/send/", {"title": "x"}, HTTP_ACCEPT="application/json").json()["error"]["code"] == "forbidden"
    assert not Event.objects.exists()


def test_send_is_refused_for_a_deactivated_tenant(staff_client, tenant):
    tenant.is_active = False
    tenant.save()
    assert staff_client.post("/send/", {"title": "x"}).status_code == 403
    assert not Event.objects.exists()


def test_send_only_accepts_post(staff_client):
    assert staff_client.get("/send/").status_code == 405
    assert not Event.objects.exists()


def test_send_without_a_csrf_token_is_refused(staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.post("/send/", {"title": "forged"}).status_code == 403
    assert not Event.objects.exists()


def test_send_with_the_pages_csrf_token_is_accepted(staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    page = client.get("/")
    token = page.context["csrf_token"]
    response = client.post("/send/", {"title": "genuine", "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    assert Event.objects.get().title == "genuine"


def test_service_refuses_an_empty_or_overlong_title(staff):
    from accounts.exceptions import ValidationFailed

    membership = staff.herald_membership
    with pytest.raises(ValidationFailed) as empty:
        demo_notification_send(membership=membership, title=" ")
    assert "title" in empty.value.fields
    with pytest.raises(ValidationFailed):
        demo_notification_send(membership=membership, title="x" * 201)
    with pytest.raises(ValidationFailed):
        demo_notification_send(membership=membership, title="ok", body="x" * 2001)
    assert not Event.objects.exists()
