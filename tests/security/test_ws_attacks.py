"""Attacks on /ws/v1/ from tenant A's side, data-driven (in-process, Channels' communicator; the
same attacks against a real server process are in test_floods.py): garbage and wrong types before
and after `auth`, every frame type with bad fields, forged tokens, tenant B's topics, ids and
cursors, and another site's page using the visitor's session. Each must get the documented close
code or `error` frame (docs/protocol.md), and B's socket, open the whole time, receives nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import Tenant
from accounts.services import membership_create
from config.asgi import application
from notifications import services
from notifications.protocol import ClientFrameType
from notifications.services import EventInput
from tests.notifications.wsclient import Socket, connect
from tests.security.conftest import World, bearer, state_of
from tests.security.figures import FIGURES
from tests.security.forgery import FORGED_TOKENS, WS_EXPECTATION

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("live_stack", "lenient_auth_lockout"),
]

MAX_FRAME = 65536


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def nested_list(levels: int) -> str:
    return "[" * levels + "]" * levels


# --- Before authentication: every problem closes the connection ----------------------------------

# (name, what to send: str (text frame), bytes (binary frame) or None (nothing), expected close)
# "{token}" in a text frame is replaced by a valid token of A.
PRE_AUTH: list[tuple[str, str | bytes | None, int]] = [
    ("binary frame", b'{"type": "auth"}', 4000),
    ("not JSON", "hello", 4000),
    ("truncated JSON", '{"type": "auth", "token": "{token}"', 4000),
    ("JSON array", '[{"type": "auth"}]', 4000),
    ("JSON string", '"auth"', 4000),
    ("JSON null", "null", 4000),
    ("empty text frame", "", 4000),
    ("no type", frame(token="{token}"), 4000),
    ("type a number", frame(type=1, token="{token}"), 4000),
    ("type null", frame(type=None, token="{token}"), 4000),
    ("type AUTH (case)", frame(type="AUTH", token="{token}"), 4000),
    ("unknown type", frame(type="hello"), 4000),
    ("a server frame type", frame(type="welcome"), 4000),
    *[
        (f"{kind.value} as the first frame", frame(type=kind.value, id=1, topics=["news"], ids=[1]), 4000)
        for kind in ClientFrameType
        if kind is not ClientFrameType.AUTH
    ],
    ("token a number", frame(type="auth", token=123), 4000),
    ("token a list", frame(type="auth", token=["{token}"]), 4000),
    ("token an object", frame(type="auth", token={"jwt": "{token}"}), 4000),
    ("token empty", frame(type="auth", token=""), 4000),
    ("token 8,193 characters", frame(type="auth", token="a.b." + "c" * 8189), 4000),
    ("since a number", frame(type="auth", token="{token}", since=5), 4000),
    ("since negative", frame(type="auth", token="{token}", since="-1"), 4000),
    ("since 19 digits", frame(type="auth", token="{token}", since="1" * 19), 4000),
    ("since a superscript digit", frame(type="auth", token="{token}", since="\u00b2"), 4000),
    ("since with a space", frame(type="auth", token="{token}", since=" 1"), 4000),
    ("since SQL", frame(type="auth", token="{token}", since="1 OR 1=1"), 4000),
    ("topics a string", frame(type="auth", token="{token}", topics="news"), 4000),
    ("topics numbers", frame(type="auth", token="{token}", topics=[1]), 4000),
    ("topics an invalid key", frame(type="auth", token="{token}", topics=["../news"]), 4000),
    ("101 topics", frame(type="auth", token="{token}", topics=[f"t{i}" for i in range(101)]), 4000),
    ("id a boolean", frame(type="auth", token="{token}", id=True), 4000),
    ("id a float", frame(type="auth", token="{token}", id=1.5), 4000),
    ("id 2^53", frame(type="auth", token="{token}", id=2**53), 4000),
    ("id 65 characters", frame(type="auth", token="{token}", id="i" * 65), 4000),
    ("id a list", frame(type="auth", token="{token}", id=[1]), 4000),
    ("nested 2,000 levels", '{"type": "auth", "token": "{token}", "x": ' + nested_list(2000) + "}", 4000),
    ("no token and no session", frame(type="auth"), 4001),
    ("over 64 KiB", frame(type="auth", token="{token}", pad="x" * MAX_FRAME), 1009),
    ("over 64 KiB in UTF-8 bytes only", frame(type="auth", token="{token}", pad="\u00e9" * 33000), 1009),
    ("nothing at all", None, 4002),
    # Controls: a valid first frame is welcomed, even with junk in fields that are ignored.
    ("valid auth (control)", frame(type="auth", token="{token}"), 0),
    ("unknown fields are ignored (control)", frame(type="auth", token="{token}", tenant="tenant-b", sub="x"), 0),
    ("exactly 64 KiB (control)", None, 0),  # built below: the limit itself is allowed
]


def exactly_max(token: str) -> str:
    text = frame(type="auth", token=token, pad="")
    return text[:-2] + "x" * (MAX_FRAME - len(text)) + '"}'


async def outcome_of(sent: str | bytes | None) -> int:
    """The close code the server answered with, or 0 for a `welcome`."""
    socket = await Socket().open()
    if isinstance(sent, bytes):
        await socket.comm.send_to(bytes_data=sent)
    elif isinstance(sent, str):  # (send_input: the communicator's send_to refuses an empty text)
        await socket.comm.send_input({"type": "websocket.receive", "text": sent})
    while True:
        message = await socket.comm.receive_output(timeout=5)
        if message["type"] == "websocket.close":
            return int(message.get("code", 1000))
        if json.loads(message["text"])["type"] == "welcome":
            await socket.close()
            return 0


async def test_every_bad_first_frame_closes_with_the_documented_code(world: World, settings):
    settings.HERALD = {**settings.HERALD, "AUTH_TIMEOUT_SECONDS": 0.3}
    bystander, _ = await connect(world.b.tokens["alice"])
    token = world.a.tokens["alice"]
    wrong = []
    for name, sent, expected in PRE_AUTH:
        if name.startswith("exactly 64 KiB"):
            sent = exactly_max(token)
            assert len(sent.encode()) == MAX_FRAME
        elif isinstance(sent, str):
            sent = sent.replace("{token}", token)
        got = await outcome_of(sent)
        if got != expected:
            wrong.append(f"{name}: expected {expected or 'welcome'}, got {got or 'welcome'}")
    assert not wrong, "\n".join(wrong)
    assert await bystander.nothing(0.2)
    await bystander.close()
    FIGURES.tried("WS: bad first frames", len(PRE_AUTH))


async def test_every_forged_token_in_auth_is_refused_with_the_documented_close_code(world: World):
    bystander, _ = await connect(world.b.tokens["alice"])
    wrong = []
    for forged in FORGED_TOKENS:
        token = await sync_to_async(forged.build)(world.signing)
        got = await outcome_of(frame(type="auth", token=token))
        expected = WS_EXPECTATION[forged.outcome]
        if got != (expected or 0):
            wrong.append(f"{forged.name}: expected {expected or 'welcome'}, got {got or 'welcome'}")
    assert not wrong, "\n".join(wrong)
    assert await bystander.nothing(0.2)
    await bystander.close()
    FIGURES.tried("WS: forged tokens in auth", len(FORGED_TOKENS))


# --- After authentication: an `error` frame, and the connection stays open ------------------------

BAD_IDS = [
    ("missing", {}),
    ("a string", {"ids": "1"}),
    ("empty", {"ids": []}),
    ("zero", {"ids": [0]}),
    ("negative", {"ids": [-1]}),
    ("a boolean", {"ids": [True]}),
    ("a string id", {"ids": ["1"]}),
    ("a float", {"ids": [1.5]}),
    ("2^63", {"ids": [2**63]}),
    ("2^64 (a float once parsed)", {"ids": [2**64]}),
    ("101 ids", {"ids": list(range(1, 102))}),
]
BAD_TOPICS = [
    ("missing", {}),
    ("a string", {"topics": "news"}),
    ("empty", {"topics": []}),
    ("numbers", {"topics": [1]}),
    ("an invalid key", {"topics": ["../news"]}),
    ("a NUL in the key", {"topics": ["news\u0000"]}),
    ("101 topics", {"topics": [f"t{i}" for i in range(101)]}),
]

# (name, what to send (str or bytes), expected answer: ("error", code) | ("ack", None) | ("pong", None)
#  | ("nothing", None)); text frames are sent with the request id 77 unless they set their own.
POST_AUTH: list[tuple[str, str | bytes, tuple[str, str | None]]] = [
    ("binary frame", b'{"type": "ping", "id": 77}', ("error", "bad_frame")),
    ("not JSON", "hello", ("error", "bad_frame")),
    ("JSON array", "[1, 2]", ("error", "bad_frame")),
    ("JSON null", "null", ("error", "bad_frame")),
    ("no type", frame(id=77), ("error", "bad_frame")),
    ("type a number", frame(type=5, id=77), ("error", "bad_frame")),
    ("unknown type", frame(type="publish", id=77), ("error", "unknown_type")),
    ("a server frame type", frame(type="notification", id=77), ("error", "unknown_type")),
    ("second auth", frame(type="auth", id=77), ("error", "already_authenticated")),
    ("id a boolean", frame(type="ping", id=True), ("error", "bad_frame")),
    ("id a float", frame(type="ping", id=1.5), ("error", "bad_frame")),
    ("id 2^53", frame(type="ping", id=2**53), ("error", "bad_frame")),
    ("id 65 characters", frame(type="ping", id="i" * 65), ("error", "bad_frame")),
    ("id an object", frame(type="ping", id={"a": 1}), ("error", "bad_frame")),
    ("nested 2,000 levels", '{"type": "ping", "id": 77, "x": ' + nested_list(2000) + "}", ("error", "bad_frame")),
    *[
        (f"{kind} with ids {name}", frame(type=kind, id=77, **fields), ("error", "invalid"))
        for kind in ("mark_read", "mark_unread", "archive", "unarchive")
        for name, fields in BAD_IDS
    ],
    *[
        (f"{kind} with topics {name}", frame(type=kind, id=77, **fields), ("error", "invalid"))
        for kind in ("subscribe", "unsubscribe")
        for name, fields in BAD_TOPICS
    ],
    (
        "subscribe with since not a cursor",
        frame(type="subscribe", id=77, topics=["news"], since=5),
        ("error", "invalid"),
    ),
    (
        "subscribe to a topic that never existed",
        frame(type="subscribe", id=77, topics=["nope"]),
        ("error", "forbidden"),
    ),
    ("subscribe to A's private topic", frame(type="subscribe", id=77, topics=["a-private"]), ("error", "forbidden")),
    ("unsubscribe from a topic not listened to", frame(type="unsubscribe", id=77, topics=["nope"]), ("ack", None)),
    ("mark_all_read with junk fields", frame(type="mark_all_read", id=77, ids="all", user="x"), ("ack", None)),
    ("pong with an id", frame(type="pong", id=77), ("nothing", None)),
    ("ping with unknown fields", frame(type="ping", id=77, tenant="tenant-b", user="alice"), ("pong", None)),
]


def echoed_id(sent: str | bytes) -> Any:
    """The request id an answer must carry: the frame's `id` if the frame could be read and the id
    is a valid one (docs/protocol.md, request ids), else null."""
    try:
        parsed = orjson.loads(sent) if isinstance(sent, str) else None
    except orjson.JSONDecodeError:
        return None
    request_id = parsed.get("id") if isinstance(parsed, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        return None
    valid = abs(request_id) < 2**53 if isinstance(request_id, int) else len(request_id) <= 64
    return request_id if valid else None


async def next_answer(socket: Socket) -> dict[str, Any]:
    """The next frame that answers a client frame (server pings and unread pushes skipped)."""
    while True:
        answer = await socket.receive()
        if answer["type"] not in ("ping", "unread"):
            return answer


async def test_every_bad_frame_after_auth_gets_an_error_frame_and_the_socket_stays_open(world: World):
    bystander, _ = await connect(world.b.tokens["alice"])
    b_before = await sync_to_async(state_of)(world.b.tenant)
    socket, _ = await connect(world.a.tokens["alice"])
    wrong = []
    b_token = frame(type="auth", token=world.b.tokens["alice"], id=77)
    for name, sent, (kind, code) in [
        *POST_AUTH,
        ("second auth, with B's token", b_token, ("error", "already_authenticated")),
    ]:
        if isinstance(sent, bytes):
            await socket.comm.send_to(bytes_data=sent)
        else:
            await socket.send_text(sent)
        if kind == "nothing":
            await socket.send(frame_marker := {"type": "ping", "id": "marker"})
            answer = await next_answer(socket)
            if answer != {"type": "pong", "id": "marker"}:
                wrong.append(f"{name}: expected no answer, got {answer} before {frame_marker}")
            continue
        answer = await next_answer(socket)
        if answer.get("type") != kind or answer.get("code") != code:
            wrong.append(f"{name}: expected {kind} {code or ''}, got {answer}")
        elif answer.get("id") != echoed_id(sent):
            wrong.append(f"{name}: the answer's id is {answer.get('id')!r}")
    await socket.send({"type": "ping", "id": "still-open"})
    assert await next_answer(socket) == {"type": "pong", "id": "still-open"}
    assert not wrong, "\n".join(wrong)
    # A frame over the limit closes, even after authentication.
    await socket.send_text(frame(type="ping", pad="x" * MAX_FRAME))
    assert await socket.closed_with() == 1009
    assert await bystander.nothing(0.2)
    assert await sync_to_async(state_of)(world.b.tenant) == b_before
    await bystander.close()
    FIGURES.tried("WS: bad frames after auth (frame type x field)", len(POST_AUTH) + 1)


# --- Tenant B's topics, ids and cursors from A's socket ------------------------------------------


async def publish(tenant: Tenant, **fields: Any) -> int:
    item = EventInput(kind="live", **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    result = await sync_to_async(services.events_publish)(tenant=tenant, api_key=None, items=[item])
    return result.event_ids[0]


def settled(state: dict[str, Any], world: World) -> dict[str, Any]:
    """B's state minus what B's own publishes during the test add (events, their inbox rows)."""
    return {
        **{key: value for key, value in state.items() if key not in ("events", "fanout_jobs", "tenant")},
        "inbox": [row for row in state["inbox"] if row[1] in world.b.events],
    }


async def test_b_topics_ids_and_cursors_reveal_and_change_nothing(world: World):
    b_socket, _ = await connect(world.b.tokens["alice"], topics=["news"])
    b_before = await sync_to_async(state_of)(world.b.tenant)
    # B's private topic named in A's auth: refused exactly as a topic nobody has; A's own joined.
    a_socket = await Socket().open()
    await a_socket.send({"type": "auth", "token": world.a.tokens["alice"], "topics": ["news", "b-private"], "id": "a1"})
    start = [await a_socket.receive_type(kind) for kind in ("welcome", "error", "resumed")]
    welcome, refused = start[0], start[1]
    assert welcome["tenant"] == "tenant-a"
    assert (refused["code"], refused["id"], refused["fields"]) == (
        "forbidden",
        "a1",
        {"topics": ["Not allowed: b-private"]},
    )
    theirs = await a_socket.request({"type": "subscribe", "id": 1, "topics": ["b-private"]})
    never = await a_socket.request({"type": "subscribe", "id": 1, "topics": ["never-existed"]})
    assert json.dumps(theirs).replace("b-private", "K") == json.dumps(never).replace("never-existed", "K")
    theirs = await a_socket.request({"type": "unsubscribe", "id": 1, "topics": ["b-private"]})
    assert theirs == {"type": "ack", "id": 1, "topics": ["news"]}  # ignored, as for any topic not listened to
    # B's event ids: "not found", exactly like ids that never existed; nothing changes for B.
    for kind in ("mark_read", "mark_unread", "archive", "unarchive"):
        ack = await a_socket.request({"type": kind, "id": 2, "ids": world.b.events})
        assert (ack["updated"], ack["not_found"]) == (0, world.b.events)
    # B publishes on "news" (which A also has, under the same key): A hears nothing of it.
    b_event = await publish(world.b.tenant, topics=["news"], recipients=["alice"])
    assert (await b_socket.receive_type("notification"))["id"] == b_event
    assert await a_socket.nothing(0.3)
    # B's cursor (beyond anything A's stream handed out) and a resume from 0: only A's stream.
    for _ in range(3):
        await publish(world.b.tenant, recipients=["alice"])
    b_cursor = await sync_to_async(lambda: world.b.cursor)()
    resumed_socket = await Socket().open()
    _, replayed, resumed = await resumed_socket.auth(world.a.tokens["alice"], since=b_cursor, topics=["news"])
    assert (resumed["recovered"], resumed["reason"], replayed) == (False, "invalid_cursor", [])
    from_zero = await Socket().open()
    _, replayed, _ = await from_zero.auth(world.a.tokens["alice"], since="0", topics=["news"])
    assert {frame["id"] for frame in replayed} <= set(world.a.events)
    # A revokes ITS alice's tokens and its signing key: B's alice stays connected.
    api = bearer(world.a.keys["admin"])
    assert (await sync_to_async(api.post)("/api/v1/users/alice/revoke-tokens")).status_code == 204
    assert await a_socket.closed_with() == 4003
    for socket in (resumed_socket, from_zero):
        await socket.closed_with()
    # Everything B received was B's own: its live notification and the pushes of its own publishes.
    while not await b_socket.nothing(0.3):
        received = await b_socket.receive()
        assert received["type"] in ("notification", "ping") and received.get("id") not in world.a.events
    assert settled(await sync_to_async(state_of)(world.b.tenant), world) == settled(b_before, world)
    await b_socket.close()
    FIGURES.tried("WS: B's topics/ids/cursors from A's socket", 10)


# --- Another site's page using the visitor's session (cross-site WebSocket hijacking) -------------

# (name, handshake Origin or None, whether the session may be used: welcome, else 4001)
SESSION_ORIGINS: list[tuple[str, bytes | None, bool]] = [
    ("Herald's own site", b"http://localhost", True),
    ("Herald's own site, other port", b"http://localhost:8000", True),
    ("no Origin (not a browser)", None, True),
    ("another site", b"https://evil.example", False),
    ("a look-alike host", b"https://localhost.evil.example", False),
    ("a sandboxed page (null)", b"null", False),
    ("file:", b"file://", False),
    ("not ASCII", "https://\u00e9vil.example".encode(), False),
    ("a scheme without host", b"javascript:alert(1)", False),
]


async def session_cookie(username: str, tenant: Tenant) -> str:
    @sync_to_async
    def login() -> str:
        user = get_user_model().objects.create_user(username, password="pw-123456", is_staff=True)
        membership_create(user=user, tenant=tenant, role="viewer")
        client = Client()
        client.force_login(user)
        return str(client.cookies["sessionid"].value)

    return await login()


async def test_another_sites_page_cannot_use_the_visitors_session(world: World):
    cookie = await session_cookie("alice", world.a.tenant)
    wrong = []
    for name, origin, allowed in SESSION_ORIGINS:
        headers = [(b"cookie", f"sessionid={cookie}".encode())] + ([(b"origin", origin)] if origin else [])
        socket = await Socket(headers=headers).open()
        await socket.send({"type": "auth"})
        answer = await socket.comm.receive_output(timeout=5)
        if allowed:
            welcome = json.loads(answer.get("text", "{}"))
            if (welcome.get("type"), welcome.get("tenant"), welcome.get("user")) != ("welcome", "tenant-a", "alice"):
                wrong.append(f"{name}: expected welcome as tenant-a/alice, got {answer}")
            await socket.close()
        elif answer != {"type": "websocket.close", "code": 4001, "reason": answer.get("reason")}:
            wrong.append(f"{name}: expected close 4001, got {answer}")
    assert not wrong, "\n".join(wrong)
    # The operations socket refuses the handshake itself from another site, and tenant A's staff
    # cannot watch tenant B from Herald's own site either.
    evil = WebsocketCommunicator(
        application,
        "/ws/v1/ops/",
        headers=[(b"origin", b"https://evil.example"), (b"cookie", f"sessionid={cookie}".encode())],
    )
    assert (await evil.connect())[0] is False
    ops = WebsocketCommunicator(
        application,
        "/ws/v1/ops/",
        headers=[(b"origin", b"http://localhost"), (b"cookie", f"sessionid={cookie}".encode())],
    )
    assert (await ops.connect())[0]
    assert await ops.receive_json_from() == {"type": "tenants", "tenants": ["tenant-a"]}
    await ops.send_json_to({"type": "watch", "tenant": "tenant-b"})
    assert (await ops.receive_json_from())["code"] == "invalid"
    await ops.disconnect()
    # Herald's token endpoint for its own pages: no CSRF token, no connection token.
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.cookies["sessionid"] = cookie
    response = await sync_to_async(csrf_client.post)("/token/", HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 403 and b'"token"' not in response.content
    FIGURES.tried("WS: cross-site session use (Origin x session)", len(SESSION_ORIGINS) + 3)


async def test_a_tenants_origin_list_keeps_other_sites_from_using_its_tokens(world: World):
    await sync_to_async(Tenant.objects.filter(pk=world.a.tenant.pk).update)(
        allowed_origins="https://app.tenant-a.example"
    )
    token = world.a.tokens["alice"]
    outcomes = {}
    for origin in (b"https://evil.example", b"https://app.tenant-b.example", b"https://app.tenant-a.example", None):
        socket = await Socket(headers=[(b"origin", origin)] if origin else []).open()
        await socket.send({"type": "auth", "token": token})
        message = await socket.comm.receive_output(timeout=5)
        outcomes[origin] = message.get("code") if message["type"] == "websocket.close" else "welcome"
        if outcomes[origin] == "welcome":
            await socket.close()
    assert outcomes == {
        b"https://evil.example": 4003,
        b"https://app.tenant-b.example": 4003,
        b"https://app.tenant-a.example": "welcome",
        None: "welcome",
    }
    inbox = await sync_to_async(bearer(token, HTTP_ORIGIN="https://evil.example").get)("/api/v1/inbox")
    assert (inbox.status_code, inbox.json()["error"]["code"]) == (403, "forbidden")
    FIGURES.tried("WS: token from a site the tenant does not list", 5)


# --- The auth timeout under load ------------------------------------------------------------------


async def test_a_prompt_auth_is_not_closed_4002_while_the_server_checks_it(world: World, settings, monkeypatch):
    settings.HERALD = {**settings.HERALD, "AUTH_TIMEOUT_SECONDS": 0.3}
    from accounts import credentials

    check = credentials.end_user_principal_from_token

    def slow_check(token: str) -> Any:  # a busy server: the check takes longer than the timeout
        time.sleep(0.6)
        return check(token)

    monkeypatch.setattr(credentials, "end_user_principal_from_token", slow_check)
    socket = await Socket().open()
    await socket.send({"type": "auth", "token": world.a.tokens["alice"]})  # at once
    message = await socket.comm.receive_output(timeout=5)
    FIGURES.tried("WS: prompt auth on a busy server", 1)
    assert message["type"] == "websocket.send", f"closed {message.get('code')}: {message.get('reason')}"
    assert json.loads(message["text"])["type"] == "welcome"
    await socket.close()


# --- What the close-code table says about 4003 ----------------------------------------------------

PROTOCOL_MD = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_the_close_code_table_explains_every_4003_the_server_sends() -> None:
    row = next(line for line in PROTOCOL_MD.read_text().splitlines() if line.startswith("| 4003 |"))
    assert "revoked" in row and ("origin" in row or "site" in row), row
