"""config.db.fetch_one: the hot-path lookups (API key, signing key, end user) give exactly what the
ORM's select_related().first() gives, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiKey, EndUser, SigningKey, Tenant
from accounts.services import end_user_ensure, signing_key_current
from config.db import fetch_all, fetch_one

pytestmark = pytest.mark.django_db


def _values(instance: Model) -> dict[str, Any]:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_an_api_key_and_its_tenant_come_back_as_the_orm_reads_them(tenant: Tenant, make_key: Any) -> None:
    make_key(tenant)
    ApiKey.objects.filter(tenant=tenant).update(last_used_at=timezone.now() - timedelta(days=1), scopes=["publish"])
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False, allowed_origins="https://a.example")
    expected = ApiKey.objects.select_related("tenant").get(tenant=tenant)

    with CaptureQueriesContext(connection) as queries:
        found = fetch_one(ApiKey, "m.prefix = %s", [expected.prefix], related="tenant")
        assert found is not None
        assert _values(found) == _values(expected)
        assert _values(found.tenant) == _values(expected.tenant)  # loaded with the key: no second query
    assert len(queries) == 1
    assert found.scopes == ["publish"] and found.tenant.is_active is False
    assert found.last_used_at is not None and found.last_used_at.tzinfo is not None
    assert found._state.adding is False  # a saved row: save() updates it
    assert fetch_one(ApiKey, "m.prefix = %s", ["nope"], related="tenant") is None


def test_signing_keys_and_end_users(tenant: Tenant, other_tenant: Tenant) -> None:
    key = signing_key_current(tenant=tenant)
    found = fetch_one(SigningKey, "m.kid = %s AND m.revoked_at IS NULL", [key.kid], related="tenant")
    assert found is not None and _values(found) == _values(key) and found.tenant.slug == tenant.slug
    SigningKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    assert fetch_one(SigningKey, "m.kid = %s AND m.revoked_at IS NULL", [key.kid], related="tenant") is None

    alice = end_user_ensure(tenant=tenant, external_id="alice")
    assert _values(end_user_ensure(tenant=tenant, external_id="alice")) == _values(EndUser.objects.get(pk=alice.pk))
    # The same external id in another tenant is another row.
    assert end_user_ensure(tenant=other_tenant, external_id="alice").pk != alice.pk


def test_fetch_all_gives_every_row_in_the_order_and_limit_asked(tenant: Tenant, other_tenant: Tenant) -> None:
    """The fan-out round's read of a tenant's outbox: jobs with their events, oldest first."""
    from notifications.models import Event, FanoutJob

    for owner, count in ((tenant, 4), (other_tenant, 2)):
        events = Event.objects.bulk_create(
            [Event(tenant=owner, number=n, kind="k", data={"n": n}, recipients=[f"u{n}"]) for n in range(1, count + 1)]
        )
        FanoutJob.objects.bulk_create([FanoutJob(event=event, tenant=owner) for event in reversed(events)])
    expected = list(FanoutJob.objects.filter(tenant=tenant).select_related("event").order_by("event_id")[:3])

    with CaptureQueriesContext(connection) as queries:
        found = fetch_all(
            FanoutJob, "m.tenant_id = %s", [tenant.pk, 3], related="event", tail="ORDER BY m.event_id LIMIT %s"
        )
        assert [_values(job) for job in found] == [_values(job) for job in expected]
        assert [_values(job.event) for job in found] == [_values(job.event) for job in expected]
    assert len(queries) == 1
    # SQLite returns these rows in key order anyway: the ORDER BY must be in the statement itself.
    assert queries[0]["sql"].endswith("ORDER BY m.event_id LIMIT 3")
    assert [job.event.data for job in found] == [{"n": 1}, {"n": 2}, {"n": 3}]  # JSON decoded as the ORM does
    assert fetch_all(FanoutJob, "m.tenant_id = %s", [-1], related="event") == []
