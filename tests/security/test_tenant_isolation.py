"""Tenant isolation from the attacker's side: tenants A and B share a topic key ("news") and an
end-user id ("alice"). Nothing of B can be read, published, subscribed, counted or detected with
A's key or A's token, over REST or WebSocket (the admin is covered in tests/accounts/test_admin.py)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from notifications import services
from notifications.models import Event, Notification, Subscription
from notifications.services import EventInput
from tests.notifications.wsclient import Socket, connect


@pytest.fixture
def world(tenant, other_tenant, make_key, make_token, make_topic, client_for):
    """A = acme, B = globex, each with topic `news` (public), subscriber alice, a key and a token."""
    sides = {}
    for name, owner in (("A", tenant), ("B", other_tenant)):
        make_topic(owner, "news", allow_client_subscribe=True)
        services.subscriptions_add(tenant=owner, user_id="alice", topic_keys=["news"])
        key = make_key(owner)
        token = make_token(owner, "alice")
        sides[name] = {"tenant": owner, "api": client_for(key), "inbox": client_for(token), "token": token}
    return sides


@pytest.mark.django_db
def test_publishing_in_a_reaches_only_a(world, run_fanout):
    world["A"]["api"].post("/api/v1/events", {"kind": "k", "recipients": ["alice"], "topics": ["news"]}, format="json")
    world["A"]["api"].post("/api/v1/events", {"kind": "k", "broadcast": True}, format="json")
    run_fanout()
    assert Notification.objects.filter(tenant=world["B"]["tenant"]).count() == 0
    assert world["B"]["inbox"].get("/api/v1/inbox").json()["results"] == []
    assert world["B"]["inbox"].get("/api/v1/inbox/unread-count").json() == {"count": 0}
    assert world["A"]["inbox"].get("/api/v1/inbox/unread-count").json() == {"count": 2}


@pytest.mark.django_db
def test_a_cannot_see_or_touch_b_events(world, run_fanout):
    b_event = (
        world["B"]["api"]
        .post("/api/v1/events", {"kind": "secret", "recipients": ["alice"]}, format="json")
        .json()["id"]
    )
    run_fanout()
    foreign = world["A"]["api"].get(f"/api/v1/events/{b_event}")
    missing = world["A"]["api"].get("/api/v1/events/987654321")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    # A's alice marking B's event as read: "not found", and B's row is untouched.
    answer = world["A"]["inbox"].post("/api/v1/inbox/read", {"ids": [b_event]}, format="json").json()
    assert answer == {"updated": 0, "not_found": [b_event], "unread": 0}
    for action in ("archive", "unread", "unarchive"):
        world["A"]["inbox"].post(f"/api/v1/inbox/{action}", {"ids": [b_event]}, format="json")
    world["A"]["inbox"].post("/api/v1/inbox/read-all")
    row = Notification.objects.get(tenant=world["B"]["tenant"], event__number=b_event)
    assert row.read_at is None and row.archived_at is None


@pytest.mark.django_db
def test_a_sees_only_its_own_topics_and_subscribers(world):
    world["B"]["api"].post("/api/v1/topics", {"key": "b-only"}, format="json")
    keys = [topic["key"] for topic in world["A"]["api"].get("/api/v1/topics").json()["results"]]
    assert keys == ["news"]
    assert world["A"]["api"].get("/api/v1/topics/b-only").status_code == 404
    foreign = world["A"]["api"].get("/api/v1/topics/b-only").json()
    missing = world["A"]["api"].get("/api/v1/topics/never-existed").json()
    assert str(foreign).replace("b-only", "KEY") == str(missing).replace("never-existed", "KEY")
    assert world["A"]["api"].patch("/api/v1/topics/b-only", {"name": "x"}, format="json").status_code == 404
    assert world["A"]["api"].delete("/api/v1/topics/b-only").status_code == 404
    assert world["A"]["api"].get("/api/v1/topics/b-only/subscribers").status_code == 404
    # Subscribing A's user to B's topic key is "unknown topic", as for a key nobody has.
    response = world["A"]["api"].post("/api/v1/users/alice/subscriptions", {"topics": ["b-only"]}, format="json")
    assert response.status_code == 400
    assert not Subscription.objects.filter(topic__key="b-only").exclude(tenant=world["B"]["tenant"]).exists()
    # Deleting A's alice's subscription to A's "news" leaves B's alice subscribed.
    world["A"]["api"].delete("/api/v1/users/alice/subscriptions/news")
    assert world["B"]["api"].get("/api/v1/users/alice/subscriptions").json()["topics"] == ["news"]


@pytest.mark.django_db
def test_publishing_to_b_topic_key_from_a_reaches_only_a_subscribers(world, run_fanout):
    world["B"]["api"].post("/api/v1/topics", {"key": "b-only"}, format="json")
    response = world["A"]["api"].post("/api/v1/events", {"kind": "k", "topics": ["b-only"]}, format="json")
    assert response.status_code == 400
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_idempotency_key_of_b_reveals_nothing_to_a(world):
    body = {"kind": "k", "recipients": ["alice"]}
    world["B"]["api"].post("/api/v1/events", body, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")
    other_body = {"kind": "other", "recipients": ["zed"]}
    response = world["A"]["api"].post("/api/v1/events", other_body, format="json", HTTP_IDEMPOTENCY_KEY="shared-key")
    assert response.status_code == 202  # not 409: A cannot even learn that B used the key


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_stack")
async def test_websocket_same_topic_and_user_id_never_cross(world):
    a_socket, a_welcome = await connect(world["A"]["token"])
    b_socket, b_welcome = await connect(world["B"]["token"])
    assert (a_welcome["tenant"], b_welcome["tenant"]) == ("acme", "globex")
    for socket in (a_socket, b_socket):
        assert (await socket.request({"type": "subscribe", "id": 1, "topics": ["news"]}))["type"] == "ack"

    @sync_to_async
    def publish(side: str, **fields):
        fields.setdefault("kind", "k")
        items = [EventInput(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})]
        return services.events_publish(tenant=world[side]["tenant"], api_key=None, items=items).event_ids[0]

    a_direct = await publish("A", recipients=["alice"])
    a_topic = await publish("A", topics=["news"])
    a_broadcast = await publish("A", broadcast=True)
    received = [(await a_socket.receive_type("notification"))["id"] for _ in range(3)]
    assert sorted(set(received)) == sorted({a_direct, a_topic, a_broadcast})
    assert await b_socket.nothing(0.5)

    for _ in range(3):  # ids are counted per tenant: B's next id is one A does not have
        await publish("B", recipients=["someone-else"])
    b_direct = await publish("B", recipients=["alice"])
    assert b_direct > a_broadcast
    assert (await b_socket.receive_type("notification"))["id"] == b_direct
    assert await a_socket.nothing(0.5)

    # A's socket marking B's event read: not found, and B's socket gets no unread push.
    ack = await a_socket.request({"type": "mark_read", "id": 2, "ids": [b_direct]})
    assert ack["not_found"] == [b_direct] and ack["updated"] == 0
    assert await b_socket.nothing(0.3)
    # Resuming from 0 replays only A's own stream.
    await a_socket.close()
    socket = await Socket().open()
    _, replayed, _ = await socket.auth(world["A"]["token"], since="0", topics=["news"])
    assert b_direct not in {frame["id"] for frame in replayed}
    await socket.close()
    await b_socket.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_stack")
async def test_a_token_cannot_listen_to_b_private_topic_even_if_named_in_a_token(world, make_token, make_topic):
    await sync_to_async(make_topic)(world["B"]["tenant"], "private")
    token = await sync_to_async(make_token)(world["A"]["tenant"], "alice", topics=["private"])
    socket, _ = await connect(token)
    refused = await socket.request({"type": "subscribe", "id": 1, "topics": ["private"]})
    assert refused["code"] == "forbidden"
    await socket.close()
