"""The end user's inbox over REST, with a connection token as bearer."""

from __future__ import annotations

import pytest

from notifications.models import Notification

pytestmark = pytest.mark.django_db


@pytest.fixture
def inbox(tenant, make_token, client_for):
    return client_for(make_token(tenant, "alice"))


@pytest.fixture
def published(api, run_fanout):
    ids = [
        api.post("/api/v1/events", {"kind": "k", "title": f"n{i}", "recipients": ["alice"]}, format="json").json()["id"]
        for i in range(5)
    ]
    api.post("/api/v1/events", {"kind": "k", "recipients": ["bob"]}, format="json")
    run_fanout()
    return ids


def test_list_is_newest_first_with_cursor_pagination(inbox, published):
    first = inbox.get("/api/v1/inbox?limit=2").json()
    assert [item["id"] for item in first["results"]] == published[::-1][:2]
    assert first["unread"] == 5
    assert first["stream_cursor"] == "6"
    second = inbox.get(f"/api/v1/inbox?limit=2&cursor={first['next_cursor']}").json()
    assert [item["id"] for item in second["results"]] == published[::-1][2:4]
    third = inbox.get(f"/api/v1/inbox?limit=2&cursor={second['next_cursor']}").json()
    assert [item["id"] for item in third["results"]] == published[:1]
    assert third["next_cursor"] is None
    item = first["results"][0]
    assert set(item) == {
        "id",
        "cursor",
        "kind",
        "topics",
        "data",
        "title",
        "body",
        "url",
        "created_at",
        "read_at",
        "archived_at",
    }


def test_unread_filter_and_count(inbox, published):
    response = inbox.post("/api/v1/inbox/read", {"ids": published[:2]}, format="json")
    assert response.json() == {"updated": 2, "not_found": [], "unread": 3}
    assert inbox.get("/api/v1/inbox/unread-count").json() == {"count": 3}
    unread = inbox.get("/api/v1/inbox?unread=true").json()["results"]
    assert sorted(item["id"] for item in unread) == published[2:]
    again = inbox.post("/api/v1/inbox/read", {"ids": published[:2]}, format="json").json()
    assert again["updated"] == 0
    back = inbox.post("/api/v1/inbox/unread", {"ids": [published[0]]}, format="json").json()
    assert back["updated"] == 1 and back["unread"] == 4


def test_mark_all_read(inbox, published):
    assert inbox.post("/api/v1/inbox/read-all").json() == {"updated": 5, "not_found": [], "unread": 0}
    assert not Notification.objects.filter(user__external_id="alice", read_at__isnull=True).exists()
    assert Notification.objects.filter(user__external_id="bob", read_at__isnull=True).count() == 1


def test_archive_hides_from_default_list_and_unread_count(inbox, published):
    inbox.post("/api/v1/inbox/archive", {"ids": [published[0]]}, format="json")
    ids = [item["id"] for item in inbox.get("/api/v1/inbox").json()["results"]]
    assert published[0] not in ids
    archived = inbox.get("/api/v1/inbox?archived=only").json()["results"]
    assert [item["id"] for item in archived] == [published[0]]
    assert len(inbox.get("/api/v1/inbox?archived=include").json()["results"]) == 5
    assert inbox.get("/api/v1/inbox/unread-count").json()["count"] == 4
    inbox.post("/api/v1/inbox/unarchive", {"ids": [published[0]]}, format="json")
    assert inbox.get("/api/v1/inbox/unread-count").json()["count"] == 5


def test_ids_not_in_my_inbox_are_reported_not_found(inbox, published):
    bobs = Notification.objects.get(user__external_id="bob").event.number
    response = inbox.post("/api/v1/inbox/read", {"ids": [bobs, 10**12, published[0]]}, format="json").json()
    assert response == {"updated": 1, "not_found": [bobs, 10**12], "unread": 4}
    assert Notification.objects.get(user__external_id="bob", event__number=bobs).read_at is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": []},
        {"ids": "1"},
        {"ids": ["1"]},
        {"ids": [True]},
        {"ids": [0]},
        {"ids": list(range(1, 102))},
        {"ids": [2**63]},
    ],
)
def test_bad_ids_are_400(inbox, body):
    response = inbox.post("/api/v1/inbox/read", body, format="json")
    assert response.status_code == 400
    assert "ids" in response.json()["error"]["fields"]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "cursor=abc", "archived=maybe"])
def test_bad_query_is_400(inbox, published, query):
    assert inbox.get(f"/api/v1/inbox?{query}").status_code == 400


def test_api_key_cannot_read_an_inbox(api):
    response = api.get("/api/v1/inbox")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_expired_token_is_401_token_expired(tenant, client_for):
    from datetime import timedelta

    from accounts.models import SigningKey
    from accounts.tokens import token_encode

    token, _ = token_encode(
        signing_key=SigningKey.objects.get(tenant=tenant), user_id="alice", lifetime=timedelta(seconds=-30), topics=None
    )
    response = client_for(token).get("/api/v1/inbox")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


def test_inbox_answers_cors_for_any_site_without_credentials(client, tenant, make_token):
    preflight = client.options(
        "/api/v1/inbox",
        HTTP_ORIGIN="https://app.acme.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    response = client.get(
        "/api/v1/inbox",
        HTTP_ORIGIN="https://app.acme.example",
        HTTP_AUTHORIZATION=f"Bearer {make_token(tenant, 'alice')}",
    )
    assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"


def test_api_key_endpoints_answer_no_cors(client):
    preflight = client.options(
        "/api/v1/events", HTTP_ORIGIN="https://evil.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_tenant_origin_list_applies_to_the_inbox(tenant, make_token, client_for):
    tenant.allowed_origins = "https://app.acme.example"
    tenant.save()
    inbox = client_for(make_token(tenant, "alice"))
    assert inbox.get("/api/v1/inbox", HTTP_ORIGIN="https://app.acme.example").status_code == 200
    assert inbox.get("/api/v1/inbox").status_code == 200  # not a browser
    refused = inbox.get("/api/v1/inbox", HTTP_ORIGIN="https://evil.example")
    assert refused.status_code == 403
