"""The attack suite's world: tenant A (the attacker's side: its API keys, its end users' tokens)
and tenant B (the victim), sharing a topic key ("news") and an end-user id ("alice"), plus a
deactivated tenant C. `state_of` snapshots everything a tenant owns so that a test can assert that
an attack changed nothing. The summary of what the suite tried and measured is printed at the end."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from accounts.models import ApiKey, EndUser, SigningKey, Tenant
from accounts.services import (
    api_key_create,
    api_key_revoke,
    connection_token_mint,
    signing_key_revoke,
    signing_key_rotate,
    tenant_create,
    tenant_set_active,
)
from notifications import fanout, services
from notifications.models import Event, FanoutJob, IdempotencyRecord, Notification, Stream, Subscription, Topic
from notifications.services import EventInput, topic_create
from tests.security.figures import FIGURES
from tests.security.forgery import Keys


@dataclass
class Side:
    """One tenant as the tests see it: its API keys by scope, its end users' tokens, its rows."""

    tenant: Tenant
    keys: dict[str, str]  # "admin" | "publish" | "read" | "revoked" -> secret
    tokens: dict[str, str]  # end-user id -> connection token
    events: list[int]  # ids of events published to its users (fanned out)
    topics: list[str]
    users: list[str]

    @property
    def cursor(self) -> str:
        stream = Stream.objects.filter(tenant=self.tenant).values_list("last_seq", flat=True).first()
        return str(stream or 0)


@dataclass
class World:
    a: Side
    b: Side
    inactive: Side
    signing: Keys

    def state(self) -> dict[str, Any]:
        return {"A": state_of(self.a.tenant), "B": state_of(self.b.tenant)}


def state_of(tenant: Tenant) -> dict[str, Any]:
    """Everything a tenant owns that an attack could change (timestamps of use excluded)."""

    def rows(queryset: Any, *fields: str) -> list[Any]:
        return sorted(queryset.values_list(*fields), key=repr)

    return {
        "tenant": Tenant.objects.filter(pk=tenant.pk).values().get() | {"updated_at": None},
        "events": rows(Event.objects.filter(tenant=tenant), "pk", "kind", "status", "seq", "recipients"),
        "fanout_jobs": FanoutJob.objects.filter(tenant=tenant).count(),
        "inbox": rows(
            Notification.objects.filter(tenant=tenant), "user__external_id", "event_id", "read_at", "archived_at"
        ),
        "topics": rows(Topic.objects.filter(tenant=tenant), "key", "name", "description", "allow_client_subscribe"),
        "subscriptions": rows(Subscription.objects.filter(tenant=tenant), "user__external_id", "topic__key"),
        "end_users": rows(EndUser.objects.filter(tenant=tenant), "external_id", "tokens_revoked_at"),
        "api_keys": rows(ApiKey.objects.filter(tenant=tenant), "prefix", "revoked_at", "scopes"),
        "signing_keys": rows(SigningKey.objects.filter(tenant=tenant), "kid", "revoked_at"),
        "idempotency": rows(IdempotencyRecord.objects.filter(tenant=tenant), "key", "request_hash"),
    }


def _publish(tenant: Tenant, **fields: Any) -> int:
    item = EventInput(
        kind=fields.pop("kind", "seed"), **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    )
    return services.events_publish(tenant=tenant, api_key=None, items=[item]).event_ids[0]


def _fan_out_everything() -> None:
    while fanout.process_pending() > 0:
        pass


def _side(slug: str, *, private_topic: str, extra_user: str, earlier_events: int = 0) -> Side:
    tenant = tenant_create(slug=slug, name=slug.title(), client_messages_per_second=1000)
    for _ in range(earlier_events):  # so that this side's event ids are ones the other side never had
        _publish(tenant, kind=f"{slug}.earlier", recipients=[extra_user])
    topic_create(tenant=tenant, key="news", allow_client_subscribe=True)
    topic_create(tenant=tenant, key=private_topic)
    services.subscriptions_add(tenant=tenant, user_id="alice", topic_keys=["news"])
    keys = {
        scope: api_key_create(tenant=tenant, name=scope, scopes=[scope])[1] for scope in ("admin", "publish", "read")
    }
    revoked, keys["revoked"] = api_key_create(tenant=tenant, name="revoked", scopes=["admin"])
    api_key_revoke(tenant=tenant, api_key=revoked)
    users = ["alice", extra_user]
    events = [
        _publish(tenant, kind=f"{slug}.direct", recipients=users, title=f"{slug} secret"),
        _publish(tenant, kind=f"{slug}.topic", topics=["news"]),
        _publish(tenant, kind=f"{slug}.broadcast", broadcast=True),
    ]
    _fan_out_everything()
    services.inbox_mark_read(user=EndUser.objects.get(tenant=tenant, external_id="alice"), ids=events[:1])
    tokens = {user: connection_token_mint(tenant=tenant, user_id=user)[0] for user in users}
    return Side(tenant, keys, tokens, events, ["news", private_topic], users)


def build_world() -> World:
    a = _side("tenant-a", private_topic="a-private", extra_user="a-only-user")
    # Event ids are counted per tenant: B's events are #4-#6, ids A (#1-#3) does not have.
    b = _side("tenant-b", private_topic="b-private", extra_user="b-only-user", earlier_events=3)
    inactive = _side("tenant-c", private_topic="c-private", extra_user="c-only-user")
    tenant_set_active(tenant=inactive.tenant, active=False)
    # A has a revoked signing key (tokens signed with it must be refused) and a current one.
    old = SigningKey.objects.get(tenant=a.tenant, revoked_at__isnull=True)
    signing_key_rotate(tenant=a.tenant)
    signing_key_revoke(tenant=a.tenant, signing_key=old)
    a.tokens = {user: connection_token_mint(tenant=a.tenant, user_id=user)[0] for user in a.users}
    current = SigningKey.objects.get(tenant=a.tenant, revoked_at__isnull=True)
    theirs = SigningKey.objects.get(tenant=b.tenant, revoked_at__isnull=True)
    signing = Keys(
        kid=current.kid,
        secret=current.secret,
        other_kid=theirs.kid,
        other_secret=theirs.secret,
        revoked_kid=old.kid,
        revoked_secret=old.secret,
        user="alice",
    )
    return World(a=a, b=b, inactive=inactive, signing=signing)


@pytest.fixture
def world(db: Any) -> World:
    """A fresh world for one test (use it with django_db(transaction=True) for sockets)."""
    return build_world()


@pytest.fixture(scope="module")
def shared_world(django_db_setup: Any, django_db_blocker: Any) -> Iterator[World]:
    """One world for a whole module of REST tests, built once inside a transaction that is rolled
    back after the module. Each test runs in a savepoint of it (request `db` after this fixture),
    exactly as Django's TestCase does with setUpTestData: building the world per test would cost
    more than all of the module's requests."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield build_world()
        transaction.set_rollback(True)


@pytest.fixture
def lenient_auth_lockout(settings: Any) -> None:
    """Table tests send many bad credentials from one test client IP on purpose; the per-IP
    lockout (tested on its own in test_floods.py and test_limits.py) would mask their answers."""
    settings.HERALD = {**settings.HERALD, "AUTH_FAILURES_PER_IP_PER_MINUTE": 1_000_000}


def bearer(credential: str | None, **extra: str) -> APIClient:
    client = APIClient()
    if credential is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}", **extra)
    elif extra:
        client.credentials(**extra)
    return client


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = FIGURES.lines()
    if lines:
        terminalreporter.section("security attack suite")
        for line in lines:
            terminalreporter.write_line(line)
