"""The operations page (/ops/) and its recent-events JSON (/ops/events/): who may see which tenant,
from the side of someone trying to see another tenant's."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from accounts.models import Membership
from accounts.services import membership_create
from notifications.models import Event
from notifications.services import EventInput, events_publish

pytestmark = pytest.mark.django_db


def publish(tenant, **fields):
    fields.setdefault("kind", "order.shipped")
    return events_publish(tenant=tenant, api_key=None, items=[EventInput(**fields)]).event_ids[0]


def ops_config(body: str) -> dict:
    match = re.search(r'<script id="ops-config" type="application/json">(.*?)</script>', body)
    assert match, "the page's configuration is missing"
    return json.loads(match.group(1))


@pytest.fixture
def superuser_client(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-123456"))
    return client


# --- the page ---------------------------------------------------------------------------------


def test_anonymous_visitor_is_sent_to_the_login_page_and_back():
    response = Client().get("/ops/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/ops/"


def test_signed_in_user_without_a_membership_gets_a_403_explanation(make_staff, tenant):
    client = Client()
    client.force_login(make_staff("loner"))
    response = client.get("/ops/")
    assert response.status_code == 403
    body = response.content.decode()
    assert "No operations page for this account" in body and "not staff of any tenant" in body
    assert "ops-config" not in body and "acme" not in body


@pytest.mark.parametrize("role", [Membership.Role.ADMIN, Membership.Role.VIEWER])
def test_staff_of_any_role_see_their_own_tenant_and_no_switcher(make_staff, tenant, other_tenant, role):
    user = make_staff("val")
    membership_create(user=user, tenant=tenant, role=role, external_id="val-ext")
    client = Client()
    client.force_login(user)
    response = client.get("/ops/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "<title>Operations · Acme · Herald</title>" in body
    assert 'id="tenant-select"' not in body
    assert "globex" not in body and "Globex" not in body
    config = ops_config(body)
    assert config == {
        "websocketPath": "/ws/v1/ops/",
        "eventsUrl": "/ops/events/",
        "loginUrl": "/login/?next=/ops/",
        "tenant": "acme",
        "canSwitch": False,
        "eventsRefreshMs": 3000,
    }
    assert 'src="/static/dashboard/ops.js"' in body and 'src="/static/uplot/uPlot.iife.min.js"' in body
    # Their notification center is one click away.
    assert '<a href="/">Notification center</a>' in body


def test_staff_cannot_switch_to_another_tenant_through_the_address(staff_client, other_tenant):
    body = staff_client.get("/ops/?tenant=globex").content.decode()
    assert ops_config(body)["tenant"] == "acme"
    assert "globex" not in body.replace("?tenant=globex", "")


def test_platform_admin_gets_a_switcher_of_every_tenant(superuser_client, tenant, other_tenant):
    response = superuser_client.get("/ops/")
    assert response.status_code == 200
    body = response.content.decode()
    options = re.findall(r'<option value="([^"]+)"( selected)?>([^<]*)</option>', body)
    assert options == [("acme", " selected", "acme (Acme)"), ("globex", "", "globex (Globex)")]
    assert ops_config(body)["canSwitch"] is True
    # Not staff of a tenant: no notification center to link to.
    assert "Notification center" not in body


def test_platform_admin_may_preselect_a_tenant_and_an_unknown_one_falls_back(superuser_client, tenant, other_tenant):
    assert ops_config(superuser_client.get("/ops/?tenant=globex").content.decode())["tenant"] == "globex"
    assert ops_config(superuser_client.get("/ops/?tenant=nope").content.decode())["tenant"] == "acme"


def test_platform_admin_without_any_tenant_is_told_to_create_one(superuser_client):
    response = superuser_client.get("/ops/")
    assert response.status_code == 403
    assert "There are no tenants yet" in response.content.decode()


def test_notification_center_links_to_the_operations_page(staff_client):
    body = staff_client.get("/").content.decode()
    assert '<a href="/ops/">Operations</a>' in body


def test_tenant_names_are_escaped_on_the_page(make_tenant, superuser_client):
    make_tenant("evil", name="<script>alert(1)</script>")
    body = superuser_client.get("/ops/").content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


# --- the recent-events JSON -------------------------------------------------------------------


def test_events_view_answers_json_401_when_signed_out():
    response = Client().get("/ops/events/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_events_view_answers_403_to_a_user_without_a_tenant(make_staff, tenant):
    client = Client()
    client.force_login(make_staff("loner"))
    for path in ("/ops/events/", "/ops/events/?tenant=acme"):
        response = client.get(path)
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


def test_events_view_lists_the_tenants_latest_events_newest_first(staff_client, tenant, make_topic, run_fanout):
    make_topic(tenant, "orders.shipped")
    first = publish(tenant, recipients=("ann", "bob", "cy", "dee", "eve"), title="Secret title", body="Secret body")
    second = publish(tenant, topics=("orders.shipped",))
    third = publish(tenant, broadcast=True)
    run_fanout()
    response = staff_client.get("/ops/events/")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    answer = response.json()
    assert answer["tenant"] == "acme"
    assert [event["id"] for event in answer["events"]] == [third, second, first]
    oldest = answer["events"][2]
    assert oldest["kind"] == "order.shipped" and oldest["status"] == "delivered"
    assert oldest["recipient_count"] == 5
    assert oldest["targets"] == {"broadcast": False, "users": 5, "users_sample": ["ann", "bob", "cy"], "topics": []}
    assert oldest["created_at"].endswith("Z") and oldest["delivered_at"].endswith("Z")
    assert answer["events"][1]["targets"]["topics"] == ["orders.shipped"]
    assert answer["events"][0]["targets"]["broadcast"] is True
    # What people were told is none of the operations page's business.
    assert "Secret" not in response.content.decode()
    assert set(oldest) == {"id", "kind", "status", "recipient_count", "targets", "created_at", "delivered_at"}


def test_a_pending_event_has_no_delivery_time(staff_client, tenant):
    publish(tenant, recipients=("ann",))
    [event] = staff_client.get("/ops/events/").json()["events"]
    assert event["status"] == "pending" and event["delivered_at"] is None


def test_events_view_shows_at_most_25_events_in_a_bounded_number_of_queries(
    staff_client, tenant, make_topic, django_assert_max_num_queries
):
    make_topic(tenant, "orders.shipped")
    for _ in range(30):
        publish(tenant, recipients=("ann",), topics=("orders.shipped",))
    with django_assert_max_num_queries(6):  # session, user, membership, events, their topics
        events = staff_client.get("/ops/events/").json()["events"]
    assert len(events) == 25


def test_staff_asking_for_another_tenants_events_learn_nothing(staff_client, tenant, other_tenant):
    publish(other_tenant, kind="globex.secret", recipients=("ann",))
    publish(tenant, kind="acme.own", recipients=("ann",))
    other = staff_client.get("/ops/events/?tenant=globex")
    missing = staff_client.get("/ops/events/?tenant=no-such-tenant")
    # Another tenant and a tenant that does not exist get the very same answer.
    assert other.status_code == missing.status_code == 404
    assert other.content == missing.content
    assert other.json() == {"error": {"code": "not_found", "message": "No such tenant."}}
    assert b"globex" not in other.content
    # Their own tenant, by slug or by default, is all they ever get.
    for path in ("/ops/events/", "/ops/events/?tenant=acme"):
        answer = staff_client.get(path).json()
        assert answer["tenant"] == "acme"
        assert [event["kind"] for event in answer["events"]] == ["acme.own"]


def test_platform_admin_reads_the_events_of_the_tenant_they_watch(superuser_client, tenant, other_tenant):
    publish(other_tenant, kind="globex.kind", recipients=("x",))
    publish(tenant, kind="acme.kind", recipients=("x",))
    answer = superuser_client.get("/ops/events/?tenant=globex").json()
    assert answer["tenant"] == "globex"
    assert [event["kind"] for event in answer["events"]] == ["globex.kind"]
    assert superuser_client.get("/ops/events/").json()["tenant"] == "acme"  # the first, by slug
    assert superuser_client.get("/ops/events/?tenant=nope").status_code == 404


def test_events_view_only_answers_get(staff_client):
    assert staff_client.post("/ops/events/").status_code == 405


# --- the chart package ------------------------------------------------------------------------


def test_the_chart_package_is_served_from_node_modules():
    """uPlot comes from npm (package-lock.json), installed by scripts/bootstrap, and is found by
    the static files finders: nothing is copied into the repository."""
    found = finders.find("uplot/uPlot.iife.min.js")
    assert found, "node_modules/uplot is missing: run scripts/bootstrap (it runs npm ci)"
    assert "node_modules" in str(found)
    assert finders.find("uplot/uPlot.min.css")


def test_no_event_rows_are_written_by_reading(staff_client):
    staff_client.get("/ops/")
    staff_client.get("/ops/events/")
    assert not Event.objects.exists()
