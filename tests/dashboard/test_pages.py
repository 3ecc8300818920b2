"""The dashboard's pages over HTTP: sign in, the notification center's first paint, and who may see it."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from accounts.models import EndUser
from notifications.services import EventInput, events_publish

pytestmark = pytest.mark.django_db


def publish_to(tenant, user_id, **fields):
    fields.setdefault("kind", "test.kind")
    return events_publish(tenant=tenant, api_key=None, items=[EventInput(recipients=(user_id,), **fields)]).event_ids[0]


def center_config(body: str) -> dict:
    match = re.search(r'<script id="center-config" type="application/json">(.*?)</script>', body)
    assert match, "the center's configuration is missing"
    return json.loads(match.group(1))


def test_anonymous_visitor_is_redirected_to_the_login_page():
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_login_page_signs_in_and_returns_to_the_live_page(staff):
    client = Client()
    assert client.get("/login/").status_code == 200
    response = client.post("/login/?next=/", {"username": "ann", "password": "correct horse battery", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_login_with_a_wrong_password_shows_an_error(staff):
    response = Client().post("/login/", {"username": "ann", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()


def test_login_refuses_to_redirect_to_another_site(staff):
    response = Client().post(
        "/login/", {"username": "ann", "password": "correct horse battery", "next": "https://evil.example/"}
    )
    assert response.status_code == 302 and response["Location"] == "/"


def test_logout_is_a_post_that_ends_the_session(staff_client):
    response = staff_client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert staff_client.get("/").status_code == 302


def test_signed_in_user_without_a_membership_gets_an_explanation(make_staff):
    client = Client()
    client.force_login(make_staff("loner"))
    response = client.get("/")
    assert response.status_code == 403
    body = response.content.decode()
    assert "No live inbox for this account" in body
    assert "not staff of any tenant" in body
    assert 'id="center"' not in body


def test_staff_of_a_deactivated_tenant_gets_an_explanation(staff_client, tenant):
    tenant.is_active = False
    tenant.save()
    response = staff_client.get("/")
    assert response.status_code == 403
    assert "deactivated" in response.content.decode()


def test_live_page_shows_the_member_their_tenant_and_unread_count(staff_client, tenant, run_fanout):
    publish_to(tenant, "ann-ext", title="First")
    publish_to(tenant, "ann-ext", title="Second")
    run_fanout()
    response = staff_client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "ann" in body and "ann-ext" in body and "Acme" in body and "acme" in body
    assert "Notifications, 2 unread" in body and 'id="unread-count" aria-hidden="true">2</span>' in body
    assert "<title>(2) Notifications" in body
    assert body.index("Second") < body.index("First")  # newest first
    assert 'src="/static/dashboard/center.js"' in body and 'type="module"' in body
    config = center_config(body)
    assert config["since"] == "2"  # the socket resumes from the stream position rendered
    assert config["nextCursor"] == ""  # everything fits on the first page
    assert config["tokenUrl"] == "/token/" and config["websocketPath"] == "/ws/v1/"
    assert config["csrfToken"]


def test_center_offers_older_pages_beyond_the_first(staff_client, tenant, run_fanout):
    for number in range(21):
        publish_to(tenant, "ann-ext", title=f"Number {number}")
    run_fanout()
    body = staff_client.get("/").content.decode()
    config = center_config(body)
    assert config["nextCursor"] == "2"  # the 21st-newest (the oldest) is on the next page
    assert "Number 20" in body and "Number 0" not in body
    assert '<button type="button" id="load-older">Load older</button>' in body


def test_center_renders_the_panel_as_a_labelled_dialog_and_the_bell_as_a_button(staff_client):
    body = staff_client.get("/").content.decode()
    assert '<button type="button" id="bell" class="bell" aria-controls="inbox-panel" aria-expanded="false"' in body
    assert (
        'id="inbox-panel" class="inbox-panel" role="dialog" aria-modal="false" aria-labelledby="inbox-heading"' in body
    )
    assert 'id="toast-announcer" class="visually-hidden" role="status" aria-live="polite"' in body
    assert '<p class="connection" id="connection" data-state="connecting" role="status">' in body
    assert "You are all caught up" in body


def test_live_page_renders_notification_text_escaped(staff_client, tenant, run_fanout):
    publish_to(tenant, "ann-ext", title="<img src=x onerror=alert(1)>", body="<script>alert(2)</script>")
    run_fanout()
    body = staff_client.get("/").content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "<img src=x" not in body
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in body
    assert "<script>alert(2)" not in body


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("https://example.com/orders/7", True),
        ("/orders/7", True),
        ("javascript:alert(1)", False),
        ("//evil.example/x", False),
        ("/\\evil.example/x", False),
        ("/\t/evil.example", False),
    ],
)
def test_only_http_urls_and_local_paths_become_links(staff_client, tenant, run_fanout, url, linked):
    # Stored directly (the REST API validates urls too): the page must not trust what is stored.
    publish_to(tenant, "ann-ext", title="Linked", url=url)
    run_fanout()
    inbox = staff_client.get("/").content.decode().split('id="item-template"')[0]
    assert (f'href="{url}"' in inbox) is linked
    assert ('class="item-link" hidden' in inbox) is not linked


def test_live_page_shows_only_the_members_own_inbox(staff_client, tenant, other_tenant, run_fanout):
    publish_to(tenant, "someone-else", title="Not for Ann")
    publish_to(other_tenant, "ann-ext", title="Other tenant, same id")
    run_fanout()
    body = staff_client.get("/").content.decode()
    assert "Not for Ann" not in body and "Other tenant, same id" not in body
    assert "You are all caught up" in body


def test_first_visit_creates_no_end_user(staff_client):
    assert staff_client.get("/").status_code == 200
    assert not EndUser.objects.exists()
