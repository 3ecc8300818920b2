"""config.db: the hot-path lookups (API key, signing key, end user) give exactly what the ORM's
select_related().first() gives, and the hot-path inserts store exactly what bulk_create() stores,
on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.db.models import Model
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import config.db
from accounts.models import ApiKey, EndUser, SigningKey, Tenant
from accounts.services import end_user_ensure, signing_key_current
from config.db import fetch_all, fetch_one, insert_all
from notifications.models import Event, FanoutJob, Notification

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


def _event(tenant: Tenant, number: int, **fields: Any) -> Event:
    return Event(tenant=tenant, number=number, kind="order.shipped", **fields)


def test_insert_all_stores_what_bulk_create_stores(tenant: Tenant) -> None:
    by_orm = Event.objects.bulk_create([_event(tenant, 1, data={"a": [1, "é"]}, recipients=["u1"], title="t")])[0]
    inserted = [_event(tenant, 2, data={"a": [1, "é"]}, recipients=["u1"], title="t"), _event(tenant, 3)]

    with CaptureQueriesContext(connection) as queries:
        insert_all(inserted)
    assert len(queries) == 1  # every row in one statement
    # Keys from RETURNING, row by row; auto_now_add and defaults filled in, as by the ORM.
    stored = {event.pk: event for event in Event.objects.filter(tenant=tenant)}
    assert sorted(stored) == sorted([by_orm.pk, inserted[0].pk, inserted[1].pk])
    assert [stored[event.pk].number for event in inserted] == [2, 3]
    ignore = {"id", "number", "created_at"}
    assert {k: v for k, v in _values(stored[inserted[0].pk]).items() if k not in ignore} == {
        k: v for k, v in _values(stored[by_orm.pk]).items() if k not in ignore
    }
    assert stored[inserted[1].pk].data == {} and stored[inserted[1].pk].status == Event.Status.PENDING
    assert inserted[0].created_at is not None and inserted[0].created_at == stored[inserted[0].pk].created_at
    assert inserted[0]._state.adding is False  # saved: save() would update, not insert again

    # A model whose key is not generated (the outbox job's key is its event).
    insert_all([FanoutJob(event=inserted[0], tenant=tenant)])
    assert FanoutJob.objects.get(pk=inserted[0].pk).phase == "direct"


def test_insert_all_ignores_rows_that_already_exist(tenant: Tenant) -> None:
    event = _event(tenant, 1)
    insert_all([event])
    users = [end_user_ensure(tenant=tenant, external_id=f"u{index}") for index in range(3)]
    insert_all([Notification(tenant=tenant, user=users[0], event=event, seq=1)])

    rows = [Notification(tenant=tenant, user=user, event=event, seq=1) for user in users]
    insert_all(rows, ignore_conflicts=True)  # the first is already there: no error, no copy
    assert sorted(Notification.objects.filter(event=event).values_list("user_id", flat=True)) == sorted(
        user.pk for user in users
    )
    with pytest.raises(IntegrityError):
        insert_all([Notification(tenant=tenant, user=users[1], event=event, seq=1)])


def test_insert_all_splits_rows_over_the_parameter_limit(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two rows' worth of parameters per statement: seven rows take four statements.
    columns = len(config.db._insert_fields(Event)[0])
    monkeypatch.setattr(config.db, "_MAX_INSERT_PARAMETERS", 2 * columns)
    events = [_event(tenant, number) for number in range(1, 8)]
    with CaptureQueriesContext(connection) as queries:
        insert_all(events)
    assert len(queries) == 4
    assert [Event.objects.get(pk=event.pk).number for event in events] == list(range(1, 8))
