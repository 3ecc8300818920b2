"""The /ws/v1/ consumer through Channels' WebsocketCommunicator: auth, live delivery, inbox
actions, resume, subscriptions, errors and close codes."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import jwt
import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from accounts.models import SigningKey
from accounts.services import signing_key_rotate
from accounts.tokens import token_encode
from notifications import services
from notifications.models import Notification, Stream
from notifications.services import EventInput
from tests.notifications.wsclient import Socket, connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("live_stack")]


@sync_to_async
def publish(tenant: Any, **fields: Any) -> int:
    fields.setdefault("kind", "test")
    for name in ("recipients", "topics"):
        fields[name] = tuple(fields.get(name, ()))
    result = services.events_publish(tenant=tenant, api_key=None, items=[EventInput(**fields)])
    return result.event_ids[0]


@pytest.fixture
def fast_heartbeat(settings: Any) -> None:
    settings.HERALD = {**settings.HERALD, "HEARTBEAT_SECONDS": 0.2}


async def test_token_auth_gets_welcome_then_resumed(tenant, make_token):
    token = await sync_to_async(make_token)(tenant, "alice")
    socket = await Socket().open()
    welcome, replayed, resumed = await socket.auth(token)
    assert welcome["user"] == "alice"
    assert welcome["tenant"] == "acme"
    assert welcome["unread"] == 0
    assert welcome["cursor"] == "0"
    assert welcome["heartbeat"] == 25.0
    assert len(welcome["connection_id"]) == 16
    assert replayed == []
    assert resumed == {"type": "resumed", "recovered": True, "replayed": 0, "cursor": "0"}
    await socket.close()


async def test_notification_to_the_user_arrives_live_with_every_field(tenant, make_token):
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    event_id = await publish(
        tenant,
        recipients=["alice"],
        kind="order.shipped",
        title="Shipped",
        body="Box 7",
        url="/orders/7",
        data={"order": 7},
    )
    frame = await socket.receive_type("notification")
    assert frame["id"] == event_id
    assert frame["cursor"] == "1"
    assert frame["kind"] == "order.shipped"
    assert frame["data"] == {"order": 7}
    assert (frame["title"], frame["body"], frame["url"]) == ("Shipped", "Box 7", "/orders/7")
    assert frame["topics"] == []
    assert frame["inbox"] is True and frame["read"] is False
    assert frame["created_at"].endswith("Z")
    await socket.close()


async def test_other_users_notifications_do_not_arrive(tenant, make_token):
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    await publish(tenant, recipients=["bob"])
    assert await socket.nothing(0.5)
    await socket.close()


async def test_missing_auth_frame_closes_4002(tenant, settings):
    settings.HERALD = {**settings.HERALD, "AUTH_TIMEOUT_SECONDS": 0.2}
    socket = await Socket().open()
    assert await socket.closed_with() == 4002


async def test_first_frame_other_than_auth_closes_4000(tenant):
    socket = await Socket().open()
    await socket.send({"type": "ping"})
    assert await socket.closed_with() == 4000


async def test_malformed_first_frame_closes_4000(tenant):
    socket = await Socket().open()
    await socket.send_text("{nope")
    assert await socket.closed_with() == 4000


async def test_auth_without_token_or_session_closes_4001(tenant):
    socket = await Socket().open()
    await socket.send({"type": "auth"})
    assert await socket.closed_with() == 4001


@pytest.mark.parametrize("case", ["forged", "wrong_audience", "alg_none", "garbage", "revoked_key", "too_long_lived"])
async def test_bad_tokens_close_4001(tenant, case):
    key = await sync_to_async(lambda: SigningKey.objects.filter(tenant=tenant).first())()
    now = int(timezone.now().timestamp())
    claims = {"sub": "alice", "aud": "herald", "iat": now, "exp": now + 600}
    if case == "forged":
        token = jwt.encode(claims, "not-the-secret-" * 4, algorithm="HS256", headers={"kid": key.kid})
    elif case == "wrong_audience":
        token = jwt.encode({**claims, "aud": "other"}, key.secret, algorithm="HS256", headers={"kid": key.kid})
    elif case == "alg_none":
        token = jwt.encode(claims, None, algorithm="none", headers={"kid": key.kid})
    elif case == "garbage":
        token = "a.b.c"
    elif case == "revoked_key":
        token = jwt.encode(claims, key.secret, algorithm="HS256", headers={"kid": key.kid})
        await sync_to_async(SigningKey.objects.filter(pk=key.pk).update)(revoked_at=timezone.now())
    else:
        token = jwt.encode({**claims, "exp": now + 10 * 86400}, key.secret, algorithm="HS256", headers={"kid": key.kid})
    socket = await Socket().open()
    await socket.send({"type": "auth", "token": token})
    assert await socket.closed_with() == 4001


async def test_expired_token_closes_4004(tenant):
    key = await sync_to_async(lambda: SigningKey.objects.filter(tenant=tenant).first())()
    token, _ = token_encode(signing_key=key, user_id="alice", lifetime=timedelta(seconds=-60), topics=None)
    socket = await Socket().open()
    await socket.send({"type": "auth", "token": token})
    assert await socket.closed_with() == 4004


async def test_token_of_previous_signing_key_still_works_after_rotation(tenant, make_token):
    token = await sync_to_async(make_token)(tenant, "alice")
    await sync_to_async(signing_key_rotate)(tenant=tenant)
    socket, welcome = await connect(token)
    assert welcome["user"] == "alice"
    await socket.close()


async def test_deactivated_tenant_closes_4003(tenant, make_token):
    token = await sync_to_async(make_token)(tenant, "alice")
    tenant.is_active = False
    await sync_to_async(tenant.save)()
    socket = await Socket().open()
    await socket.send({"type": "auth", "token": token})
    assert await socket.closed_with() == 4003


async def test_bad_frames_after_auth_get_error_frames_and_the_socket_stays_open(tenant, make_token):
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    await socket.send_text("{nope")
    assert (await socket.receive_type("error"))["code"] == "bad_frame"
    await socket.send_text("[1, 2]")
    assert (await socket.receive_type("error"))["code"] == "bad_frame"
    await socket.comm.send_to(bytes_data=b"\x00\x01")
    assert (await socket.receive_type("error"))["code"] == "bad_frame"
    unknown = await socket.request({"type": "explode", "id": "r1"})
    assert unknown["code"] == "unknown_type"
    wrong = await socket.request({"type": "mark_read", "id": "r2", "ids": "all"})
    assert wrong["code"] == "invalid"
    assert "ids" in wrong["fields"]
    again = await socket.request({"type": "auth", "id": "r3"})
    assert again["code"] == "already_authenticated"
    await socket.send({"type": "ping", "id": 5})
    assert await socket.receive_type("pong") == {"type": "pong", "id": 5}
    await socket.close()


async def test_oversized_frame_closes_1009(tenant, make_token, settings):
    settings.HERALD = {**settings.HERALD, "MAX_CLIENT_FRAME_BYTES": 1000}
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    await socket.send_text('{"type":"ping","pad":"' + "x" * 2000 + '"}')
    assert await socket.closed_with() == 1009


async def test_mark_read_acks_and_pushes_the_unread_count_to_every_tab(tenant, make_token):
    token = await sync_to_async(make_token)(tenant, "alice")
    tab1, _ = await connect(token)
    tab2, _ = await connect(token)
    first = await publish(tenant, recipients=["alice"])
    second = await publish(tenant, recipients=["alice"])
    for tab in (tab1, tab2):
        assert [(await tab.receive_type("notification"))["id"] for _ in range(2)] == [first, second]
    ack = await tab1.request({"type": "mark_read", "id": "m1", "ids": [first, 99999]})
    assert ack == {"type": "ack", "id": "m1", "updated": 1, "not_found": [99999], "unread": 1}
    assert (await tab2.receive_type("unread"))["count"] == 1
    ack = await tab2.request({"type": "mark_all_read", "id": "m2"})
    assert ack["updated"] == 1 and ack["unread"] == 0
    # tab1 may still get the first change's count (1) first: pushes follow the commit, acks don't.
    while (await tab1.receive_type("unread"))["count"] != 0:
        pass
    ack = await tab1.request({"type": "mark_unread", "id": "m3", "ids": [second]})
    assert ack["unread"] == 1
    ack = await tab1.request({"type": "archive", "id": "m4", "ids": [second]})
    assert ack["updated"] == 1 and ack["unread"] == 0
    row = await sync_to_async(Notification.objects.get)(event__number=second)
    assert row.archived_at is not None and row.read_at is None
    ack = await tab1.request({"type": "unarchive", "id": "m5", "ids": [second]})
    assert ack["unread"] == 1
    await tab1.close()
    await tab2.close()


async def test_reconnect_with_cursor_replays_missed_notifications_in_order(tenant, make_token):
    token = await sync_to_async(make_token)(tenant, "alice")
    socket, _ = await connect(token)
    await publish(tenant, recipients=["alice"])
    seen = await socket.receive_type("notification")
    await socket.close()
    missed = [await publish(tenant, recipients=["alice"]) for _ in range(3)]
    await publish(tenant, recipients=["bob"])
    await sync_to_async(_wait_idle)()
    socket = await Socket().open()
    welcome, replayed, resumed = await socket.auth(token, since=seen["cursor"])
    assert [frame["id"] for frame in replayed] == missed
    assert [frame["cursor"] for frame in replayed] == sorted(frame["cursor"] for frame in replayed)
    assert resumed["recovered"] is True and resumed["replayed"] == 3
    assert int(resumed["cursor"]) >= int(replayed[-1]["cursor"])
    assert welcome["unread"] == 4
    live = await publish(tenant, recipients=["alice"])
    assert (await socket.receive_type("notification"))["id"] == live
    await socket.close()


def _wait_idle() -> None:
    """Finish every pending fan-out, whether or not this loop's fan-out runner is started."""
    from notifications.fanout import process_pending, wait_for_idle

    while process_pending() > 0:
        pass
    wait_for_idle(10)


async def test_replayed_notifications_carry_their_read_state(tenant, make_token):
    token = await sync_to_async(make_token)(tenant, "alice")
    event_id = await publish(tenant, recipients=["alice"])
    await sync_to_async(_wait_idle)()
    await sync_to_async(Notification.objects.filter(event__number=event_id).update)(read_at=timezone.now())
    socket = await Socket().open()
    _, replayed, _ = await socket.auth(token, since="0")
    assert [(frame["id"], frame["read"]) for frame in replayed] == [(event_id, True)]
    await socket.close()


async def test_resume_from_before_retention_says_not_recovered(tenant, make_token):
    token = await sync_to_async(make_token)(tenant, "alice")
    for _ in range(3):
        await publish(tenant, recipients=["alice"])
    await sync_to_async(_wait_idle)()
    await sync_to_async(Stream.objects.filter(tenant=tenant).update)(pruned_seq=2)
    socket = await Socket().open()
    _, replayed, resumed = await socket.auth(token, since="1")
    assert replayed == []
    assert resumed["recovered"] is False and resumed["reason"] == "retention"
    assert resumed["cursor"] == "3"
    await socket.close()


async def test_resume_over_the_replay_cap_says_not_recovered(tenant, make_token, settings):
    settings.HERALD = {**settings.HERALD, "REPLAY_MAX": 2}
    token = await sync_to_async(make_token)(tenant, "alice")
    for _ in range(3):
        await publish(tenant, recipients=["alice"])
    await sync_to_async(_wait_idle)()
    socket = await Socket().open()
    _, replayed, resumed = await socket.auth(token, since="0")
    assert replayed == []
    assert resumed["recovered"] is False and resumed["reason"] == "too_many"
    await socket.close()


async def test_cursor_never_handed_out_says_not_recovered(tenant, make_token):
    socket = await Socket().open()
    _, _, resumed = await socket.auth(await sync_to_async(make_token)(tenant, "alice"), since="999")
    assert resumed["recovered"] is False and resumed["reason"] == "invalid_cursor"
    await socket.close()


async def test_live_topic_subscription_rules(tenant, make_token, make_topic):
    await sync_to_async(make_topic)(tenant, "public", allow_client_subscribe=True)
    await sync_to_async(make_topic)(tenant, "private")
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    ack = await socket.request({"type": "subscribe", "id": 1, "topics": ["public"]})
    assert ack == {"type": "ack", "id": 1, "topics": ["public"]}
    refused = await socket.request({"type": "subscribe", "id": 2, "topics": ["private"]})
    assert refused["code"] == "forbidden"
    missing = await socket.request({"type": "subscribe", "id": 3, "topics": ["nope"]})
    assert missing["code"] == "forbidden"
    assert missing["message"].replace("nope", "X") == refused["message"].replace("private", "X")
    event_id = await publish(tenant, topics=["public"])
    frame = await socket.receive_type("notification")
    assert frame["id"] == event_id and frame["inbox"] is False and frame["topics"] == ["public"]
    ack = await socket.request({"type": "unsubscribe", "id": 4, "topics": ["public"]})
    assert ack["topics"] == []
    await publish(tenant, topics=["public"])
    assert await socket.nothing(0.5)
    await socket.close()


async def test_token_topic_grant_opens_private_topics_and_closes_public_ones(tenant, make_token, make_topic):
    await sync_to_async(make_topic)(tenant, "public", allow_client_subscribe=True)
    await sync_to_async(make_topic)(tenant, "project.42")
    token = await sync_to_async(make_token)(tenant, "alice", topics=["project.42"])
    socket, _ = await connect(token)
    assert (await socket.request({"type": "subscribe", "id": 1, "topics": ["project.42"]}))["type"] == "ack"
    assert (await socket.request({"type": "subscribe", "id": 2, "topics": ["public"]}))["code"] == "forbidden"
    await socket.close()


async def test_topics_in_the_auth_frame_are_subscribed_before_the_backlog(tenant, make_token, make_topic):
    await sync_to_async(make_topic)(tenant, "news", allow_client_subscribe=True)
    first = await publish(tenant, topics=["news"])
    second = await publish(tenant, topics=["news"])
    await sync_to_async(_wait_idle)()
    socket = await Socket().open()
    _, replayed, resumed = await socket.auth(
        await sync_to_async(make_token)(tenant, "alice"), since="0", topics=["news"]
    )
    assert [(frame["id"], frame["inbox"]) for frame in replayed] == [(first, False), (second, False)]
    assert resumed["recovered"] is True
    third = await publish(tenant, topics=["news"])
    assert (await socket.receive_type("notification"))["id"] == third
    await socket.close()


async def test_subscribe_with_since_replays_the_topic(tenant, make_token, make_topic):
    await sync_to_async(make_topic)(tenant, "news", allow_client_subscribe=True)
    earlier = await publish(tenant, topics=["news"])
    await sync_to_async(_wait_idle)()
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    await socket.send({"type": "subscribe", "id": "s", "topics": ["news"], "since": "0"})
    frame = await socket.receive_type("notification")
    assert frame["id"] == earlier
    ack = await socket.receive_type("ack")
    assert ack["recovered"] is True and ack["replayed"] == 1 and ack["topics"] == ["news"]
    await socket.close()


async def test_persistent_subscriber_gets_an_inbox_frame_and_a_live_listener_a_live_one(tenant, make_token, make_topic):
    await sync_to_async(make_topic)(tenant, "news", allow_client_subscribe=True)
    await sync_to_async(services.subscriptions_add)(tenant=tenant, user_id="alice", topic_keys=["news"])
    alice, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    bob, _ = await connect(await sync_to_async(make_token)(tenant, "bob"))
    await bob.request({"type": "subscribe", "id": 1, "topics": ["news"]})
    event_id = await publish(tenant, topics=["news"])
    alice_frame = await alice.receive_type("notification")
    bob_frame = await bob.receive_type("notification")
    assert (alice_frame["id"], alice_frame["inbox"]) == (event_id, True)
    assert (bob_frame["id"], bob_frame["inbox"]) == (event_id, False)
    assert await alice.nothing(0.3)
    await alice.close()
    await bob.close()


async def test_both_subscribed_ways_gets_the_inbox_frame_once_live_duplicate_dropped(tenant, make_token, make_topic):
    await sync_to_async(make_topic)(tenant, "news", allow_client_subscribe=True)
    await sync_to_async(services.subscriptions_add)(tenant=tenant, user_id="alice", topic_keys=["news"])
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    await socket.request({"type": "subscribe", "id": 1, "topics": ["news"]})
    event_id = await publish(tenant, topics=["news"])
    frame = await socket.receive_type("notification")
    assert frame["id"] == event_id and frame["inbox"] is True
    # The live-only copy is sent after the inbox one, so it is dropped as a duplicate.
    assert await socket.nothing(0.5)
    await socket.close()


async def test_server_pings_and_closes_a_silent_client_4008(tenant, make_token, fast_heartbeat):
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    assert (await socket.receive())["type"] == "ping"
    assert await socket.closed_with(timeout=5) == 4008


async def test_a_client_answering_pings_stays_connected(tenant, make_token, fast_heartbeat):
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    deadline = asyncio.get_running_loop().time() + 1.5
    while asyncio.get_running_loop().time() < deadline:
        frame = await socket.receive(timeout=2)
        assert frame["type"] == "ping"
        await socket.send({"type": "pong"})
    await socket.send({"type": "ping", "id": "still-here"})
    assert (await socket.receive_type("pong"))["id"] == "still-here"
    await socket.close()


async def test_too_many_live_topics_is_refused(tenant, make_token, make_topic, settings):
    settings.HERALD = {**settings.HERALD, "MAX_SUBSCRIPTIONS_PER_CONNECTION": 2}
    for key in ("a", "b", "c"):
        await sync_to_async(make_topic)(tenant, key, allow_client_subscribe=True)
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    assert (await socket.request({"type": "subscribe", "id": 1, "topics": ["a", "b"]}))["type"] == "ack"
    refused = await socket.request({"type": "subscribe", "id": 2, "topics": ["c"]})
    assert refused["code"] == "invalid"
    await socket.close()


async def test_forbidden_topics_in_auth_are_reported_and_the_rest_joined(tenant, make_token, make_topic):
    await sync_to_async(make_topic)(tenant, "public", allow_client_subscribe=True)
    socket = await Socket().open()
    await socket.send(
        {
            "type": "auth",
            "id": "a1",
            "token": await sync_to_async(make_token)(tenant, "alice"),
            "topics": ["public", "secret"],
        }
    )
    assert (await socket.receive())["type"] == "welcome"
    error = await socket.receive()
    assert error["type"] == "error" and error["code"] == "forbidden" and error["id"] == "a1"
    assert error["fields"] == {"topics": ["Not allowed: secret"]}
    assert (await socket.receive())["type"] == "resumed"
    event_id = await publish(tenant, topics=["public"])
    assert (await socket.receive_type("notification"))["id"] == event_id
    await socket.close()


async def test_deactivating_a_tenant_closes_its_sockets_4003(tenant, other_tenant, make_token):
    from accounts.services import tenant_set_active

    mine, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    bystander, _ = await connect(await sync_to_async(make_token)(other_tenant, "alice"))
    await sync_to_async(tenant_set_active)(tenant=tenant, active=False)
    assert await mine.closed_with() == 4003
    assert await bystander.nothing(0.3)
    event_id = await publish(other_tenant, recipients=["alice"])
    assert (await bystander.receive_type("notification"))["id"] == event_id
    await bystander.close()


async def test_welcome_cursor_is_where_the_replay_starts(tenant, make_token):
    token = await sync_to_async(make_token)(tenant, "alice")
    for _ in range(2):
        await publish(tenant, recipients=["alice"])
    await sync_to_async(_wait_idle)()
    socket = await Socket().open()
    welcome, replayed, resumed = await socket.auth(token, since="1")
    assert welcome["cursor"] == "1"
    assert [frame["cursor"] for frame in replayed] == ["2"]
    assert resumed["cursor"] == "2"
    assert welcome["unread"] == 2
    await socket.close()


async def test_subscribe_replay_beyond_the_cap_reports_the_reason(tenant, make_token, make_topic, settings):
    settings.HERALD = {**settings.HERALD, "REPLAY_MAX": 1}
    await sync_to_async(make_topic)(tenant, "news", allow_client_subscribe=True)
    for _ in range(2):
        await publish(tenant, topics=["news"])
    await sync_to_async(_wait_idle)()
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    ack = await socket.request({"type": "subscribe", "id": "s", "topics": ["news"], "since": "0"})
    assert ack["recovered"] is False and ack["reason"] == "too_many" and ack["replayed"] == 0
    await socket.close()


async def test_frame_limit_counts_utf8_bytes(tenant, make_token, settings):
    settings.HERALD = {**settings.HERALD, "MAX_CLIENT_FRAME_BYTES": 1000}
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    # 400 characters, 1,600 bytes.
    await socket.send_text('{"type":"ping","pad":"' + "\U0001f600" * 400 + '"}')
    assert await socket.closed_with() == 1009


async def test_session_of_a_deactivated_tenant_closes_4003(tenant, client, django_user_model):
    from accounts.services import membership_create

    user = await sync_to_async(django_user_model.objects.create_user)("staff", password="pw-123456")
    await sync_to_async(membership_create)(user=user, tenant=tenant, role="viewer")
    await sync_to_async(client.force_login)(user)
    cookie = client.cookies["sessionid"].value
    tenant.is_active = False
    await sync_to_async(tenant.save)()
    socket = await Socket(
        headers=[(b"origin", b"http://localhost"), (b"cookie", f"sessionid={cookie}".encode())]
    ).open()
    await socket.send({"type": "auth"})
    assert await socket.closed_with() == 4003


async def test_redis_failing_mid_auth_closes_4013_and_leaves_no_trace_in_the_hub(tenant, make_token, monkeypatch):
    """Redis failing while the live groups are joined: the socket is closed with the documented
    4013 (reconnect with backoff, resume), and the connection must not stay registered, stay a
    member of any group nor keep counting against the user's connection limit."""
    from notifications.hub import Hub, get_hub

    real_register = Hub.register

    async def register_then_fail(self: Hub, connection: Any) -> None:
        await real_register(self, connection)
        raise ConnectionError("redis went away")

    monkeypatch.setattr(Hub, "register", register_then_fail)
    token = await sync_to_async(make_token)(tenant, "alice")
    socket = await Socket().open()
    await socket.send({"type": "auth", "token": token})
    assert await socket.closed_with() == 4013
    await socket.close()  # the client's side of the closing handshake
    hub = await get_hub()
    assert hub.connection_count == 0 and hub.tenant_connections[tenant.pk] == 0
    assert not any(members for members in hub.members.values())
    assert await hub.presence.acquire(tenant.pk, 1, tenant_limit=1, user_limit=1) == 0  # nobody counted


async def test_redis_failing_on_subscribe_answers_unavailable_and_subscribes_to_nothing(
    tenant, make_token, make_topic, monkeypatch
):
    """Two topics asked for with `since`, the second's join failing: nothing changes (neither
    topic is live, no group keeps the connection), so the retry replays both."""
    from notifications.hub import Hub, get_hub

    await sync_to_async(make_topic)(tenant, "alpha", allow_client_subscribe=True)
    beta = await sync_to_async(make_topic)(tenant, "beta", allow_client_subscribe=True)
    earlier = await publish(tenant, topics=["alpha"])
    await sync_to_async(_wait_idle)()
    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    real_join = Hub.join

    async def second_join_fails(self: Hub, connection: Any, group: str) -> None:
        if group.endswith(f".k{beta.pk}"):
            self.members.setdefault(group, set()).add(connection)
            raise ConnectionError("redis went away")
        await real_join(self, connection, group)

    monkeypatch.setattr(Hub, "join", second_join_fails)
    refused = await socket.request({"type": "subscribe", "id": 1, "topics": ["alpha", "beta"], "since": "0"})
    assert refused["type"] == "error" and refused["code"] == "unavailable" and refused["id"] == 1
    hub = await get_hub()
    assert not any(members for group, members in hub.members.items() if ".k" in group)  # no topic group kept it
    monkeypatch.setattr(Hub, "join", real_join)
    await socket.send({"type": "subscribe", "id": 2, "topics": ["alpha", "beta"], "since": "0"})
    assert (await socket.receive_type("notification"))["id"] == earlier  # replayed: alpha was not live
    ack = await socket.receive_type("ack")
    assert ack["id"] == 2 and ack["topics"] == ["alpha", "beta"] and ack["replayed"] == 1
    event_id = await publish(tenant, topics=["beta"])
    assert (await socket.receive_type("notification"))["id"] == event_id
    await socket.close()


async def test_a_live_consumer_stays_under_cpythons_shared_key_limit(tenant, make_token):
    """CPython shares the keys of instance dicts up to 30 attributes; past that every consumer gets
    a dict of its own, measured at +1.3 KB of RSS per connection (docs/performance.md)."""
    from notifications.hub import get_hub

    socket, _ = await connect(await sync_to_async(make_token)(tenant, "alice"))
    hub = await get_hub()
    [consumer] = [c for connections in hub.by_user.values() for c in connections]
    assert len(vars(consumer)) < 30, sorted(vars(consumer))
    await socket.close()
