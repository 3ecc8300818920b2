"""Topics and subscriptions over REST."""

from __future__ import annotations

import pytest

from notifications.models import Subscription, Topic

pytestmark = pytest.mark.django_db


def test_create_list_get_update_delete_topic(api):
    created = api.post(
        "/api/v1/topics", {"key": "orders.shipped", "name": "Shipped", "allow_client_subscribe": True}, format="json"
    )
    assert created.status_code == 201
    assert created.json()["key"] == "orders.shipped" and created.json()["allow_client_subscribe"] is True
    assert api.post("/api/v1/topics", {"key": "orders.shipped"}, format="json").status_code == 409
    api.post("/api/v1/topics", {"key": "a.first"}, format="json")
    page = api.get("/api/v1/topics?limit=1").json()
    assert [topic["key"] for topic in page["results"]] == ["a.first"]
    page2 = api.get(f"/api/v1/topics?limit=1&cursor={page['next_cursor']}").json()
    assert [topic["key"] for topic in page2["results"]] == ["orders.shipped"]
    assert api.get("/api/v1/topics/orders.shipped").json()["name"] == "Shipped"
    patched = api.patch("/api/v1/topics/orders.shipped", {"description": "When boxes leave"}, format="json")
    assert patched.status_code == 200 and patched.json()["description"] == "When boxes leave"
    assert api.delete("/api/v1/topics/orders.shipped").status_code == 204
    assert api.get("/api/v1/topics/orders.shipped").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"key": ""},
        {"key": "has space"},
        {"key": "x" * 129},
        {"key": 5},
        {"key": "ok", "allow_client_subscribe": "yes"},
    ],
)
def test_invalid_topic_is_400(api, body):
    assert api.post("/api/v1/topics", body, format="json").status_code == 400
    assert not Topic.objects.exists()


def test_subscribe_list_unsubscribe(api, tenant, make_topic):
    make_topic(tenant, "a")
    make_topic(tenant, "b")
    response = api.post("/api/v1/users/alice/subscriptions", {"topics": ["b", "a", "a"]}, format="json")
    assert response.json() == {"user_id": "alice", "topics": ["a", "b"]}
    assert api.post("/api/v1/users/alice/subscriptions", {"topics": ["a"]}, format="json").status_code == 200
    assert Subscription.objects.count() == 2
    assert api.get("/api/v1/topics/a/subscribers").json() == {"results": ["alice"], "next_cursor": None}
    assert api.delete("/api/v1/users/alice/subscriptions/a").status_code == 204
    assert api.get("/api/v1/users/alice/subscriptions").json()["topics"] == ["b"]
    assert api.delete("/api/v1/users/alice/subscriptions/missing").status_code == 404


def test_subscribing_to_unknown_topics_is_400_and_writes_nothing(api, tenant, make_topic):
    make_topic(tenant, "a")
    response = api.post("/api/v1/users/alice/subscriptions", {"topics": ["a", "zzz"]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"topics": ["Unknown topic: zzz"]}
    assert not Subscription.objects.exists()


def test_invalid_user_id_in_path_is_400(api, tenant, make_topic):
    make_topic(tenant, "a")
    response = api.post("/api/v1/users/" + "x" * 250 + "/subscriptions", {"topics": ["a"]}, format="json")
    assert response.status_code == 400
