"""Writes for notifications: publishing events, topics, subscriptions and inbox read state.
Each function takes the tenant (or the end user, who carries it) first."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.exceptions import Conflict, ValidationFailed
from accounts.models import ApiKey, EndUser, Tenant
from accounts.ratelimit import Charge, consume_in_order
from accounts.services import end_user_ensure
from config.db import insert_all, placeholders, typed_values
from notifications import delivery, fanout, metrics, protocol, selectors
from notifications.models import Event, EventCounter, FanoutJob, IdempotencyRecord, Notification, Subscription, Topic


@dataclass(frozen=True)
class EventInput:
    """One event as a publisher described it, already checked for shape by the API layer."""

    kind: str
    data: Any = field(default_factory=dict)
    title: str = ""
    body: str = ""
    url: str = ""
    recipients: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    broadcast: bool = False


@dataclass(frozen=True)
class PublishResult:
    event_ids: list[int]
    # True when this is the stored answer to an earlier request with the same Idempotency-Key.
    replayed: bool = False


@transaction.atomic
def events_publish(
    *,
    tenant: Tenant,
    api_key: ApiKey | None,
    items: list[EventInput],
    idempotency_key: str | None = None,
    request_hash: str = "",
) -> PublishResult:
    """Store events and their fan-out jobs in one transaction; fan-out starts after commit.
    All or nothing: if any item is invalid, nothing is stored and every item's errors are listed."""
    if idempotency_key:
        earlier = _idempotent_replay(tenant=tenant, key=idempotency_key, request_hash=request_hash)
        if earlier is not None:
            return earlier
    charges = [Charge("publish.tenant", str(tenant.pk), tenant.publishes_per_minute, 60, len(items))]
    if api_key is not None:  # the key's own limit first: a key over it does not spend the tenant's
        charges.insert(0, Charge("publish.key", str(api_key.pk), tenant.key_publishes_per_minute, 60, len(items)))
    consume_in_order(charges)
    topic_ids = _topic_ids(tenant, items)
    _validate_items(tenant, items, topic_ids)

    if idempotency_key:
        # Claim the key before writing anything. A concurrent request with the same key blocks here
        # until ours commits, then fails the insert and replays our answer.
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    tenant=tenant,
                    key=idempotency_key,
                    request_hash=request_hash,
                    response_status=202,
                    response_body={},
                )
        except IntegrityError:
            earlier = _idempotent_replay(tenant=tenant, key=idempotency_key, request_hash=request_hash)
            if earlier is None:  # pragma: no cover - the row we collided with was rolled back
                raise Conflict("A request with this Idempotency-Key is in progress; retry.") from None
            return earlier

    events = [
        Event(
            tenant=tenant,
            number=0,  # the tenant's next numbers, given by _store_events
            api_key=api_key,
            kind=item.kind,
            data=item.data,
            title=item.title,
            body=item.body,
            url=item.url,
            recipients=list(item.recipients),
            broadcast=item.broadcast,
        )
        for item in items
    ]
    links = [(index, topic_ids[key]) for index, item in enumerate(items) for key in item.topics]
    event_ids = _store_events(tenant, events, links)
    if idempotency_key:
        record.response_body = {"ids": event_ids}
        record.save(update_fields=["response_body"])
    transaction.on_commit(lambda: fanout.request_fanout(tenant.pk))
    transaction.on_commit(lambda: metrics.events_published(tenant.pk, tenant.slug, len(event_ids)))
    return PublishResult(event_ids=event_ids)


def _store_events(tenant: Tenant, events: list[Event], links: list[tuple[int, int]]) -> list[int]:
    """Number the events with the tenant's next event numbers, insert them, their topic links
    (event's index in `events`, topic id) and their outbox jobs; return their numbers. The
    counter row stays locked until the publish commits, so no number is handed out twice.

    Plain SQL (config.db), not the ORM: its compile of these statements cost more than PostgreSQL's
    work on every publish. On PostgreSQL it is ONE statement (data-modifying CTEs: each statement
    is a round trip every publish waits for); SQLite has none, so there it is four."""
    count = len(events)
    if connection.vendor != "postgresql":
        reserved = _reserve_event_numbers(tenant, count)
        for event, reserved_number in zip(events, reserved, strict=True):
            event.number = reserved_number
        insert_all(events)
        insert_all([Event.topics.through(event_id=events[index].pk, topic_id=topic) for index, topic in links])
        insert_all([FanoutJob(event=event, tenant=tenant) for event in events])
        return list(reserved)
    columns, row, params = typed_values(events)
    # v.ord numbers the rows 1..count, so the i-th event gets the number last - count + i.
    number = connection.ops.quote_name("number")
    selected = ", ".join("c.last_number - %s + v.ord" if column == number else f"v.{column}" for column in columns)
    job_columns, job_row, (job_params,) = typed_values([FanoutJob(event_id=0, tenant=tenant)])
    event_column = connection.ops.quote_name("event_id")
    job_selected = ", ".join("ev.id" if column == event_column else f"j.{column}" for column in job_columns)
    link_rows = ", ".join(["(CAST(%s AS integer), CAST(%s AS bigint))"] * len(links))
    link_insert = (
        f"links AS (INSERT INTO {Event.topics.through._meta.db_table} (event_id, topic_id) "  # noqa: S608
        f"SELECT ev.id, l.topic_id FROM ev JOIN c ON true JOIN (VALUES {link_rows}) AS l (ord, topic_id) "
        "ON ev.number = c.last_number - %s + l.ord), "
        if links
        else ""
    )
    sql = (
        "WITH c AS (UPDATE notifications_eventcounter SET last_number = last_number + %s "  # noqa: S608
        "WHERE tenant_id = %s RETURNING last_number), "
        f"v (ord, {', '.join(columns)}) AS (VALUES {', '.join([f'(CAST(%s AS integer), {row})'] * count)}), "
        f"ev AS (INSERT INTO {Event._meta.db_table} ({', '.join(columns)}) SELECT {selected} "
        f"FROM c, v ORDER BY v.ord RETURNING id, {number}), "
        f"{link_insert}"
        f"jobs AS (INSERT INTO {FanoutJob._meta.db_table} ({', '.join(job_columns)}) SELECT {job_selected} "
        f"FROM ev, (VALUES ({job_row})) AS j ({', '.join(job_columns)})) "
        f"SELECT {number} FROM ev ORDER BY {number}"
    )
    link_params = [value for index, topic in links for value in (index + 1, topic)]
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [
                count,
                tenant.pk,
                *(value for ordinal, values in enumerate(params, 1) for value in (ordinal, *values)),
                count,
                *((*link_params, count) if links else ()),
                *job_params,
            ],
        )
        numbers = [row[0] for row in cursor.fetchall()]
    if not numbers:  # the tenant's first publish: it has no counter row yet, and nothing was written
        EventCounter.objects.get_or_create(tenant=tenant)
        return _store_events(tenant, events, links)
    return numbers


def _reserve_event_numbers(tenant: Tenant, count: int) -> range:
    """SQLite's part of _store_events: the next `count` numbers of the tenant's own event numbering
    (the public event ids)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE notifications_eventcounter SET last_number = last_number + %s WHERE tenant_id = %s "
            "RETURNING last_number",
            [count, tenant.pk],
        )
        row = cursor.fetchone()
    if row is None:  # the tenant's first publish
        EventCounter.objects.get_or_create(tenant=tenant)
        return _reserve_event_numbers(tenant, count)
    return range(row[0] - count + 1, row[0] + 1)


def _idempotent_replay(*, tenant: Tenant, key: str, request_hash: str) -> PublishResult | None:
    record = IdempotencyRecord.objects.filter(tenant=tenant, key=key).first()
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise Conflict("This Idempotency-Key was already used with a different request.")
    return PublishResult(event_ids=list(record.response_body.get("ids", [])), replayed=True)


def _topic_ids(tenant: Tenant, items: list[EventInput]) -> dict[str, int]:
    """key -> topic id of the tenant's topics the items name. Plain SQL: read on every publish."""
    keys = sorted({key for item in items for key in item.topics})
    if not keys:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT key, id FROM notifications_topic WHERE tenant_id = %s AND key IN ({placeholders(len(keys))})",  # noqa: S608
            [tenant.pk, *keys],
        )
        return dict(cursor.fetchall())


def _validate_items(tenant: Tenant, items: list[EventInput], topic_ids: dict[str, int]) -> None:
    errors: dict[str, dict[str, list[str]]] = {}
    for index, item in enumerate(items):
        item_errors: dict[str, list[str]] = {}
        size = len(orjson.dumps(item.data))
        if size > tenant.max_payload_bytes:
            item_errors["data"] = [
                f"Encoded size is {size} bytes; this tenant's limit is {tenant.max_payload_bytes} bytes."
            ]
        unknown = [key for key in item.topics if key not in topic_ids]
        if unknown:
            item_errors["topics"] = [f"Unknown topic: {key}" for key in unknown]
        if item_errors:
            errors[str(index)] = item_errors
    if errors:
        if len(items) == 1:
            raise ValidationFailed(fields=errors["0"])
        raise ValidationFailed(
            "Some events are not valid; none was published.",
            # Keyed by item index, the same shape DRF gives field errors of a batch.
            fields={"events": errors},
        )


# --- Topics --------------------------------------------------------------------------------------


@transaction.atomic
def topic_create(
    *,
    tenant: Tenant,
    key: str,
    name: str = "",
    description: str = "",
    allow_client_subscribe: bool = False,
    allow_client_publish: bool = False,
) -> Topic:
    topic = Topic(
        tenant=tenant,
        key=key,
        name=name,
        description=description,
        allow_client_subscribe=allow_client_subscribe,
        allow_client_publish=allow_client_publish,
    )
    try:
        topic.full_clean(exclude=["tenant"], validate_unique=False)
    except DjangoValidationError as error:
        raise ValidationFailed(fields=error.message_dict) from None
    try:
        with transaction.atomic():
            topic.save()
    except IntegrityError:
        raise Conflict(f"A topic with key {key!r} already exists.") from None
    return topic


_TOPIC_FIELDS = ("name", "description", "allow_client_subscribe", "allow_client_publish")


@transaction.atomic
def topic_update(*, tenant: Tenant, key: str, changes: dict[str, Any]) -> Topic:
    topic = selectors.topic_get(tenant=tenant, key=key)
    for name, value in changes.items():
        if name not in _TOPIC_FIELDS:
            raise ValidationFailed(fields={name: ["This field cannot be changed."]})
        setattr(topic, name, value)
    topic.save()
    return topic


@transaction.atomic
def topic_delete(*, tenant: Tenant, key: str) -> None:
    selectors.topic_get(tenant=tenant, key=key).delete()


# --- Subscriptions -------------------------------------------------------------------------------


@transaction.atomic
def subscriptions_add(*, tenant: Tenant, user_id: str, topic_keys: Iterable[str]) -> list[str]:
    """Subscribe a user to topics (idempotent); return all the user's topic keys."""
    keys = list(dict.fromkeys(topic_keys))
    topics = {topic.key: topic for topic in Topic.objects.filter(tenant=tenant, key__in=keys)}
    unknown = [key for key in keys if key not in topics]
    if unknown:
        raise ValidationFailed(fields={"topics": [f"Unknown topic: {key}" for key in unknown]})
    user = end_user_ensure(tenant=tenant, external_id=user_id)
    Subscription.objects.bulk_create(
        [Subscription(tenant=tenant, topic=topic, user=user) for topic in topics.values()],
        ignore_conflicts=True,
    )
    return selectors.subscription_keys(tenant=tenant, user_id=user_id)


@transaction.atomic
def subscription_remove(*, tenant: Tenant, user_id: str, topic_key: str) -> None:
    topic = selectors.topic_get(tenant=tenant, key=topic_key)
    Subscription.objects.filter(tenant=tenant, topic=topic, user__external_id=user_id).delete()


# --- Inbox read state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxChange:
    updated: int
    not_found: list[int]
    unread: int


def _inbox_change(
    *, user: EndUser, ids: Iterable[int] | None, where: Q, changes: Callable[[], dict[str, Any]]
) -> InboxChange:
    rows: QuerySet[Notification] = Notification.objects.filter(tenant_id=user.tenant_id, user=user)
    not_found: list[int] = []
    if ids is not None:
        wanted = list(dict.fromkeys(ids))
        rows = rows.filter(event__number__in=wanted)
        present = set(rows.values_list("event__number", flat=True))
        not_found = [event_id for event_id in wanted if event_id not in present]
    updated = rows.filter(where).update(**changes())
    unread = selectors.unread_count(user=user)
    if updated:
        # Every tab and device of this user sees the new count.
        delivery.push_to_users_on_commit(
            tenant_id=user.tenant_id, user_pks=[user.pk], text=protocol.encode(protocol.unread_frame(count=unread))
        )
    return InboxChange(updated=updated, not_found=not_found, unread=unread)


@transaction.atomic
def inbox_mark_read(*, user: EndUser, ids: Iterable[int]) -> InboxChange:
    return _inbox_change(user=user, ids=ids, where=Q(read_at__isnull=True), changes=lambda: {"read_at": timezone.now()})


@transaction.atomic
def inbox_mark_unread(*, user: EndUser, ids: Iterable[int]) -> InboxChange:
    return _inbox_change(user=user, ids=ids, where=Q(read_at__isnull=False), changes=lambda: {"read_at": None})


@transaction.atomic
def inbox_mark_all_read(*, user: EndUser) -> InboxChange:
    return _inbox_change(
        user=user,
        ids=None,
        where=Q(read_at__isnull=True, archived_at__isnull=True),
        changes=lambda: {"read_at": timezone.now()},
    )


@transaction.atomic
def inbox_archive(*, user: EndUser, ids: Iterable[int]) -> InboxChange:
    return _inbox_change(
        user=user, ids=ids, where=Q(archived_at__isnull=True), changes=lambda: {"archived_at": timezone.now()}
    )


@transaction.atomic
def inbox_unarchive(*, user: EndUser, ids: Iterable[int]) -> InboxChange:
    return _inbox_change(user=user, ids=ids, where=Q(archived_at__isnull=False), changes=lambda: {"archived_at": None})
