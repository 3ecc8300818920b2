"""REST publishing: POST /api/v1/events and /events/batch, validation, idempotency, fan-out."""

from __future__ import annotations

import pytest

from accounts.models import EndUser
from notifications.models import Event, FanoutJob, Notification

pytestmark = pytest.mark.django_db


def test_publish_to_a_recipient_answers_202_and_fans_out_to_their_inbox(api, tenant, run_fanout):
    response = api.post(
        "/api/v1/events",
        {"kind": "order.shipped", "data": {"order": 7}, "title": "Shipped", "recipients": ["alice"]},
        format="json",
    )
    assert response.status_code == 202
    event_id = response.json()["id"]
    assert FanoutJob.objects.filter(tenant=tenant, event__number=event_id).exists()
    assert Notification.objects.count() == 0  # nothing per-recipient inside the request

    assert run_fanout() == 1
    row = Notification.objects.get()
    assert row.event.number == event_id and row.user.external_id == "alice" and row.tenant == tenant
    event = Event.objects.get(tenant=tenant, number=event_id)
    assert event.status == Event.Status.DELIVERED and event.recipient_count == 1 and event.seq == 1
    assert not FanoutJob.objects.exists()


def test_topic_publish_reaches_each_subscriber_once(api, tenant, make_topic, run_fanout):
    make_topic(tenant, "a")
    make_topic(tenant, "b")
    for user in ("u1", "u2"):
        assert api.post(f"/api/v1/users/{user}/subscriptions", {"topics": ["a", "b"]}, format="json").status_code == 200
    api.post("/api/v1/events", {"kind": "k", "topics": ["a", "b"], "recipients": ["u1", "u3"]}, format="json")
    run_fanout()
    assert sorted(Notification.objects.values_list("user__external_id", flat=True)) == ["u1", "u2", "u3"]


def test_broadcast_reaches_every_known_end_user(api, tenant, other_tenant, run_fanout):
    for user in ("x", "y", "z"):
        EndUser.objects.create(tenant=tenant, external_id=user)
    EndUser.objects.create(tenant=other_tenant, external_id="x")
    api.post("/api/v1/events", {"kind": "maintenance", "broadcast": True}, format="json")
    run_fanout()
    assert Notification.objects.filter(tenant=tenant).count() == 3
    assert Notification.objects.filter(tenant=other_tenant).count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": {}, "recipients": ["a"]}, "kind"),
        ({"kind": "bad kind!", "recipients": ["a"]}, "kind"),
        ({"kind": 5, "recipients": ["a"]}, "kind"),
        ({"kind": "k"}, "non_field_errors"),
        ({"kind": "k", "data": [1, 2], "recipients": ["a"]}, "data"),
        ({"kind": "k", "data": "text", "recipients": ["a"]}, "data"),
        ({"kind": "k", "recipients": "alice"}, "recipients"),
        ({"kind": "k", "recipients": ["has space"]}, "recipients"),
        ({"kind": "k", "recipients": [f"u{i}" for i in range(1001)]}, "recipients"),
        ({"kind": "k", "topics": ["no such topic"]}, "topics"),
        ({"kind": "k", "broadcast": "true"}, "broadcast"),
        ({"kind": "k", "recipients": ["a"], "title": 5}, "title"),
        ({"kind": "k", "recipients": ["a"], "title": "x" * 201}, "title"),
        ({"kind": "k", "recipients": ["a"], "url": "javascript:alert(1)"}, "url"),
        ({"kind": "k", "recipients": ["a"], "url": "//evil.example/x"}, "url"),
        ({"kind": "k", "recipients": ["a"], "url": "/\\evil.example"}, "url"),
        ({"kind": "k", "recipients": ["a"], "url": "/\t/evil.example"}, "url"),
        ({"kind": "k", "recipients": ["a"], "url": "/\n/evil.example"}, "url"),
        ({"kind": "k", "recipients": ["a"], "url": "https://ok.example/a b"}, "url"),
        ({"kind": "k", "recipients": ["a"], "data": {"a": "nul\u0000"}}, "data"),
    ],
)
def test_invalid_publish_answers_400_with_the_field_and_stores_nothing(api, body, field):
    response = api.post("/api/v1/events", body, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]
    assert not Event.objects.exists()


def test_unknown_topic_is_a_field_error(api, tenant):
    response = api.post("/api/v1/events", {"kind": "k", "topics": ["nope"]}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"topics": ["Unknown topic: nope"]}


def test_payload_over_the_tenant_limit_is_refused(api, tenant):
    tenant.max_payload_bytes = 1024
    tenant.save()
    response = api.post("/api/v1/events", {"kind": "k", "recipients": ["a"], "data": {"x": "y" * 2000}}, format="json")
    assert response.status_code == 400
    assert "1024 bytes" in response.json()["error"]["fields"]["data"][0]
    assert not Event.objects.exists()


def test_malformed_json_answers_400_json(api):
    response = api.generic("POST", "/api/v1/events", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_json"


def test_deeply_nested_data_is_refused(api):
    data: dict = {}
    node = data
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    response = api.post("/api/v1/events", {"kind": "k", "recipients": ["a"], "data": data}, format="json")
    assert response.status_code == 400
    assert "nested deeper" in response.json()["error"]["message"]


def test_same_idempotency_key_and_body_returns_the_first_answer(api, run_fanout):
    body = {"kind": "k", "recipients": ["alice"]}
    first = api.post("/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY="order-7-shipped")
    second = api.post("/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY="order-7-shipped")
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert Event.objects.count() == 1
    run_fanout()
    assert Notification.objects.count() == 1


def test_same_idempotency_key_with_another_body_is_409(api):
    api.post("/api/v1/events", {"kind": "k", "recipients": ["alice"]}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    response = api.post(
        "/api/v1/events", {"kind": "k", "recipients": ["bob"]}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert Event.objects.count() == 1


def test_idempotency_keys_are_per_tenant(api, other_tenant, make_key, client_for):
    other = client_for(make_key(other_tenant))
    body = {"kind": "k", "recipients": ["alice"]}
    a = api.post("/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    b = other.post("/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert a.status_code == b.status_code == 202
    assert "Idempotent-Replayed" not in b.headers
    # Two events, one per tenant, each numbered in its own tenant.
    assert a.json()["id"] == b.json()["id"] == 1
    assert Event.objects.filter(tenant=other_tenant).count() == 1
    assert Event.objects.exclude(tenant=other_tenant).count() == 1


def test_batch_publishes_all_and_returns_per_item_ids(api, run_fanout):
    events = [{"kind": "k", "recipients": [f"u{i}"]} for i in range(5)]
    response = api.post("/api/v1/events/batch", {"events": events}, format="json")
    assert response.status_code == 202
    results = response.json()["results"]
    assert [item["index"] for item in results] == [0, 1, 2, 3, 4]
    assert len({item["id"] for item in results}) == 5
    run_fanout()
    assert Notification.objects.count() == 5
    seqs = list(Event.objects.order_by("pk").values_list("seq", flat=True))
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


def test_batch_with_one_invalid_item_stores_nothing_and_says_which(api, tenant, make_topic):
    make_topic(tenant, "t")
    events = [{"kind": "k", "recipients": ["a"]}, {"kind": "bad kind"}, {"kind": "k", "topics": ["t"]}]
    response = api.post("/api/v1/events/batch", {"events": events}, format="json")
    assert response.status_code == 400
    items = response.json()["error"]["fields"]["events"]
    assert list(items) == ["1"] and "kind" in items["1"]
    assert not Event.objects.exists()


def test_batch_service_errors_name_the_item(api):
    events = [{"kind": "k", "recipients": ["a"]}, {"kind": "k", "topics": ["missing"]}]
    response = api.post("/api/v1/events/batch", {"events": events}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["events"] == {"1": {"topics": ["Unknown topic: missing"]}}
    assert not Event.objects.exists()


def test_batch_of_more_than_100_is_refused(api):
    events = [{"kind": "k", "recipients": ["a"]}] * 101
    response = api.post("/api/v1/events/batch", {"events": events}, format="json")
    assert response.status_code == 400
    assert not Event.objects.exists()


def test_event_status_is_readable_by_its_tenant_only(api, other_tenant, make_key, client_for, run_fanout):
    event_id = api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json").json()["id"]
    assert api.get(f"/api/v1/events/{event_id}").json()["status"] == "pending"
    run_fanout()
    body = api.get(f"/api/v1/events/{event_id}").json()
    assert body["status"] == "delivered" and body["recipient_count"] == 1 and body["cursor"] == "1"
    other = client_for(make_key(other_tenant))
    foreign = other.get(f"/api/v1/events/{event_id}")
    missing = other.get("/api/v1/events/999999")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


def test_tenant_publish_rate_limit_answers_429_with_retry_after(api, tenant):
    tenant.publishes_per_minute = 3
    tenant.save()
    statuses = [
        api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json").status_code for _ in range(5)
    ]
    assert statuses == [202, 202, 202, 429, 429]
    refused = api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert Event.objects.count() == 3
