"""The notification center's token endpoint: a signed-in staff member gets a connection token for
their own end-user id in their own tenant, only with the session and a CSRF token, always as JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client

from accounts.credentials import end_user_principal_from_token
from accounts.models import EndUser, Membership
from notifications.models import Event

pytestmark = pytest.mark.django_db


def csrf_client(user) -> tuple[Client, str]:
    """A client that enforces CSRF like a browser, signed in, with the token the page would have."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")  # renders the page, which sets the CSRF cookie
    return client, client.cookies["csrftoken"].value


def test_signed_in_member_gets_a_token_for_their_own_end_user_id(staff, tenant, other_tenant, make_staff):
    make_staff("bob", other_tenant, external_id="bob-ext")
    client, csrf = csrf_client(staff)
    response = client.post("/token/", HTTP_X_CSRFTOKEN=csrf, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-store" in response["Cache-Control"]
    body = response.json()
    assert body["user_id"] == "ann-ext"
    principal = end_user_principal_from_token(body["token"])
    assert principal.tenant == tenant and principal.user_id == "ann-ext"
    assert principal.granted_topics is None  # only topics open to clients
    expires = datetime.fromisoformat(body["expires_at"])
    assert 800 < (expires - datetime.now(UTC)).total_seconds() <= 900  # the default lifetime


def test_each_call_mints_a_new_token(staff):
    client, csrf = csrf_client(staff)
    first = client.post("/token/", HTTP_X_CSRFTOKEN=csrf).json()["token"]
    second = client.post("/token/", HTTP_X_CSRFTOKEN=csrf).json()["token"]
    assert first != second


def test_without_the_csrf_token_no_token_is_minted(staff):
    client, _ = csrf_client(staff)
    response = client.post("/token/")
    assert response.status_code == 403
    assert "eyJ" not in response.content.decode()  # no JWT in the refusal
    assert not EndUser.objects.exists()  # nothing minted


def test_a_get_is_refused(staff_client):
    assert staff_client.get("/token/").status_code == 405


def test_an_anonymous_visitor_gets_a_json_401_not_a_login_redirect():
    response = Client().post("/token/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_a_user_without_membership_gets_403(make_staff):
    client = Client()
    client.force_login(make_staff("loner"))
    response = client.post("/token/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_staff_of_a_deactivated_tenant_gets_403_tenant_inactive(staff_client, tenant):
    tenant.is_active = False
    tenant.save()
    response = staff_client.post("/token/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_inactive"
    assert not Event.objects.exists()


def test_a_membership_without_a_valid_end_user_id_gets_403(staff_client, staff):
    # Saved around the model's validation, as an old row or a raw SQL edit could be.
    Membership.objects.filter(user=staff).update(external_id="not valid!")
    response = staff_client.post("/token/")
    assert response.status_code == 403
    assert "end-user id" in response.json()["error"]["message"]
    assert not EndUser.objects.exists()
