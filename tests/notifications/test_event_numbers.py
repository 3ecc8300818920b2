"""Event ids are numbered per tenant (notifications.services._reserve_event_numbers)."""

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
