"""The REST surface as a table: every route and method, the credential it needs, a valid request
for it, and the field attacks that apply to its body. The attack tables in test_rest_attacks.py
run every attack against every row, and fail if a route exists that this table does not list, so
a new endpoint cannot escape the suite."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_DROP = object()


@dataclass(frozen=True)
class Endpoint:
    method: str
    # With placeholders {event} (an event id), {topic} (a topic key), {user} (an end-user id).
    path: str
    credential: str  # "token" (an end user's connection token), or the API-key scope it needs
    body: Any = None  # a valid JSON body, with placeholders; None: the endpoint reads no body
    # (name, complete body, the field the 400 must name)
    field_attacks: tuple[tuple[str, Any, str], ...] = field(default_factory=tuple)
    ok_status: int = 200

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def route(self) -> tuple[str, str]:
        """The (OpenAPI path, method) this row covers."""
        path = self.path.replace("{event}", "{event_id}").replace("{topic}", "{key}").replace("{user}", "{user_id}")
        return path, self.method.lower()

    @property
    def uses_token(self) -> bool:
        return self.credential == "token"


def fill(template: Any, values: dict[str, Any]) -> Any:
    """Replace placeholders in a path or body; a whole-string placeholder keeps the value's type
    (so `["{event}"]` becomes a list of integers)."""
    if isinstance(template, str):
        for name, value in values.items():
            if template == "{" + name + "}":
                return value
            template = template.replace("{" + name + "}", str(value))
        return template
    if isinstance(template, list):
        return [fill(item, values) for item in template]
    if isinstance(template, dict):
        return {key: fill(value, values) for key, value in template.items()}
    return template


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {**base, **changes}
    return {key: value for key, value in body.items() if value is not _DROP}


EVENT = {"kind": "attack.probe", "recipients": ["{user}"]}

EVENT_FIELD_ATTACKS: tuple[tuple[str, Any, str], ...] = (
    ("kind missing", _with(EVENT, kind=_DROP), "kind"),
    ("kind a number", _with(EVENT, kind=7), "kind"),
    ("kind a list", _with(EVENT, kind=["a"]), "kind"),
    ("kind empty", _with(EVENT, kind=""), "kind"),
    ("kind with spaces", _with(EVENT, kind="order shipped"), "kind"),
    ("kind with markup", _with(EVENT, kind="<script>"), "kind"),
    ("kind 101 characters", _with(EVENT, kind="k" * 101), "kind"),
    ("data a list", _with(EVENT, data=[1, 2]), "data"),
    ("data a string", _with(EVENT, data="{}"), "data"),
    ("data null", _with(EVENT, data=None), "data"),
    ("data with a NUL key", _with(EVENT, data={"a\u0000": 1}), "data"),
    ("data with a NUL value", _with(EVENT, data={"a": ["x\u0000y"]}), "data"),
    ("data over the tenant's 16 KB", _with(EVENT, data={"blob": "x" * 17_000}), "data"),
    ("title a number", _with(EVENT, title=1), "title"),
    ("title 201 characters", _with(EVENT, title="t" * 201), "title"),
    ("title with NUL", _with(EVENT, title="a\u0000b"), "title"),
    ("body 2,001 characters", _with(EVENT, body="b" * 2001), "body"),
    ("body an object", _with(EVENT, body={"html": "<b>"}), "body"),
    ("url javascript:", _with(EVENT, url="javascript:alert(1)"), "url"),
    ("url data:", _with(EVENT, url="data:text/html,<script>alert(1)</script>"), "url"),
    ("url protocol-relative", _with(EVENT, url="//evil.example/x"), "url"),
    ("url backslash", _with(EVENT, url="/\\evil.example"), "url"),
    ("url with a tab", _with(EVENT, url="/\t/evil.example"), "url"),
    ("url with a newline", _with(EVENT, url="https://ok.example/\nSet-Cookie:x"), "url"),
    ("url 2,001 characters", _with(EVENT, url="/" + "u" * 2000), "url"),
    ("recipients a string", _with(EVENT, recipients="alice"), "recipients"),
    ("recipients numbers", _with(EVENT, recipients=[1, 2]), "recipients"),
    ("recipients invalid id", _with(EVENT, recipients=["alice smith"]), "recipients"),
    ("recipients path traversal", _with(EVENT, recipients=["../admin"]), "recipients"),
    ("recipients 201-character id", _with(EVENT, recipients=["u" * 201]), "recipients"),
    ("recipients 1,001", _with(EVENT, recipients=[f"u{i}" for i in range(1001)]), "recipients"),
    ("topics a string", _with(EVENT, topics="news"), "topics"),
    ("topics 21", _with(EVENT, topics=[f"t{i}" for i in range(21)]), "topics"),
    ("topics invalid key", _with(EVENT, topics=["-bad"]), "topics"),
    ("topics unknown", _with(EVENT, topics=["never-existed"]), "topics"),
    ("broadcast a string", _with(EVENT, broadcast="true"), "broadcast"),
    ("broadcast 1", _with(EVENT, broadcast=1), "broadcast"),
    ("no target", _with(EVENT, recipients=_DROP), "non_field_errors"),
)

BATCH_FIELD_ATTACKS: tuple[tuple[str, Any, str], ...] = (
    ("events missing", {}, "events"),
    ("events an object", {"events": EVENT}, "events"),
    ("events empty", {"events": []}, "events"),
    ("101 events", {"events": [EVENT] * 101}, "events"),
    ("one bad event among good ones", {"events": [EVENT, _with(EVENT, kind=""), EVENT]}, "events"),
    ("one event over the payload cap", {"events": [EVENT, _with(EVENT, data={"blob": "x" * 17_000})]}, "events"),
    ("one event to an unknown topic", {"events": [EVENT, _with(EVENT, topics=["never-existed"])]}, "events"),
)

TOKEN = {"user_id": "{user}"}
TOKEN_FIELD_ATTACKS: tuple[tuple[str, Any, str], ...] = (
    ("user_id missing", {}, "user_id"),
    ("user_id a number", {"user_id": 42}, "user_id"),
    ("user_id invalid", {"user_id": "alice smith"}, "user_id"),
    ("user_id path traversal", {"user_id": "../b"}, "user_id"),
    ("user_id 201 characters", {"user_id": "u" * 201}, "user_id"),
    ("ttl_seconds 59", _with(TOKEN, ttl_seconds=59), "ttl_seconds"),
    ("ttl_seconds over the cap", _with(TOKEN, ttl_seconds=86401), "ttl_seconds"),
    ("ttl_seconds ten years", _with(TOKEN, ttl_seconds=315_360_000), "ttl_seconds"),
    ("ttl_seconds negative", _with(TOKEN, ttl_seconds=-900), "ttl_seconds"),
    ("ttl_seconds a string", _with(TOKEN, ttl_seconds="900"), "ttl_seconds"),
    ("ttl_seconds a float", _with(TOKEN, ttl_seconds=900.5), "ttl_seconds"),
    ("ttl_seconds true", _with(TOKEN, ttl_seconds=True), "ttl_seconds"),
    ("topics a string", _with(TOKEN, topics="news"), "topics"),
    ("topics invalid key", _with(TOKEN, topics=["../news"]), "topics"),
    ("topics 101", _with(TOKEN, topics=[f"t{i}" for i in range(101)]), "topics"),
)

TOPIC = {"key": "attack-new-topic"}
TOPIC_FIELD_ATTACKS: tuple[tuple[str, Any, str], ...] = (
    ("key missing", {}, "key"),
    ("key a number", {"key": 7}, "key"),
    ("key path traversal", {"key": "../x"}, "key"),
    ("key starting with a dot", {"key": ".x"}, "key"),
    ("key 129 characters", {"key": "k" * 129}, "key"),
    ("key with a slash", {"key": "a/b"}, "key"),
    ("name a number", _with(TOPIC, name=1), "name"),
    ("name 201 characters", _with(TOPIC, name="n" * 201), "name"),
    ("description 2,001 characters", _with(TOPIC, description="d" * 2001), "description"),
    ("allow_client_subscribe a string", _with(TOPIC, allow_client_subscribe="yes"), "allow_client_subscribe"),
    ("allow_client_subscribe 1", _with(TOPIC, allow_client_subscribe=1), "allow_client_subscribe"),
)
TOPIC_PATCH_FIELD_ATTACKS: tuple[tuple[str, Any, str], ...] = (
    ("name a list", {"name": ["x"]}, "name"),
    ("name 201 characters", {"name": "n" * 201}, "name"),
    ("allow_client_subscribe a string", {"allow_client_subscribe": "true"}, "allow_client_subscribe"),
    ("allow_client_subscribe null", {"allow_client_subscribe": None}, "allow_client_subscribe"),
)

SUBSCRIBE = {"topics": ["{topic}"]}
SUBSCRIBE_FIELD_ATTACKS: tuple[tuple[str, Any, str], ...] = (
    ("topics missing", {}, "topics"),
    ("topics empty", {"topics": []}, "topics"),
    ("topics a string", {"topics": "news"}, "topics"),
    ("topics numbers", {"topics": [1]}, "topics"),
    ("topics invalid key", {"topics": ["../news"]}, "topics"),
    ("topics unknown", {"topics": ["never-existed"]}, "topics"),
    ("topics 101", {"topics": [f"t{i}" for i in range(101)]}, "topics"),
)

IDS = {"ids": ["{event}"]}
IDS_FIELD_ATTACKS: tuple[tuple[str, Any, str], ...] = (
    ("ids missing", {}, "ids"),
    ("ids empty", {"ids": []}, "ids"),
    ("ids an integer", {"ids": 1}, "ids"),
    ("ids strings", {"ids": ["1"]}, "ids"),
    ("ids a float", {"ids": [1.5]}, "ids"),
    ("ids a boolean", {"ids": [True]}, "ids"),
    ("ids zero", {"ids": [0]}, "ids"),
    ("ids negative", {"ids": [-1]}, "ids"),
    ("ids 2^63", {"ids": [2**63]}, "ids"),
    ("ids 2^64 (parsed as a float)", {"ids": [2**64]}, "ids"),
    ("ids 101", {"ids": list(range(1, 102))}, "ids"),
    ("ids null", {"ids": None}, "ids"),
)

ENDPOINTS: list[Endpoint] = [
    Endpoint("POST", "/api/v1/events", "publish", EVENT, EVENT_FIELD_ATTACKS, ok_status=202),
    Endpoint("POST", "/api/v1/events/batch", "publish", {"events": [EVENT]}, BATCH_FIELD_ATTACKS, ok_status=202),
    Endpoint("GET", "/api/v1/events/{event}", "read"),
    Endpoint("POST", "/api/v1/tokens", "publish", TOKEN, TOKEN_FIELD_ATTACKS, ok_status=201),
    Endpoint("GET", "/api/v1/topics", "read"),
    Endpoint("POST", "/api/v1/topics", "admin", TOPIC, TOPIC_FIELD_ATTACKS, ok_status=201),
    Endpoint("GET", "/api/v1/topics/{topic}", "read"),
    Endpoint("PATCH", "/api/v1/topics/{topic}", "admin", {"name": "renamed"}, TOPIC_PATCH_FIELD_ATTACKS),
    Endpoint("DELETE", "/api/v1/topics/{topic}", "admin", ok_status=204),
    Endpoint("GET", "/api/v1/topics/{topic}/subscribers", "read"),
    Endpoint("GET", "/api/v1/users/{user}/subscriptions", "read"),
    Endpoint("POST", "/api/v1/users/{user}/subscriptions", "admin", SUBSCRIBE, SUBSCRIBE_FIELD_ATTACKS),
    Endpoint("DELETE", "/api/v1/users/{user}/subscriptions/{topic}", "admin", ok_status=204),
    Endpoint("POST", "/api/v1/users/{user}/revoke-tokens", "admin", ok_status=204),
    Endpoint("GET", "/api/v1/inbox", "token"),
    Endpoint("GET", "/api/v1/inbox/unread-count", "token"),
    Endpoint("POST", "/api/v1/inbox/read", "token", IDS, IDS_FIELD_ATTACKS),
    Endpoint("POST", "/api/v1/inbox/unread", "token", IDS, IDS_FIELD_ATTACKS),
    Endpoint("POST", "/api/v1/inbox/archive", "token", IDS, IDS_FIELD_ATTACKS),
    Endpoint("POST", "/api/v1/inbox/unarchive", "token", IDS, IDS_FIELD_ATTACKS),
    Endpoint("POST", "/api/v1/inbox/read-all", "token"),
]

BODY_ENDPOINTS = [endpoint for endpoint in ENDPOINTS if endpoint.body is not None]
