"""Retention: herald_cleanup deletes old events in batches and resumes from before say so."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from notifications import selectors
from notifications.models import Event, IdempotencyRecord, Notification, Stream

pytestmark = pytest.mark.django_db


def test_cleanup_deletes_past_retention_in_batches_and_moves_the_pruned_position(
    api, tenant, other_tenant, make_key, client_for, run_fanout
):
    tenant.retention_days = 7
    tenant.save()
    ids = [
        api.post("/api/v1/events", {"kind": "k", "recipients": ["alice", "bob"]}, format="json").json()["id"]
        for _ in range(5)
    ]
    other = client_for(make_key(other_tenant))
    other_id = other.post("/api/v1/events", {"kind": "k", "recipients": ["alice"]}, format="json").json()["id"]
    run_fanout()
    old = timezone.now() - timedelta(days=8)
    Event.objects.filter(tenant=tenant, number__in=ids[:3]).update(created_at=old)
    Event.objects.filter(tenant=other_tenant, number=other_id).update(created_at=old)
    out = StringIO()
    call_command("herald_cleanup", "--batch-size", "2", stdout=out)
    output = out.getvalue()
    assert "acme: 2 events, 4 inbox rows deleted so far" in output  # progress per batch
    assert "Deleted 3 events, 6 inbox rows" in output
    assert sorted(Event.objects.filter(tenant=tenant).values_list("number", flat=True)) == ids[3:]
    assert Notification.objects.filter(tenant=tenant).count() == 4
    # The other tenant keeps 30 days by default: its 8-day-old event stays.
    assert Event.objects.filter(tenant=other_tenant, number=other_id).exists()
    assert Stream.objects.get(tenant=tenant).pruned_seq == 3

    alice = Notification.objects.filter(tenant=tenant, user__external_id="alice").first().user
    assert selectors.backlog_since(user=alice, since=1, topic_ids=[]).reason == "retention"
    resumed = selectors.backlog_since(user=alice, since=3, topic_ids=[])
    assert resumed.recovered and [frame["id"] for frame in resumed.frames] == ids[3:]


def test_cleanup_expires_idempotency_records_after_a_day(api):
    api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json", HTTP_IDEMPOTENCY_KEY="old")
    api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json", HTTP_IDEMPOTENCY_KEY="new")
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    call_command("herald_cleanup", stdout=StringIO())
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


def test_pending_events_are_never_deleted(api, tenant):
    tenant.retention_days = 1
    tenant.save()
    api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    Event.objects.update(created_at=timezone.now() - timedelta(days=5))
    call_command("herald_cleanup", stdout=StringIO())
    assert Event.objects.count() == 1
