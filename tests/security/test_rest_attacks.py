"""Attacks on the REST API from tenant A's side, data-driven: every endpoint (endpoints.py) gets
every credential attack, tenant B's ids, topic keys and user ids, every malformed body and every
field attack that applies. Each must get the documented answer (status and JSON error code, as in
docs/api.md), and nothing of tenant B (nor, for refused requests, of A) may change."""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Any

import orjson
import pytest
from django.test import Client

from accounts.models import Tenant
from notifications import fanout
from notifications.models import Event
from tests.notifications.test_openapi import _routes_in_code
from tests.security.conftest import World, bearer, state_of
from tests.security.endpoints import BODY_ENDPOINTS, ENDPOINTS, Endpoint, fill
from tests.security.figures import FIGURES
from tests.security.forgery import FORGED_KEYS, FORGED_TOKENS, REST_EXPECTATION

pytestmark = [pytest.mark.usefixtures("lenient_auth_lockout")]

NEVER_EXISTED = {"event": 987_654_321, "topic": "never-existed", "user": "never-existed-user"}
ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")


@pytest.fixture
def world(shared_world: World, db: Any) -> World:
    """The module's world; every test's changes are rolled back (a savepoint per test)."""
    return shared_world


def own_values(world: World) -> dict[str, Any]:
    return {"event": world.a.events[0], "topic": "news", "user": "alice"}


def b_values(world: World) -> dict[str, Any]:
    """B's own resources, none of which exists in A: an event of B's users, B's private topic key,
    an end-user id only B has."""
    return {"event": world.b.events[0], "topic": "b-private", "user": "b-only-user"}


def own_credential(world: World, endpoint: Endpoint) -> str:
    return world.a.tokens["alice"] if endpoint.uses_token else world.a.keys["admin"]


def call(endpoint: Endpoint, values: dict[str, Any], *, client: Client, body: Any = None) -> Any:
    """One request to the endpoint, its placeholders filled with `values`; with `body`, or else
    the endpoint's valid body (json, not orjson: some attacks hold integers over 64 bits)."""
    path = fill(endpoint.path, values)
    method = getattr(client, endpoint.method.lower())
    if body is None and endpoint.body is None:
        return method(path)
    raw = json.dumps(fill(endpoint.body if body is None else body, values)).encode()
    return method(path, data=raw, content_type="application/json")


def error_code(response: Any) -> str | None:
    try:
        return response.json().get("error", {}).get("code")
    except ValueError:
        return "<not JSON>"


def test_the_attack_table_covers_every_rest_route() -> None:
    covered = {endpoint.route for endpoint in ENDPOINTS}
    routes = _routes_in_code()
    assert covered == routes, f"not attacked: {sorted(routes - covered)}; not routes: {sorted(covered - routes)}"


# --- Credentials ---------------------------------------------------------------------------------


def credential_attacks(world: World, endpoint: Endpoint) -> list[tuple[str, dict[str, str], int, str | None]]:
    """(name, client headers, expected status, expected error code) for one endpoint. The valid
    controls are last: they may change A's own rows."""
    a_key, b_key = world.a.keys["admin"], world.b.keys["admin"]
    basic = base64.b64encode(b"alice:password").decode()
    attacks: list[tuple[str, dict[str, str], int, str | None]] = [
        ("no Authorization header", {}, 401, "unauthorized"),
        ("Basic scheme", {"HTTP_AUTHORIZATION": f"Basic {basic}"}, 401, "unauthorized"),
        ("Bearer and nothing", {"HTTP_AUTHORIZATION": "Bearer "}, 401, "unauthorized"),
        ("Token scheme with A's valid key", {"HTTP_AUTHORIZATION": f"Token {a_key}"}, 401, "unauthorized"),
        ("key as a query-style header value", {"HTTP_AUTHORIZATION": f"key={a_key}"}, 401, "unauthorized"),
        ("non-ASCII credential", {"HTTP_AUTHORIZATION": "Bearer h\u00e9"}, 401, "unauthorized"),
        ("two keys in one header", {"HTTP_AUTHORIZATION": f"Bearer {a_key} {b_key}"}, 401, "unauthorized"),
        ("key in X-Api-Key instead", {"HTTP_X_API_KEY": a_key}, 401, "unauthorized"),
    ]
    revoked = world.a.keys["revoked"]
    attacks += [
        (f"API key: {forged.name}", _bearer(forged.build(a_key, b_key, revoked)), 401, "unauthorized")
        for forged in FORGED_KEYS
    ]
    for forged in FORGED_TOKENS:
        if forged.outcome == "valid":
            continue
        status, code = REST_EXPECTATION[forged.outcome]
        attacks.append((f"token: {forged.name}", _bearer(forged.build(world.signing)), status, code))
    inactive = world.inactive
    attacks += [
        ("key of a deactivated tenant", _bearer(inactive.keys["admin"]), 403, "tenant_inactive"),
        ("token of a deactivated tenant", _bearer(inactive.tokens["alice"]), 403, "tenant_inactive"),
    ]
    if endpoint.uses_token:
        attacks += [
            (f"API key with scope {scope}", _bearer(world.a.keys[scope]), 403, "forbidden")
            for scope in ("admin", "publish", "read")
        ]
    else:
        attacks.append(("A's end-user token on a backend endpoint", _bearer(world.a.tokens["alice"]), 403, "forbidden"))
        attacks += [
            (f"API key with only scope {scope}", _bearer(world.a.keys[scope]), 403, "forbidden")
            for scope in ("publish", "read")
            if scope != endpoint.credential
        ]
    # Valid controls (the table would prove nothing if these failed too).
    for forged in FORGED_TOKENS:
        if forged.outcome == "valid":
            expected = (endpoint.ok_status, None) if endpoint.uses_token else (403, "forbidden")
            attacks.append((f"token: {forged.name}", _bearer(forged.build(world.signing)), *expected))
    return attacks


def _bearer(credential: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {credential}"}


def check(response: Any, name: str, status: int, code: str | None) -> str | None:
    """None if the response is the documented one, else what was wrong."""
    if response.status_code != status or (code is not None and error_code(response) != code):
        return f"{name}: expected {status} {code}, got {response.status_code} {response.content[:200]!r}"
    if status == 401 and response.headers.get("WWW-Authenticate") != 'Bearer realm="herald"':
        return f'{name}: a 401 without `WWW-Authenticate: Bearer realm="herald"`'
    return None


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.id)
def test_every_credential_attack_gets_the_documented_answer_and_changes_nothing(world: World, endpoint: Endpoint):
    attacks = credential_attacks(world, endpoint)
    before = world.state()
    wrong, checked = [], False
    for name, headers, status, code in attacks:
        if status < 400 and not checked:  # every refusal is behind us: nothing may have changed
            assert world.state() == before, "a refused request changed something"
            checked = True
        response = call(endpoint, own_values(world), client=Client(**headers))
        wrong.append(check(response, name, status, code))
    assert not any(wrong), "\n".join(filter(None, wrong))
    assert state_of(world.b.tenant) == before["B"]
    FIGURES.tried("REST: credential x endpoint", len(attacks))


# --- Tenant B's ids, topic keys and user ids ----------------------------------------------------

_GENERATED = {"id", "token", "expires_at", "created_at"}


def comparable(response: Any, values: dict[str, Any]) -> tuple[int, Any]:
    """The answer with the attacked values masked, so that an answer about B's id can be compared
    with the answer about an id that never existed. Generated values (new ids, tokens) are masked
    too: they differ between any two calls."""

    def mask(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: "<generated>" if k in _GENERATED else mask(v, k) for k, v in value.items()}
        if isinstance(value, list):
            if key == "not_found":
                return ["<event>" if item == values["event"] else item for item in value]
            return [mask(item, key) for item in value]
        if isinstance(value, str):  # longest first: "never-existed-user" contains "never-existed"
            for name, attacked in sorted(values.items(), key=lambda item: -len(str(item[1]))):
                value = value.replace(str(attacked), f"<{name}>")
        return value

    body = response.json() if response.content else None
    return response.status_code, mask(body)


PLACEHOLDER = re.compile(r"\{(event|topic|user)\}")
B_SECRETS = ("tenant-b secret", "tenant-b.direct", "tenant-b.topic", "tenant-b.broadcast")


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda endpoint: endpoint.id)
def test_b_ids_topic_keys_and_user_ids_are_not_found_exactly_like_ids_that_never_existed(
    world: World, endpoint: Endpoint
):
    """With A's own valid credential, naming B's event, topic or user must answer exactly as naming
    one that never existed (nothing to detect), and change nothing of B; naming the id both tenants
    share ("news", "alice") acts on A's rows only."""
    client = bearer(own_credential(world, endpoint))
    b_before = state_of(world.b.tenant)
    theirs = b_values(world)
    foreign = call(endpoint, theirs, client=client)
    names_something = PLACEHOLDER.search(endpoint.path + json.dumps(endpoint.body))
    if names_something:  # an event id, topic key or user id
        never = call(endpoint, NEVER_EXISTED, client=client)
        assert comparable(foreign, theirs) == comparable(never, NEVER_EXISTED)
    for secret in B_SECRETS:
        assert secret not in foreign.content.decode(), f"B's {secret!r} leaked"
    if foreign.status_code == 200 and "results" in foreign.json():
        listed = {item["id"] for item in foreign.json()["results"] if isinstance(item, dict) and "id" in item}
        assert listed <= set(Event.objects.filter(tenant=world.a.tenant).values_list("number", flat=True))
    if endpoint.path == "/api/v1/tokens" and foreign.status_code == 201:
        # The token minted for "B's" user id is a token of A's own user of that id.
        inbox = bearer(foreign.json()["token"]).get("/api/v1/inbox").json()
        assert inbox["results"] == [] and inbox["unread"] == 0
    # The id both tenants have ("news", "alice", or no id at all): A's own rows, successfully.
    shared = call(endpoint, own_values(world), client=client) if names_something else foreign
    assert shared.status_code == endpoint.ok_status, shared.content
    while fanout.process_pending() > 0:  # whatever A published is delivered (to A's users only)
        pass
    assert state_of(world.b.tenant) == b_before
    FIGURES.tried("REST: B's ids/keys/user ids x endpoint", 3)


# --- Malformed bodies ----------------------------------------------------------------------------


def nested(levels: int) -> Any:
    return 1 if levels == 0 else {"a": nested(levels - 1)}


FOUR_MIB = 4 * 1024 * 1024
VALID_JSON = b'{"kind": "k", "recipients": ["alice"]}'
# (name, raw body or None for "the endpoint's valid body with an extra deep field", content type,
#  status, code)
RAW_BODIES: list[tuple[str, bytes | None, str, int, str]] = [
    ("invalid UTF-8 bytes", b'{"kind": "\xff\xfe", "recipients": ["alice"]}', "application/json", 400, "bad_json"),
    ("invalid UTF-8 in a key", b'{"\xc3\x28": 1}', "application/json", 400, "bad_json"),
    ("overlong UTF-8 for '/'", b'{"url": "\xc0\xaf"}', "application/json", 400, "bad_json"),
    ("UTF-8-encoded surrogate", b'{"title": "\xed\xa0\x80"}', "application/json", 400, "bad_json"),
    ("lone surrogate escape", b'{"title": "\\ud800"}', "application/json", 400, "bad_json"),
    ("truncated JSON", b'{"kind": ', "application/json", 400, "bad_json"),
    ("trailing garbage", b"{}{}", "application/json", 400, "bad_json"),
    ("single quotes", b"{'kind': 'k'}", "application/json", 400, "bad_json"),
    ("a comment", b"{/* hi */}", "application/json", 400, "bad_json"),
    ("NaN", b'{"data": {"x": NaN}}', "application/json", 400, "bad_json"),
    ("1e400 (infinity)", b'{"data": {"x": 1e400}}', "application/json", 400, "bad_json"),
    ("UTF-8 byte order mark", b"\xef\xbb\xbf" + VALID_JSON, "application/json", 400, "bad_json"),
    ("UTF-16", VALID_JSON.decode().encode("utf-16"), "application/json", 400, "bad_json"),
    (
        "latin-1 declared",
        '{"title": "caf\u00e9"}'.encode("latin-1"),
        "application/json; charset=latin-1",
        400,
        "bad_json",
    ),
    ("a JSON array", b"[]", "application/json", 400, "invalid"),
    ("a JSON string", b'"kind"', "application/json", 400, "invalid"),
    ("a JSON number", b"1", "application/json", 400, "invalid"),
    ("JSON null", b"null", "application/json", 400, "invalid"),
    ("nested 33 levels", None, "application/json", 400, "invalid"),
    ("nested 100,000 levels", b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "bad_json"),
    ("4 MiB + 1 byte", b'{"data": {"x": "' + b"a" * FOUR_MIB + b'"}}', "application/json", 413, "too_large"),
    ("text/plain", VALID_JSON, "text/plain", 415, "unsupported_media_type"),
    ("form-encoded", b"kind=k&recipients=alice", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("multipart", b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 415, "unsupported_media_type"),
    ("XML", b"<kind>k</kind>", "application/xml", 415, "unsupported_media_type"),
    ("no content type", VALID_JSON, "", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS, ids=lambda endpoint: endpoint.id)
def test_malformed_bodies_get_the_documented_error_and_change_nothing(world: World, endpoint: Endpoint):
    client = bearer(own_credential(world, endpoint))
    before = world.state()
    wrong = []
    for name, raw, content_type, status, code in RAW_BODIES:
        if raw is None:
            raw = orjson.dumps({**fill(endpoint.body, own_values(world)), "x": nested(32)})
        path = fill(endpoint.path, own_values(world))
        response = client.generic(endpoint.method, path, raw, content_type=content_type)
        wrong.append(check(response, name, status, code))
    assert not any(wrong), "\n".join(filter(None, wrong))
    assert world.state() == before
    FIGURES.tried("REST: malformed body x endpoint", len(RAW_BODIES))


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.field_attacks], ids=lambda endpoint: endpoint.id)
def test_wrong_types_and_values_are_400_naming_the_field_and_change_nothing(world: World, endpoint: Endpoint):
    client = bearer(own_credential(world, endpoint))
    before = world.state()
    wrong = []
    for name, body, field in endpoint.field_attacks:
        response = call(endpoint, own_values(world), client=client, body=body)
        problem = check(response, name, 400, "invalid")
        if problem is None and field not in response.json()["error"].get("fields", {}):
            problem = f"{name}: the error does not name `{field}`: {response.json()}"
        wrong.append(problem)
    assert not any(wrong), "\n".join(filter(None, wrong))
    assert world.state() == before
    FIGURES.tried("REST: field attacks (wrong type/value)", len(endpoint.field_attacks))


# --- Publish limits ------------------------------------------------------------------------------


def test_publishes_over_the_key_and_tenant_limits_are_429_whole_and_spare_tenant_b(world: World, monkeypatch):
    # One fixed rate-limit window for the whole test, 30 s before it ends.
    monkeypatch.setattr("accounts.ratelimit.time.time", lambda: 1_800_000_030.0)
    Tenant.objects.filter(pk=world.a.tenant.pk).update(publishes_per_minute=10, key_publishes_per_minute=6)
    before = Event.objects.filter(tenant=world.a.tenant).count()
    publisher, admin = bearer(world.a.keys["publish"]), bearer(world.a.keys["admin"])
    event = {"kind": "flood", "recipients": ["alice"]}

    accepted = publisher.post("/api/v1/events", event, format="json", HTTP_IDEMPOTENCY_KEY="first")
    statuses = [publisher.post("/api/v1/events", event, format="json").status_code for _ in range(6)]
    assert (accepted.status_code, statuses) == (202, [202] * 5 + [429])  # the key's 6 per minute
    refused = publisher.post("/api/v1/events", event, format="json")
    body = refused.json()["error"]
    assert (refused.status_code, body["code"]) == (429, "rate_limited")
    assert body["retry_after"] == int(refused.headers["Retry-After"]) == 30

    # Another key of A has its own budget, but the tenant's 10 per minute are shared: 6 used, a
    # batch of 5 would make 11, so none of it is stored; and a refused request still counts.
    batch = admin.post("/api/v1/events/batch", {"events": [{**event, "kind": "refused.batch"}] * 5}, format="json")
    assert (batch.status_code, batch.json()["error"]["code"]) == (429, "rate_limited")
    assert admin.post("/api/v1/events", event, format="json").status_code == 429
    assert not Event.objects.filter(kind="refused.batch").exists()
    assert Event.objects.filter(tenant=world.a.tenant).count() == before + 6

    # A retry of an accepted request is answered from the idempotency record, not charged.
    retry = publisher.post("/api/v1/events", event, format="json", HTTP_IDEMPOTENCY_KEY="first")
    assert (retry.status_code, retry.json(), retry.headers.get("Idempotent-Replayed")) == (
        202,
        accepted.json(),
        "true",
    )
    # Tenant B, meanwhile, publishes as usual.
    b_client = bearer(world.b.keys["publish"])
    assert {b_client.post("/api/v1/events", event, format="json").status_code for _ in range(12)} == {202}
    FIGURES.tried("REST: publishes over the key/tenant limit", 16)


# --- NUL characters in paths, queries and credentials ----------------------------------------------

# (name, method, path, credential kind, expected status, expected code or None)
NUL_CASES = [
    pytest.param("GET", "/api/v1/topics/%00", "admin", 404, "not_found", id="topic key"),
    pytest.param("PATCH", "/api/v1/topics/%00", "admin", 404, "not_found", id="topic key (PATCH)"),
    pytest.param("DELETE", "/api/v1/topics/%00", "admin", 404, "not_found", id="topic key (DELETE)"),
    pytest.param("GET", "/api/v1/topics/%00/subscribers", "admin", 404, "not_found", id="subscribers"),
    pytest.param("GET", "/api/v1/topics?cursor=%00", "admin", 400, "invalid", id="topics cursor"),
    pytest.param(
        "GET",
        "/api/v1/topics/news/subscribers?cursor=%00",
        "admin",
        400,
        "invalid",
        id="subscribers cursor",
    ),
    pytest.param("GET", "/api/v1/users/%00/subscriptions", "admin", 400, "invalid", id="user id (subscriptions)"),
    pytest.param(
        "DELETE",
        "/api/v1/users/%00/subscriptions/news",
        "admin",
        400,
        "invalid",
        id="user id (unsubscribe)",
    ),
    pytest.param(
        "DELETE",
        "/api/v1/users/alice/subscriptions/%00",
        "admin",
        404,
        "not_found",
        id="topic (unsubscribe)",
    ),
    pytest.param("POST", "/api/v1/users/%00/revoke-tokens", "admin", 400, "invalid", id="user id (revoke)"),
    pytest.param("GET", "/api/v1/inbox?cursor=%00", "token", 400, "invalid", id="inbox cursor"),
    # (Daphne itself refuses a NUL in a header with a bare 400; other ASGI servers may not.)
    pytest.param("GET", "/api/v1/topics", "nul-key", 401, "unauthorized", id="API-key prefix"),
    pytest.param("GET", "/api/v1/inbox", "nul-token", 401, "unauthorized", id="token"),
]


@pytest.mark.parametrize(("method", "path", "credential", "status", "code"), NUL_CASES)
def test_nul_characters_are_client_errors_never_storage_errors(world: World, method, path, credential, status, code):
    secret = {
        "admin": world.a.keys["admin"],
        "token": world.a.tokens["alice"],
        "nul-key": "hk_\x00_" + "a" * 43,
        "nul-token": "a\x00.b.c",
    }[credential]
    before = world.state()
    response = Client().generic(
        method, path, b"{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    FIGURES.tried("REST: NUL in path/query/credential", 1)
    assert check(response, path, status, code) is None, response.content
    assert world.state() == before


# --- A malicious end user, and what ids reveal ----------------------------------------------------


@pytest.mark.parametrize("action", ["read", "unread", "archive", "unarchive"])
def test_an_end_user_cannot_touch_another_users_inbox_in_the_same_tenant(world: World, action: str):
    alice_only = world.a.events[1]  # published to topic "news": alice is subscribed, a-only-user is not
    before = world.state()
    mallory = bearer(world.a.tokens["a-only-user"])
    response = mallory.post(f"/api/v1/inbox/{action}", {"ids": [alice_only]}, format="json")
    assert response.status_code == 200
    assert (response.json()["updated"], response.json()["not_found"]) == (0, [alice_only])
    assert world.state() == before
    FIGURES.tried("REST: another user's notification ids (same tenant)", 1)


def test_a_tenants_event_ids_do_not_count_what_other_tenants_publish(world: World):
    """Event ids (the ids publishers and end users see, over REST and in WebSocket frames) are
    counted per tenant: the gap between two of A's ids is what A itself published meanwhile,
    whatever B did, singly or in batches."""
    a_api, b_api = bearer(world.a.keys["publish"]), bearer(world.b.keys["publish"])
    event = {"kind": "k", "recipients": ["alice"]}
    first = a_api.post("/api/v1/events", event, format="json").json()["id"]
    for _ in range(5):
        b_api.post("/api/v1/events", event, format="json")
    b_api.post("/api/v1/events/batch", {"events": [event] * 20}, format="json")
    second = a_api.post("/api/v1/events", event, format="json").json()["id"]
    batch = a_api.post("/api/v1/events/batch", {"events": [event] * 3}, format="json").json()["results"]
    b_api.post("/api/v1/events", event, format="json")
    third = a_api.post("/api/v1/events", event, format="json").json()["id"]
    FIGURES.tried("REST: id gaps as a side channel", 30)
    assert second - first == 1, f"A's ids went {first} -> {second}: B published {second - first - 1} meanwhile"
    assert [row["id"] for row in batch] == [second + 1, second + 2, second + 3]
    assert third == second + 4
    # And the ids A's end users see are those same numbers.
    while fanout.process_pending() > 0:
        pass
    inbox = bearer(world.a.tokens["alice"]).get("/api/v1/inbox").json()["results"]
    assert [item["id"] for item in inbox[:5]] == [third, second + 3, second + 2, second + 1, second]
