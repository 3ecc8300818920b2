"""Reads for notifications: topics, subscriptions, events, the inbox, and what a (re)connecting
socket must be sent. Each function takes the tenant (or the end user, who carries it) first, so
another tenant's ids are simply not found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from accounts.exceptions import Forbidden, NotFound, ValidationFailed
from accounts.models import EndUser, Tenant
from accounts.principals import EndUserPrincipal
from config.db import placeholders
from config.herald import herald_settings
from notifications import protocol
from notifications.models import TOPIC_KEY_PATTERN, Event, Notification, Stream, Subscription, Topic


def topic_get(*, tenant: Tenant, key: str) -> Topic:
    # A string that cannot be a key (a NUL, say, which PostgreSQL would refuse) is simply not found.
    topic = Topic.objects.filter(tenant=tenant, key=key).first() if TOPIC_KEY_PATTERN.match(key) else None
    if topic is None:
        raise NotFound(f"No topic {key!r}.")
    return topic


def topic_list(*, tenant: Tenant) -> QuerySet[Topic]:
    return Topic.objects.filter(tenant=tenant).order_by("key")


def topic_subscriber_ids(*, tenant: Tenant, key: str) -> QuerySet[Subscription]:
    topic = topic_get(tenant=tenant, key=key)
    return Subscription.objects.filter(tenant=tenant, topic=topic).select_related("user").order_by("user_id")


def subscription_keys(*, tenant: Tenant, user_id: str) -> list[str]:
    return list(
        Subscription.objects.filter(tenant=tenant, user__external_id=user_id)
        .order_by("topic__key")
        .values_list("topic__key", flat=True)
    )


def event_get(*, tenant: Tenant, event_id: int) -> Event:
    event = Event.objects.filter(tenant=tenant, number=event_id).prefetch_related("topics").first()
    if event is None:
        raise NotFound("No such event.")
    return event


def topics_partition(*, principal: EndUserPrincipal, keys: tuple[str, ...]) -> tuple[dict[str, int], list[str]]:
    """Split topic keys into those a socket may listen to live (key -> topic id) and the refused
    ones. A topic is allowed if the token names it, or, when the token names none, if the topic
    allows client subscriptions. Unknown and forbidden topics are refused alike, so nothing
    leaks about which topics exist."""
    if not keys:
        return {}, []
    # Read on every connect that names topics: plain SQL, as in unread_count. At most
    # MAX_SUBSCRIPTIONS_PER_CONNECTION keys (protocol._topics), each a placeholder.
    with connection.cursor() as cursor:
        cursor.execute(
            'SELECT "key", id, allow_client_subscribe FROM notifications_topic '  # noqa: S608 - placeholders only
            f'WHERE tenant_id = %s AND "key" IN ({placeholders(len(keys))})',
            [principal.tenant.pk, *keys],
        )
        topics = {key: (topic_id, bool(open_to_clients)) for key, topic_id, open_to_clients in cursor.fetchall()}
    granted = principal.granted_topics
    refused = [
        key
        for key in keys
        if key not in topics or (granted is not None and key not in granted) or (granted is None and not topics[key][1])
    ]
    return {key: topics[key][0] for key in keys if key not in refused}, refused


def topics_refused_error(refused: list[str]) -> Forbidden:
    return Forbidden(
        "Not allowed to subscribe to: " + ", ".join(refused),
        fields={"topics": [f"Not allowed: {key}" for key in refused]},
    )


def topics_for_listening(*, principal: EndUserPrincipal, keys: tuple[str, ...]) -> dict[str, int]:
    """All of these topics or none: raise Forbidden naming the refused ones."""
    allowed, refused = topics_partition(principal=principal, keys=keys)
    if refused:
        raise topics_refused_error(refused)
    return allowed


# --- Inbox ---------------------------------------------------------------------------------------


# A user's unread count (parameters: tenant id, user pk). Read on every connect: plain SQL (the
# ORM's compile of this count costs more than running it).
_UNREAD_COUNT_SQL = (
    "SELECT COUNT(*) FROM notifications_notification WHERE tenant_id = %s AND user_id = %s "
    "AND read_at IS NULL AND archived_at IS NULL"
)


def unread_count(*, user: EndUser) -> int:
    with connection.cursor() as cursor:
        cursor.execute(_UNREAD_COUNT_SQL, [user.tenant_id, user.pk])
        return int(cursor.fetchone()[0])


def stream_cursor(*, tenant_id: int) -> int:
    """The position a client may safely resume from: every event up to it is fully delivered."""
    stream = Stream.objects.filter(tenant_id=tenant_id).values_list("delivered_seq", flat=True).first()
    return stream or 0


@dataclass(frozen=True)
class InboxPage:
    items: list[dict[str, Any]]
    next_cursor: str | None
    stream_cursor: int


def inbox_list(
    *, user: EndUser, unread_only: bool = False, archived: str = "exclude", before: str | None = None, limit: int = 20
) -> InboxPage:
    """Newest first. `archived` is "exclude" (default), "only" or "include"; `before` is the
    `next_cursor` of the previous page."""
    cursor = stream_cursor(tenant_id=user.tenant_id)
    rows = Notification.objects.filter(tenant_id=user.tenant_id, user=user).select_related("event")
    if unread_only:
        rows = rows.filter(read_at__isnull=True)
    if archived == "exclude":
        rows = rows.filter(archived_at__isnull=True)
    elif archived == "only":
        rows = rows.filter(archived_at__isnull=False)
    if before is not None:
        position = protocol.parse_cursor(before)
        if position is None:
            raise ValidationFailed(fields={"cursor": ["Not a cursor from a previous page."]})
        rows = rows.filter(seq__lt=position)
    page = list(rows.order_by("-seq")[: limit + 1])
    next_cursor = protocol.cursor_text(page[limit - 1].seq) if len(page) > limit else None
    page = page[:limit]
    keys = _topic_keys([row.event_id for row in page])
    return InboxPage(
        items=[inbox_item(row, keys) for row in page],
        next_cursor=next_cursor,
        stream_cursor=cursor,
    )


def _topic_keys(event_ids: list[int]) -> dict[int, list[str]]:
    keys: dict[int, list[str]] = {event_id: [] for event_id in event_ids}
    if not event_ids:
        return keys  # Django would still build the query before finding it empty
    for event_id, key in (
        Event.topics.through.objects.filter(event_id__in=event_ids)
        .order_by("topic__key")
        .values_list("event_id", "topic__key")
    ):
        keys[event_id].append(key)
    return keys


def inbox_item(row: Notification, topic_keys: dict[int, list[str]]) -> dict[str, Any]:
    event = row.event
    return {
        "id": event.number,
        "cursor": protocol.cursor_text(row.seq),
        "kind": event.kind,
        "topics": topic_keys.get(event.pk, []),
        "data": event.data,
        "title": event.title,
        "body": event.body,
        "url": event.url,
        "created_at": protocol.timestamp(event.created_at),
        "read_at": row.read_at and protocol.timestamp(row.read_at),
        "archived_at": row.archived_at and protocol.timestamp(row.archived_at),
    }


# --- What a connecting socket is sent ------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    """Frames a socket missed since its cursor, oldest first, and whether that is all of them."""

    frames: list[dict[str, Any]]
    recovered: bool
    # Where the replay starts (the client's `since`, or the delivered position for a fresh
    # socket): safe to store before the replay, since everything after it is replayed.
    start: int
    # Where the client stands once the replay is done.
    cursor: int
    reason: str | None = None


def backlog_since(*, user: EndUser, since: int | None, topic_ids: list[int], inbox: bool = True) -> Backlog:
    """Everything after `since` for this user's inbox (unless `inbox` is False) and the given live
    topics, in stream order.

    The caller has already joined the live groups, so whatever commits after this read arrives
    live; the caller drops ids it already sent. The delivered position is read first: every event
    at or below it has all its inbox rows, so the cursor returned is safe to resume from."""
    # Read on every connect: plain SQL, as in unread_count.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_seq, delivered_seq, pruned_seq FROM notifications_stream WHERE tenant_id = %s",
            [user.tenant_id],
        )
        position = _StreamPosition(*(cursor.fetchone() or (0, 0, 0)))
    empty = _backlog_without_rows(position, since)
    if empty is not None:
        return empty
    delivered = position.delivered
    start = delivered if since is None else since
    limit = herald_settings.REPLAY_MAX
    rows: list[Notification] = []
    events: list[Event] = []
    if inbox:
        rows = list(
            Notification.objects.filter(tenant_id=user.tenant_id, user=user, seq__gt=start)
            .select_related("event")
            .order_by("seq")[: limit + 1]
        )
    if topic_ids:
        events = list(
            Event.objects.filter(
                tenant_id=user.tenant_id, topics__in=topic_ids, seq__gt=start, status=Event.Status.DELIVERED
            )
            .distinct()
            .order_by("seq")[: limit + 1]
        )
    if len(rows) > limit or len(events) > limit:
        return Backlog(frames=[], recovered=False, start=delivered, cursor=delivered, reason="too_many")
    keys = _topic_keys([row.event_id for row in rows] + [event.pk for event in events])
    frames: dict[int, dict[str, Any]] = {}
    for event in events:
        frames[event.pk] = _frame(event, event.seq or 0, keys, inbox=False)
    for row in rows:  # an inbox row wins over a live-only frame for the same event
        frames[row.event_id] = _frame(
            row.event, row.seq, keys, inbox=True, read=row.read_at is not None, archived=row.archived_at is not None
        )
    ordered = sorted(frames.values(), key=lambda frame: int(frame["cursor"]))
    if len(ordered) > limit:
        return Backlog(frames=[], recovered=False, start=delivered, cursor=delivered, reason="too_many")
    newest = int(ordered[-1]["cursor"]) if ordered else 0
    return Backlog(frames=ordered, recovered=True, start=start, cursor=max(start, delivered, newest))


@dataclass(frozen=True)
class _StreamPosition:
    """The tenant's stream counters (all 0 before its first publish)."""

    last: int
    delivered: int
    pruned: int


def _backlog_without_rows(position: _StreamPosition, since: int | None) -> Backlog | None:
    """The backlog when the stream's counters alone decide it, with nothing to read; else None."""
    last, delivered = position.last, position.delivered
    if since is not None and since < position.pruned:
        return Backlog(frames=[], recovered=False, start=delivered, cursor=delivered, reason="retention")
    if since is not None and since > last:  # not a cursor this tenant ever handed out
        return Backlog(frames=[], recovered=False, start=delivered, cursor=delivered, reason="invalid_cursor")
    start = delivered if since is None else since
    # Positions are handed out by the stream counter, in the transaction that moves it or after
    # it, so nothing in this snapshot lies past `last`: a socket starting there (a new socket on a
    # quiet stream, a client that saw everything) has nothing to read.
    if start >= last:
        return Backlog(frames=[], recovered=True, start=start, cursor=max(start, delivered))
    return None


def _frame(
    event: Event, seq: int, keys: dict[int, list[str]], *, inbox: bool, read: bool = False, archived: bool = False
) -> dict[str, Any]:
    return protocol.notification_frame(
        event_id=event.number,
        seq=seq,
        kind=event.kind,
        topics=keys.get(event.pk, []),
        data=event.data,
        title=event.title,
        body=event.body,
        url=event.url,
        created_at=event.created_at,
        inbox=inbox,
        read=read,
        archived=archived,
    )


@dataclass(frozen=True)
class SocketStart:
    unread: int
    backlog: Backlog


def socket_start(*, user: EndUser, since: int | None, topic_ids: list[int]) -> SocketStart:
    """All a newly authenticated socket needs from the database, read from ONE snapshot: the
    unread count then covers exactly the rows the backlog could see, so the client adds nothing
    for replayed frames and +1 for each new inbox frame that arrives after `resumed`.

    Most sockets have nothing to replay (a new one, or a client that saw everything): for them
    the stream's counters and the unread count come from one statement, which is one snapshot by
    itself; only a socket that is behind reads its backlog in a read-only snapshot transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT s.last_seq, s.delivered_seq, s.pruned_seq, ({_UNREAD_COUNT_SQL}) "  # noqa: S608 - no values
            "FROM (SELECT 1) AS one LEFT JOIN notifications_stream AS s ON s.tenant_id = %s",
            [user.tenant_id, user.pk, user.tenant_id],
        )
        last, delivered, pruned, unread = cursor.fetchone()  # one row, stream or not
    empty = _backlog_without_rows(_StreamPosition(last or 0, delivered or 0, pruned or 0), since)
    if empty is not None:
        return SocketStart(unread=int(unread), backlog=empty)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        backlog = backlog_since(user=user, since=since, topic_ids=topic_ids)
        return SocketStart(unread=unread_count(user=user), backlog=backlog)
