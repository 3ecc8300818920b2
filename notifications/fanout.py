"""Fan-out: turns a stored event into inbox rows and live frames, after the publishing
transaction has committed.

The publish request only stores the event and a FanoutJob (the outbox) in one transaction. A
fan-out loop (in the web process by default, `manage.py herald_worker` in production) is woken
after commit and also sweeps the outbox every FANOUT_SWEEP_SECONDS, so a job survives any crash
between commit and delivery: it is simply done again, and inbox rows are unique per (user, event).

Ordering: jobs of one tenant are processed one at a time, in order, under a per-tenant lock (a
PostgreSQL advisory lock across processes). The event's stream position `seq` is assigned when
its fan-out starts, so positions follow the order in which events become visible, which is what
lets a client resume from "the last position I saw" without missing anything; an auto-increment
id would not do, because concurrent publishes commit out of id order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime

import orjson
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import EndUser
from accounts.services import end_users_ensure
from config.db import fetch_with, in_thread, insert_all, placeholders
from config.herald import herald_settings
from notifications import delivery, protocol
from notifications.models import Event, FanoutJob, Notification, Stream, Subscription, Topic

logger = logging.getLogger("herald.fanout")

# Advisory-lock namespace (first key of pg_try_advisory_lock(int, int)): "HRLD" in ASCII.
_ADVISORY_NAMESPACE = 0x48524C44 - 2**31
# Jobs of one tenant taken per lock: bounds how long one busy tenant holds a loop's attention.
JOBS_PER_TENANT_ROUND = 200

_local_locks: dict[int, threading.Lock] = {}
_local_locks_guard = threading.Lock()


@contextlib.contextmanager
def tenant_lock(tenant_id: int) -> Iterator[bool]:
    """Yield True if this process now owns the tenant's fan-out, False if someone else does."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [_ADVISORY_NAMESPACE, tenant_id])
            acquired = bool(cursor.fetchone()[0])
        try:
            yield acquired
        finally:
            if acquired:
                _advisory_unlock(tenant_id)
        return
    # SQLite: the embedded default runs one process, so a process-wide lock is enough.
    with _local_locks_guard:
        lock = _local_locks.setdefault(tenant_id, threading.Lock())
    acquired = lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()


def _advisory_unlock(tenant_id: int) -> None:
    """Release the tenant's session-level lock. If that fails on a connection that is still open,
    the lock would stay held by a session the pool hands out again, and no node could fan out this
    tenant's events until the process restarts: the session is closed instead (PostgreSQL releases
    its locks; the pool replaces a closed connection), and the error goes up to the round."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [_ADVISORY_NAMESPACE, tenant_id])
    except Exception:
        raw = connection.connection
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()
        logger.warning("fan-out lock release failed; closed the session to free it", extra={"tenant": tenant_id})
        raise


def process_pending(tenant_ids: Iterable[int] | None = None) -> int:
    """Fan out the pending jobs this process can lock, of these tenants or (None) of every tenant
    that has any; return how many events it completed. A round's reads are plain SQL
    (config.db.fetch_with): it runs after every publish, and the ORM's compile of its queries cost
    more than running them. A round woken by publishes knows their tenants and skips the query
    for the tenant list; the sweep asks the outbox."""
    completed = 0
    if tenant_ids is None:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT DISTINCT tenant_id FROM {FanoutJob._meta.db_table}")  # noqa: S608 - no values
            tenant_ids = [row[0] for row in cursor.fetchall()]
    for tenant_id in sorted(tenant_ids):
        with tenant_lock(tenant_id) as acquired:
            if not acquired:
                continue
            jobs, topics, subscribed = _pending_jobs(tenant_id)
            if jobs:  # empty when another node finished them between the two reads
                completed += _process_jobs(jobs, topics, subscribed)
    return completed


# The topics of a job's event as a JSON array of [topic id, key, has persistent subscribers],
# selected beside the job (one statement per round, not two). JSON aggregates are spelt
# differently by the two databases; an event without topics gives NULL on PostgreSQL, "[]" on SQLite.
_EVENT_TOPICS = (
    '(SELECT {aggregate}({row}(et.topic_id, t."key", EXISTS (SELECT 1 FROM {subscription} s '
    "WHERE s.topic_id = et.topic_id))) FROM {event_topics} et JOIN {topic} t ON t.id = et.topic_id "
    "WHERE et.event_id = m.event_id)"
)
_JSON_FUNCTIONS = {"postgresql": ("json_agg", "json_build_array"), "sqlite": ("json_group_array", "json_array")}


def _pending_jobs(
    tenant_id: int,
) -> tuple[list[FanoutJob], dict[int, list[tuple[int, str]]], set[int]]:
    """The tenant's next jobs, in order, with their events; event id -> [(topic id, key)] sorted by
    key; and which of those topics have persistent subscribers. One statement."""
    aggregate, row = _JSON_FUNCTIONS[connection.vendor]
    event_topics = _EVENT_TOPICS.format(
        aggregate=aggregate,
        row=row,
        subscription=Subscription._meta.db_table,
        event_topics=Event.topics.through._meta.db_table,
        topic=Topic._meta.db_table,
    )
    found = fetch_with(
        FanoutJob,
        "m.tenant_id = %s",
        [tenant_id, JOBS_PER_TENANT_ROUND],
        related="event",
        extra=(event_topics,),
        tail="ORDER BY m.event_id LIMIT %s",
    )
    jobs: list[FanoutJob] = []
    topics: dict[int, list[tuple[int, str]]] = {}
    subscribed: set[int] = set()
    for job, (links,) in found:
        if isinstance(links, str | bytes):
            links = orjson.loads(links)
        jobs.append(job)
        topics[job.event_id] = sorted(((topic_id, key) for topic_id, key, _ in links or ()), key=lambda pair: pair[1])
        subscribed.update(topic_id for topic_id, _, has_subscribers in links or () if has_subscribers)
    return jobs, topics, subscribed


def _process_jobs(jobs: list[FanoutJob], topics: dict[int, list[tuple[int, str]]], subscribed: set[int]) -> int:
    """Fan out one tenant's jobs in order. Consecutive small events (addressed to their direct
    recipients and live topic listeners only: no subscribers, no broadcast) are finished
    together in one transaction; the others, whose audience may need many batches, one by one."""

    def small(job: FanoutJob) -> bool:
        event = job.event
        return (
            job.phase == "direct"
            and event.seq is None
            and not event.broadcast
            and not any(topic_id in subscribed for topic_id, _ in topics[event.pk])
        )

    completed, index = 0, 0
    while index < len(jobs):
        run: list[FanoutJob] = []
        recipients = 0
        # A run writes at most one batch's worth of inbox rows in its transaction.
        while index < len(jobs) and small(jobs[index]) and recipients < herald_settings.FANOUT_BATCH_SIZE:
            run.append(jobs[index])
            recipients += len(jobs[index].event.recipients)
            index += 1
        try:
            if run:
                _fanout_small(run, topics)
                completed += len(run)
                continue
            job = jobs[index]
            fanout_event(job)
        except Exception as error:
            failed = run[0] if run else jobs[index]
            logger.exception("fan-out failed; will retry", extra={"event": failed.event_id, "tenant": failed.tenant_id})
            FanoutJob.objects.filter(pk=failed.pk).update(
                attempts=failed.attempts + 1, last_error=repr(error)[:2000], updated_at=timezone.now()
            )
            break  # keep this tenant's order: retry this job before any later one
        index += 1
        completed += 1
    return completed


def _fanout_small(jobs: list[FanoutJob], topics: dict[int, list[tuple[int, str]]]) -> None:
    """Events whose whole audience is their direct recipients (at most 1,000 each) and live topic
    listeners: positions, inbox rows, completion and job removal in ONE transaction, then their
    frames, in order (a run of events with the same audience in one message per group). Under a
    steady stream of publishes this is what keeps fan-out from costing a dozen statements and a
    layer message per event."""
    tenant_id = jobs[0].tenant_id
    events = [job.event for job in jobs]
    recipients = [user for event in events for user in event.recipients]
    for event in events:
        event.recipient_count = len(set(event.recipients))
    # On PostgreSQL a run without inbox rows is ONE statement (_finish_run), atomic by itself.
    one_statement = not recipients and connection.vendor == "postgresql"
    with contextlib.nullcontext() if one_statement else transaction.atomic():
        user_pks = end_users_ensure(tenant=jobs[0].event.tenant, external_ids=recipients) if recipients else {}
        before = _finish_run(tenant_id, jobs, timezone.now()) - len(events)  # the position before the run's
        rows = [
            Notification(tenant_id=tenant_id, user_id=user_pks[user], event_id=event.pk, seq=before + offset)
            for offset, event in enumerate(events, 1)
            for user in dict.fromkeys(event.recipients)
        ]
        insert_all(rows, ignore_conflicts=True)  # at most one batch of rows (see _process_jobs)
    for run in _same_audience(events, topics):
        pairs = topics[run[0].pk]
        keys = [key for _, key in pairs]
        users = list(dict.fromkeys(run[0].recipients))
        # Sent to its recipients (each connection is one user's) OR to one topic: no connection
        # can get it twice live (small events have no subscribers' inbox rows to come later).
        once = len(pairs) + bool(users) == 1
        if users:
            delivery.push_to_users(
                tenant_id=tenant_id,
                user_pks=[user_pks[user] for user in users],
                frames=[_live_frame(event, keys, inbox=True) for event in run],
                topics=keys,
                once=once,
            )
        if pairs:
            frames = [_live_frame(event, keys, inbox=False) for event in run]
            for topic_id, _ in pairs:
                delivery.push_to_topic(tenant_id=tenant_id, topic_id=topic_id, frames=frames, topics=keys, once=once)


def _same_audience(events: list[Event], topics: dict[int, list[tuple[int, str]]]) -> Iterator[list[Event]]:
    """Split a round's events (in stream order) into runs of consecutive events with the same
    recipients and topics, at most delivery.RUN_MAX_EVENTS each. A run goes to each of its groups
    as ONE message, so a socket gets the whole run in one write; the order still holds for every
    socket, because every event of a run goes to the same groups, sent one after the other:
    whichever of them a socket is in, the first brings it the run in order and the others only
    copies it has already seen."""
    run: list[Event] = []
    audience = None
    for event in events:
        this = _audience(event, topics)
        if run and (this != audience or len(run) == delivery.RUN_MAX_EVENTS):
            yield run
            run = []
        run.append(event)
        audience = this
    if run:
        yield run


def _audience(event: Event, topics: dict[int, list[tuple[int, str]]]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    return tuple(dict.fromkeys(event.recipients)), tuple(topic_id for topic_id, _ in topics[event.pk])


def _take_positions(tenant_id: int, count: int, *, delivered: bool) -> int:
    """Hand out the tenant's next `count` stream positions and return the last one; `delivered`
    counts them as delivered at once (the caller writes their inbox rows in the same transaction).
    One UPDATE; the row stays locked until the caller commits, which keeps positions in commit
    order."""
    set_delivered = ", delivered_seq = last_seq + %s" if delivered else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE notifications_stream SET last_seq = last_seq + %s{set_delivered} "  # noqa: S608
            "WHERE tenant_id = %s RETURNING last_seq",
            [count, count, tenant_id] if delivered else [count, tenant_id],
        )
        row = cursor.fetchone()
    if row is None:  # the tenant's first fan-out
        Stream.objects.get_or_create(tenant_id=tenant_id)
        return _take_positions(tenant_id, count, delivered=delivered)
    return int(row[0])


def _finish_run(tenant_id: int, jobs: list[FanoutJob], now: datetime) -> int:
    """Give a run's events the tenant's next stream positions (counted as delivered: the caller
    writes their inbox rows in the same transaction), store positions, status and recipient
    counts, and take their jobs out of the outbox. The stream row stays locked until the caller
    commits, which keeps positions in commit order. On PostgreSQL ONE statement (data-modifying
    CTEs); SQLite has none, so there it is three. Returns the run's last position."""
    events = [job.event for job in jobs]
    count = len(events)
    values = ", ".join(["(%s, %s, %s)"] * count)  # placeholders only: every value is a parameter
    rows = [value for offset, event in enumerate(events, 1) for value in (event.pk, offset, event.recipient_count)]
    status, delivered_at = Event.Status.DELIVERED, connection.ops.adapt_datetimefield_value(now)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "WITH pos AS (UPDATE notifications_stream SET last_seq = last_seq + %s, "  # noqa: S608
                "delivered_seq = last_seq + %s WHERE tenant_id = %s RETURNING last_seq), "
                "marked AS (UPDATE notifications_event e SET seq = pos.last_seq - %s + v.column2, "
                f"recipient_count = v.column3, status = %s, delivered_at = %s FROM pos, (VALUES {values}) AS v "
                "WHERE e.id = v.column1 AND e.tenant_id = %s), "
                f"done AS (DELETE FROM {FanoutJob._meta.db_table} WHERE event_id IN ({placeholders(count)}) "
                "AND EXISTS (SELECT 1 FROM pos)) "
                "SELECT last_seq FROM pos",
                [count, count, tenant_id, count, status, delivered_at, *rows, tenant_id, *(e.pk for e in events)],
            )
            row = cursor.fetchone()
        if row is None:  # the tenant's first fan-out: nothing was written
            Stream.objects.get_or_create(tenant_id=tenant_id)
            return _finish_run(tenant_id, jobs, now)
        last = int(row[0])
    else:
        last = _take_positions(tenant_id, count, delivered=True)
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE notifications_event SET seq = %s + v.column2, recipient_count = v.column3, "  # noqa: S608
                f"status = %s, delivered_at = %s FROM (VALUES {values}) AS v "
                "WHERE notifications_event.id = v.column1 AND notifications_event.tenant_id = %s",
                [last - count, status, delivered_at, *rows, tenant_id],
            )
            cursor.execute(
                f"DELETE FROM {FanoutJob._meta.db_table} WHERE event_id IN ({placeholders(count)})",  # noqa: S608
                [event.pk for event in events],
            )
    for offset, event in enumerate(events, 1):
        event.seq = last - count + offset
        event.status, event.delivered_at = Event.Status.DELIVERED, now
    return last


def fanout_event(job: FanoutJob) -> None:
    """Write the event's inbox rows in batches, push them live, and finish the job."""
    event = job.event
    if event.seq is None:
        _assign_position(event)
    topics = list(event.topics.order_by("key").values_list("id", "key"))
    topic_keys = [key for _, key in topics]
    inbox_frames = [_live_frame(event, topic_keys, inbox=True)]

    if job.phase == "direct":  # "direct": the explicitly addressed recipients, in one batch (<= 1,000)
        with transaction.atomic():
            user_pks = []
            if event.recipients:
                user_pks = list(end_users_ensure(tenant=event.tenant, external_ids=event.recipients).values())
                _insert_rows(event, user_pks)
            _save_progress(job, "audience", 0)
        delivery.push_to_users(tenant_id=event.tenant_id, user_pks=user_pks, frames=inbox_frames, topics=topic_keys)
    if job.phase == "audience":  # "audience": topic subscribers, or everyone for a broadcast
        topic_ids = [topic_id for topic_id, _ in topics]
        if event.broadcast or topic_ids:
            for user_pks in _audience_batches(event, topic_ids, after=job.last_pk):
                with transaction.atomic():
                    _insert_rows(event, user_pks)
                    _save_progress(job, "audience", user_pks[-1])
                delivery.push_to_users(
                    tenant_id=event.tenant_id, user_pks=user_pks, frames=inbox_frames, topics=topic_keys
                )
    _complete(event, job)
    if topics:
        live_frames = [_live_frame(event, topic_keys, inbox=False)]
        for topic_id, _ in topics:
            delivery.push_to_topic(tenant_id=event.tenant_id, topic_id=topic_id, frames=live_frames, topics=topic_keys)


def _assign_position(event: Event) -> None:
    with transaction.atomic():
        event.seq = _take_positions(event.tenant_id, 1, delivered=False)
        event.status = Event.Status.DELIVERING
        event.save(update_fields=["seq", "status"])


def _live_frame(event: Event, topic_keys: list[str], *, inbox: bool) -> delivery.LiveFrame:
    # Encoded once per event (twice when it has topics): every socket gets these same bytes.
    assert event.seq is not None
    text = protocol.encode(
        protocol.notification_frame(
            event_id=event.number,
            seq=event.seq,
            kind=event.kind,
            topics=topic_keys,
            data=event.data,
            title=event.title,
            body=event.body,
            url=event.url,
            created_at=event.created_at,
            inbox=inbox,
        )
    )
    return delivery.LiveFrame(text, event.number, event.created_at.timestamp())


def _audience_batches(event: Event, topic_ids: list[int], *, after: int) -> Iterator[list[int]]:
    size = herald_settings.FANOUT_BATCH_SIZE
    while True:
        user_pks: list[int]
        if event.broadcast:
            everyone = EndUser.objects.filter(tenant_id=event.tenant_id, pk__gt=after).order_by("pk")
            user_pks = list(everyone.values_list("pk", flat=True)[:size])
        else:
            subscribers = Subscription.objects.filter(topic_id__in=topic_ids, user_id__gt=after).order_by("user_id")
            user_pks = list(subscribers.values_list("user_id", flat=True).distinct()[:size])
        if not user_pks:
            return
        yield user_pks
        after = user_pks[-1]


def _insert_rows(event: Event, user_pks: list[int]) -> None:
    assert event.seq is not None
    seq = event.seq
    insert_all(
        [Notification(tenant_id=event.tenant_id, user_id=pk, event_id=event.pk, seq=seq) for pk in user_pks],
        ignore_conflicts=True,  # a retried batch after a crash writes nothing twice
    )


def _save_progress(job: FanoutJob, phase: str, last_pk: int) -> None:
    job.phase, job.last_pk = phase, last_pk
    job.save(update_fields=["phase", "last_pk", "updated_at"])


def _complete(event: Event, job: FanoutJob) -> None:
    with transaction.atomic():
        event.status = Event.Status.DELIVERED
        event.delivered_at = timezone.now()
        event.recipient_count = Notification.objects.filter(event_id=event.pk).count()
        event.save(update_fields=["status", "delivered_at", "recipient_count"])
        Stream.objects.filter(tenant_id=event.tenant_id).update(delivered_seq=event.seq)
        job.delete()


# --- Running it --------------------------------------------------------------------------------


class FanoutRunner:
    """An asyncio loop around process_pending(): woken after each publish commits, and sweeping
    the outbox every FANOUT_SWEEP_SECONDS in case a wake-up was lost (crash, Redis restart)."""

    def __init__(self, *, listen_on_layer: bool) -> None:
        self.listen_on_layer = listen_on_layer
        self.loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        # Tenants named by the wake-ups since the last round; None once a wake-up named none.
        self._woken_for: set[int] | None = set()
        self.completed = 0

    def wake(self, tenant_id: int | None = None) -> None:
        """Thread-safe: called from the request thread when a publish commits, with its tenant
        (None: look at every tenant's jobs)."""
        if self.loop is not None and self._wake is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._woken, tenant_id)

    def _woken(self, tenant_id: int | None) -> None:
        if tenant_id is None:
            self._woken_for = None
        elif self._woken_for is not None:
            self._woken_for.add(tenant_id)
        assert self._wake is not None
        self._wake.set()

    async def run(self, *, stop: asyncio.Event | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        listener = asyncio.create_task(self._listen()) if self.listen_on_layer else None
        sweep = herald_settings.FANOUT_SWEEP_SECONDS
        process = in_thread(process_pending)
        try:
            while stop is None or not stop.is_set():
                tenant_ids: set[int] | None = None  # the sweep: every tenant with jobs
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=sweep)
                    tenant_ids = self._woken_for
                self._wake.clear()
                self._woken_for = set()
                try:
                    # Go round again at once only when a tenant's batch was full (then for every
                    # tenant). Jobs committed during a round have set the wake-up again, so they
                    # get the next round without an empty round (a thread hop and a query) after
                    # every publish.
                    while True:
                        done = await process(tenant_ids)
                        self.completed += done
                        if done < JOBS_PER_TENANT_ROUND:
                            break
                        tenant_ids = None
                except Exception:
                    logger.warning("fan-out round failed; retrying after the next sweep", exc_info=True)
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.wait([listener], timeout=5)

    async def _listen(self) -> None:
        layer = get_channel_layer()
        assert layer is not None and self._wake is not None
        while True:
            try:
                await layer.receive(delivery.FANOUT_CHANNEL)
                self._woken(None)  # a wake-up from another process: its tenant is not said
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis is down: the sweep keeps jobs moving; try to listen again shortly.
                await asyncio.sleep(0.5)


_local_runner: FanoutRunner | None = None
_local_runner_task: asyncio.Task[None] | None = None


def ensure_local_runner() -> None:
    """Start the in-process fan-out loop on the running event loop (embedded default)."""
    global _local_runner, _local_runner_task
    if herald_settings.FANOUT_MODE != "inprocess":
        return
    loop = asyncio.get_running_loop()
    if (
        _local_runner is not None
        and _local_runner.loop is loop
        and _local_runner_task
        and not _local_runner_task.done()
    ):
        return
    _local_runner = FanoutRunner(listen_on_layer=False)
    _local_runner_task = loop.create_task(_local_runner.run(), name="herald-fanout")


async def stop_local_runner() -> None:
    global _local_runner, _local_runner_task
    task, _local_runner, _local_runner_task = _local_runner_task, None, None
    # A task of a loop that has since closed is already over (and cannot be awaited from here).
    if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
        task.cancel()
        # Bounded: a fan-out round in its thread finishes its current batch first.
        await asyncio.wait([task], timeout=30)


def request_fanout(tenant_id: int | None = None) -> None:
    """Called after a publish of this tenant commits: wake the in-process loop, or the worker
    processes."""
    runner = _local_runner
    if runner is not None and runner.loop is not None and not runner.loop.is_closed():
        runner.wake(tenant_id)
    elif herald_settings.FANOUT_MODE == "worker":
        delivery.wake_fanout()
    # Otherwise nothing runs fan-out in this process (a management command, a test): the next
    # sweep of a running loop picks the job up.


def wait_for_idle(timeout: float = 10.0) -> None:
    """Test/ops helper: block until the outbox is empty (or raise TimeoutError)."""
    deadline = time.monotonic() + timeout
    while FanoutJob.objects.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("fan-out did not finish in time")
        time.sleep(0.02)
