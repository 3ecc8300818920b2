"""The statements on the hot paths (a publish, a fan-out round, a socket's authentication) must not
carry the models' default ordering. Most models sort by tenant first, and Tenant sorts by slug, so
a lookup left with it joins the tenant table and sorts, for nothing: measured at ~16 % of a
connect's database CPU and ~20 % of a publish's. With DISTINCT it is worse: the sort columns join
the select list, and the check for persistent subscribers read one row per subscription instead
of one per topic (10,000 rows per round for a 10,000-member topic)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import credentials
from accounts.models import EndUser
from notifications import selectors
from notifications.models import Subscription

pytestmark = pytest.mark.django_db

SORTED_BY_TENANT = '"accounts_tenant"."slug" ASC'


def sorted_by_tenant(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if SORTED_BY_TENANT in query["sql"]]


def test_a_publish_and_its_fanout_round_never_sort_by_tenant(api, tenant, make_topic, run_fanout):
    topic = make_topic(tenant, "members")
    users = EndUser.objects.bulk_create([EndUser(tenant=tenant, external_id=f"m{i}") for i in range(30)])
    Subscription.objects.bulk_create([Subscription(tenant=tenant, topic=topic, user=user) for user in users])
    make_topic(tenant, "live")
    with CaptureQueriesContext(connection) as queries:
        for body in (
            {"kind": "k", "topics": ["members"]},
            {"kind": "k", "topics": ["live"]},
            {"kind": "k", "recipients": ["alice"]},
        ):
            assert api.post("/api/v1/events", body, format="json").status_code == 202
        assert run_fanout() == 3
    assert sorted_by_tenant(queries) == []
    subscription_checks = [
        q["sql"] for q in queries.captured_queries if "DISTINCT" in q["sql"] and "subscription" in q["sql"]
    ]
    assert subscription_checks and all("JOIN" not in sql for sql in subscription_checks)


@pytest.mark.django_db(transaction=True)  # socket_start sets its own isolation level
def test_authenticating_a_socket_never_sorts_by_tenant(tenant, make_token, make_topic):
    make_topic(tenant, "live", allow_client_subscribe=True)
    token = make_token(tenant, "alice")
    credentials.end_user_principal_from_token(token)  # the end user exists from now on
    with CaptureQueriesContext(connection) as queries:
        principal = credentials.end_user_principal_from_token(token)
        allowed, refused = selectors.topics_partition(principal=principal, keys=("live", "nope"))
        selectors.socket_start(user=principal.end_user, since=None, topic_ids=list(allowed.values()))
    assert refused == ["nope"]
    assert sorted_by_tenant(queries) == []


def test_a_run_of_small_events_costs_the_same_statements_as_one(api, tenant, make_topic, run_fanout):
    """Live-topic and direct events are finished together: positions, inbox rows, completion and
    job removal take a fixed number of statements per run, not a few per event."""
    from notifications.models import Event, Notification, Stream

    make_topic(tenant, "live")

    def round_statements(count: int) -> int:
        events = [
            {"kind": "k", "topics": ["live"]}
            if index % 2
            else {"kind": "k", "topics": ["live"], "recipients": ["a", "b"]}
            for index in range(count)
        ]
        assert api.post("/api/v1/events/batch", {"events": events}, format="json").status_code == 202
        with CaptureQueriesContext(connection) as queries:
            assert run_fanout() == count
        return len(queries.captured_queries)

    round_statements(1)  # the first sight of users a and b creates them
    one, ten = round_statements(1), round_statements(10)
    assert one == ten, (one, ten)
    events = list(Event.objects.filter(tenant=tenant).order_by("number"))
    assert [event.seq for event in events] == list(range(1, 13))
    assert {event.status for event in events} == {Event.Status.DELIVERED}
    assert all(event.delivered_at is not None for event in events)
    assert [event.recipient_count for event in events] == [2, 2] + [2, 0] * 5
    stream = Stream.objects.get(tenant=tenant)
    assert stream.last_seq == stream.delivered_seq == 12
    assert Notification.objects.filter(tenant=tenant).count() == 14


@pytest.mark.django_db(transaction=True)  # socket_start sets its own isolation level
def test_a_socket_with_nothing_to_replay_reads_no_backlog(api, tenant, make_token, make_topic, run_fanout):
    """A new socket, or a client that saw everything, starts at the stream's last position: its
    start is ONE statement (counters and unread count, one snapshot); one that is behind still
    gets its replay and the same unread count."""
    make_topic(tenant, "live", allow_client_subscribe=True)
    token = make_token(tenant, "alice")
    principal = credentials.end_user_principal_from_token(token)
    for body in ({"kind": "k", "recipients": ["alice"]}, {"kind": "k", "topics": ["live"]}):
        assert api.post("/api/v1/events", body, format="json").status_code == 202
    assert run_fanout() == 2
    allowed, _ = selectors.topics_partition(principal=principal, keys=("live",))

    statements: list[int] = []

    def start(since: int | None) -> tuple[selectors.SocketStart, list[str]]:
        with CaptureQueriesContext(connection) as queries:
            result = selectors.socket_start(user=principal.end_user, since=since, topic_ids=list(allowed.values()))
        backlog_reads = [
            q["sql"]
            for q in queries.captured_queries
            if "ORDER BY" in q["sql"]
            and any(f'FROM "notifications_{table}"' in q["sql"] for table in ("notification", "event"))
        ]
        statements.append(len(queries.captured_queries))
        return result, backlog_reads

    fresh, reads = start(None)
    assert reads == [] and fresh.backlog.frames == [] and fresh.backlog.cursor == 2 and fresh.unread == 1
    current, reads = start(2)
    assert reads == [] and current.backlog.frames == [] and current.backlog.recovered and current.unread == 1
    assert statements == [1, 1]
    behind, reads = start(0)
    assert len(reads) == 2 and [frame["cursor"] for frame in behind.backlog.frames] == ["1", "2"]
    assert behind.unread == 1 and behind.backlog.cursor == 2
    for since, reason in ((-1, "retention"), (99, "invalid_cursor")):  # decided by the counters alone
        refused, reads = start(since)
        assert refused.backlog.reason == reason and reads == [] and statements[-1] == 1


@pytest.mark.django_db(transaction=True)  # the round's own transactions, as in production
def test_a_round_of_live_topic_events_is_four_statements_on_postgresql(api, tenant, make_topic, run_fanout):
    """Events for live listeners only (no inbox rows) are what a busy topic publishes: their round
    is the lock, ONE read (jobs, events and their topics), ONE write (positions, status, outbox;
    atomic by itself, so no BEGIN and COMMIT) and the unlock. Each statement is a round trip that
    every event waited for."""
    from notifications import fanout
    from notifications.models import Event, FanoutJob, Stream

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement write is PostgreSQL's (SQLite has no data-modifying CTEs)")
    make_topic(tenant, "live")
    make_topic(tenant, "other")
    assert api.post("/api/v1/events", {"kind": "k", "topics": ["live"]}, format="json").status_code == 202
    assert fanout.process_pending([tenant.pk]) == 1  # the tenant's first round creates its stream
    for topics in (["live"], ["other", "live"]):
        assert api.post("/api/v1/events", {"kind": "k", "topics": topics}, format="json").status_code == 202
    with CaptureQueriesContext(connection) as queries:
        assert fanout.process_pending([tenant.pk]) == 2
    statements = [query["sql"].split()[0].upper() for query in queries.captured_queries]
    assert statements == ["SELECT", "SELECT", "WITH", "SELECT"], statements
    assert "pg_try_advisory_lock" in queries.captured_queries[0]["sql"]
    assert "pg_advisory_unlock" in queries.captured_queries[3]["sql"]
    assert not FanoutJob.objects.filter(tenant=tenant).exists()
    events = list(Event.objects.filter(tenant=tenant).order_by("number"))
    assert [(event.seq, event.status, event.recipient_count) for event in events] == [
        (1, Event.Status.DELIVERED, 0),
        (2, Event.Status.DELIVERED, 0),
        (3, Event.Status.DELIVERED, 0),
    ]
    stream = Stream.objects.get(tenant=tenant)
    assert stream.last_seq == stream.delivered_seq == 3


@pytest.mark.django_db(transaction=True)  # the publish's own transaction, as in production
def test_a_publish_writes_in_one_statement_on_postgresql(api, tenant, make_topic):
    """A publish is the key lookup, then in its transaction the topics' lookup and ONE write
    (number, event, topic links, outbox job): the round trips every publish waits for."""
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement write is PostgreSQL's (SQLite has no data-modifying CTEs)")
    make_topic(tenant, "live")
    assert api.post("/api/v1/events", {"kind": "k", "topics": ["live"]}, format="json").status_code == 202
    with CaptureQueriesContext(connection) as queries:
        response = api.post("/api/v1/events", {"kind": "k", "topics": ["live"], "data": {"x": 1}}, format="json")
    assert response.status_code == 202 and response.json()["id"] == 2
    statements = [query["sql"].split()[0].upper() for query in queries.captured_queries]
    assert statements == ["SELECT", "BEGIN", "SELECT", "WITH", "COMMIT"], statements
