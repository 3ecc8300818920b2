"""Retention: deleting what tenants no longer keep (events older than the tenant's retention
days, with their inbox rows) and expired idempotency records, in small batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from accounts.models import Tenant
from notifications.models import Event, IdempotencyRecord, Notification, Stream

# Idempotency-Key answers are kept a day: clients retry within minutes, and a day matches what
# Stripe and similar APIs promise.
IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass
class PruneResult:
    events: int = 0
    notifications: int = 0
    pruned_seq: int = 0


def events_prune(
    *,
    tenant: Tenant,
    now: datetime | None = None,
    batch_size: int = 1000,
    progress: Callable[[PruneResult], None] | None = None,
) -> PruneResult:
    """Delete the tenant's delivered events older than its retention, oldest first, one batch per
    transaction. Each batch first moves the stream's `pruned_seq` past what it deletes, in the
    same transaction, so a client resuming from an older cursor is told `recovered: false`
    instead of being handed a backlog with holes."""
    cutoff = (now or timezone.now()) - timedelta(days=tenant.retention_days)
    result = PruneResult()
    while True:
        with transaction.atomic():
            batch = list(
                Event.objects.filter(tenant=tenant, status=Event.Status.DELIVERED, created_at__lt=cutoff)
                .order_by("seq")
                .values_list("pk", "seq")[:batch_size]
            )
            if not batch:
                break
            ids = [pk for pk, _ in batch]
            highest = max(seq for _, seq in batch if seq is not None)
            stream = Stream.objects.select_for_update().get(tenant=tenant)
            if highest > stream.pruned_seq:
                stream.pruned_seq = highest
                stream.save(update_fields=["pruned_seq"])
            result.notifications += Notification.objects.filter(event_id__in=ids)._raw_delete("default")
            Event.topics.through.objects.filter(event_id__in=ids)._raw_delete("default")
            result.events += Event.objects.filter(pk__in=ids).delete()[0]
            result.pruned_seq = stream.pruned_seq
        if progress is not None:
            progress(result)
    return result


def idempotency_records_prune(*, now: datetime | None = None, batch_size: int = 1000) -> int:
    cutoff = (now or timezone.now()) - IDEMPOTENCY_TTL
    deleted = 0
    while True:
        ids = list(IdempotencyRecord.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]
