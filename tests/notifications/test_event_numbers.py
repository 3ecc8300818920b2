"""Event ids are numbered per tenant, and a publish stores what it was given (notifications.services._store_events)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from accounts.exceptions import ValidationFailed
from notifications import services
from notifications.models import Event, EventCounter
from notifications.services import EventInput


@pytest.mark.django_db
def test_each_tenant_counts_its_own_events_from_one(tenant, other_tenant):
    item = EventInput(kind="k", recipients=("alice",))
    first = services.events_publish(tenant=tenant, api_key=None, items=[item]).event_ids
    theirs = services.events_publish(tenant=other_tenant, api_key=None, items=[item] * 4).event_ids
    then = services.events_publish(tenant=tenant, api_key=None, items=[item] * 2).event_ids
    assert (first, theirs, then) == ([1], [1, 2, 3, 4], [2, 3])
    assert EventCounter.objects.get(tenant=tenant).last_number == 3


@pytest.mark.django_db
def test_a_refused_publish_uses_no_number(tenant):
    good = EventInput(kind="k", recipients=("alice",))
    services.events_publish(tenant=tenant, api_key=None, items=[good])
    with pytest.raises(ValidationFailed):  # an unknown topic: the whole batch is refused
        services.events_publish(tenant=tenant, api_key=None, items=[good, EventInput(kind="k", topics=("nope",))])
    assert services.events_publish(tenant=tenant, api_key=None, items=[good]).event_ids == [2]


@pytest.mark.django_db(transaction=True)
def test_concurrent_publishes_of_one_tenant_get_every_number_exactly_once(tenant):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time; the race is PostgreSQL's")
    threads, rounds = 8, 10
    start = threading.Barrier(threads)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def publisher(size: int) -> None:
        try:
            start.wait(timeout=10)  # the first publishes race to create the tenant's counter too
            for _ in range(rounds):
                items = [EventInput(kind="k", recipients=("alice",))] * size
                numbers.extend(services.events_publish(tenant=tenant, api_key=None, items=items).event_ids)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=publisher, args=(1 + index % 3,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, errors
    total = rounds * sum(1 + index % 3 for index in range(threads))
    assert sorted(numbers) == list(range(1, total + 1))
    assert sorted(Event.objects.filter(tenant=tenant).values_list("number", flat=True)) == sorted(numbers)
    assert EventCounter.objects.get(tenant=tenant).last_number == total


@pytest.mark.django_db
def test_a_batch_stores_every_field_each_events_topics_and_one_job_each(tenant, other_tenant, make_topic, make_key):
    """On PostgreSQL the publish's writes are one statement that numbers the events, inserts them,
    links their topics by position in the batch and queues their jobs: each event must get
    exactly its own fields and topics, whatever its neighbours carry."""
    from accounts.models import ApiKey
    from notifications.models import FanoutJob

    for topic_key in ("a", "b", "c"):
        make_topic(tenant, topic_key)
    make_topic(other_tenant, "a")  # same key, another tenant: never linked
    make_key(tenant)
    key = ApiKey.objects.filter(tenant=tenant).first()
    services.events_publish(tenant=tenant, api_key=None, items=[EventInput(kind="first", recipients=("x",))])
    items = [
        EventInput(kind="one", topics=("c", "a"), data={"n": 1, "text": "é ✓", "nested": [1, {"k": None}]}),
        EventInput(kind="two", recipients=("u1", "u2"), title="T", body="B", url="https://example.test/x"),
        EventInput(kind="three", topics=("b",), broadcast=True, data={}),
        EventInput(kind="four", topics=("a", "b", "c"), data=[1, 2]),
    ]
    numbers = services.events_publish(tenant=tenant, api_key=key, items=items).event_ids
    assert numbers == [2, 3, 4, 5]
    events = list(Event.objects.filter(tenant=tenant, number__in=numbers).order_by("number"))
    assert [event.pk for event in events] == sorted(event.pk for event in events)  # ids follow numbers
    assert [(e.kind, e.data, e.title, e.body, e.url, e.recipients, e.broadcast) for e in events] == [
        ("one", {"n": 1, "text": "é ✓", "nested": [1, {"k": None}]}, "", "", "", [], False),
        ("two", {}, "T", "B", "https://example.test/x", ["u1", "u2"], False),
        ("three", {}, "", "", "", [], True),
        ("four", [1, 2], "", "", "", [], False),
    ]
    assert all(e.api_key_id == key.pk and e.seq is None and e.status == Event.Status.PENDING for e in events)
    assert all(e.created_at is not None and e.delivered_at is None and e.recipient_count == 0 for e in events)
    assert [sorted(t.key for t in event.topics.all()) for event in events] == [["a", "c"], [], ["b"], ["a", "b", "c"]]
    assert {t.tenant_id for event in events for t in event.topics.all()} == {tenant.pk}
    jobs = {job.event_id: job for job in FanoutJob.objects.filter(tenant=tenant)}
    assert set(jobs) == {event.pk for event in Event.objects.filter(tenant=tenant)}
    assert all((job.phase, job.last_pk, job.attempts, job.last_error) == ("direct", 0, 0, "") for job in jobs.values())
    assert EventCounter.objects.get(tenant=tenant).last_number == 5
