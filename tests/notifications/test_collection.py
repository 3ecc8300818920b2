"""The garbage-collection schedule (notifications/collection.py): a burst of connections makes a
full collection due, the hub runs it only when nothing arrived for a while, and every
collection's pause is in the metrics."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from channels.layers import get_channel_layer

from notifications import collection, metrics
from notifications.hub import Hub
from tests.notifications.test_hub import FakeConnection


def _pauses(generation: int) -> float:
    value = metrics.REGISTRY.get_sample_value("herald_gc_pause_seconds_count", {"generation": str(generation)})
    return value or 0.0


def test_a_full_collection_is_due_after_a_quarter_as_many_new_connections_as_are_open() -> None:
    schedule = collection.CollectionSchedule()
    for _ in range(collection.MIN_NEW_CONNECTIONS - 1):
        schedule.connection_opened()
    assert not schedule.due(open_connections=10)  # below the floor: a small node never forces one
    schedule.connection_opened()
    assert schedule.due(open_connections=10)
    assert schedule.due(open_connections=4 * collection.MIN_NEW_CONNECTIONS)
    assert not schedule.due(open_connections=4 * collection.MIN_NEW_CONNECTIONS + 1)


def test_every_collection_is_timed_and_a_full_one_resets_the_count() -> None:
    schedule = collection.schedule()
    assert schedule is collection.schedule()  # one per process, hooked into the collector once
    assert gc.callbacks.count(schedule.on_collection) == 1
    schedule.record_pauses()
    schedule.connection_opened()
    full_before, young_before = _pauses(2), _pauses(0)

    gc.collect(0)
    assert schedule.opened_since_full >= 1  # a young collection does not count as a full one
    collections_before = schedule.full_collections
    gc.collect()
    assert schedule.full_collections == collections_before + 1
    assert schedule.opened_since_full == 0

    # The collector's callback takes no lock (the metrics' locks could be held by the very thread
    # it interrupts): the pauses reach the histogram when the hub or a scrape records them.
    assert (_pauses(0), _pauses(2)) == (young_before, full_before)
    schedule.record_pauses()
    assert _pauses(0) >= young_before + 1
    assert _pauses(2) >= full_before + 1


@pytest.mark.django_db
def test_a_scrape_records_the_pauses_measured_so_far(client) -> None:
    collection.schedule()  # hooked into the collector (the hub does it when it starts)
    gc.collect()
    before = _pauses(2)
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert _pauses(2) >= before + 1
    assert b'herald_gc_pause_seconds_count{generation="2"}' in response.content


@pytest.mark.asyncio
async def test_the_hub_collects_once_a_burst_of_connections_is_over_and_only_when_quiet(
    live_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    layer = get_channel_layer()
    assert layer is not None
    node = Hub(layer)
    node.loop = asyncio.get_running_loop()
    node.channel_name = await layer.new_channel("herald-node-test")
    collections: list[int] = []
    # A schedule of its own, not hooked into the collector: an automatic collection during the
    # test would reset the count it checks.
    schedule = collection.CollectionSchedule()
    monkeypatch.setattr(collection, "_schedule", schedule)
    monkeypatch.setattr(schedule, "collect", lambda: collections.append(1))

    connections = [FakeConnection(tenant_id=905, user_pk=n) for n in range(collection.MIN_NEW_CONNECTIONS)]
    seen = node.collect_if_quiet(None)
    await asyncio.gather(*(node.register(connection) for connection in connections))
    seen = node.collect_if_quiet(seen)
    assert collections == []  # connections arrived since the last look: not quiet

    node.frames_out += 1  # a delivery
    seen = node.collect_if_quiet(seen)
    assert collections == []

    seen = node.collect_if_quiet(seen)  # nothing since the last look: quiet, and a collection is due
    assert collections == [1]
    schedule.opened_since_full = 0  # what the real collection's callback does
    node.collect_if_quiet(seen)
    assert collections == [1]  # quiet but nothing due: no second collection
    for connection in connections:
        await node.unregister(connection, [])
