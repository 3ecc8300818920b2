"""A small event published while its tenant's fan-out is idle is finished by the publish itself
(services.events_publish, fanout.direct_delivery): positions, inbox rows and completion in the
publish's transaction, frames right after its commit. Everything else keeps going through the
outbox, and the stream's order holds across both paths."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connection, transaction

from notifications import delivery, fanout, services
from notifications.models import Event, FanoutJob, Notification, Stream, Subscription

# Outside any transaction: the direct path is never taken inside one (the push must follow the commit).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, list[int | None]]]:
    """What reaches the channel layer: (target, event ids of the message's frames)."""
    sent: list[tuple[str, list[int | None]]] = []

    def record(target: str):
        return lambda **kw: sent.append((target, [frame.event_id for frame in kw["frames"]]))

    monkeypatch.setattr(delivery, "push_to_users", record("users"))
    monkeypatch.setattr(delivery, "push_to_topic", record("topic"))
    return sent


def publish(api, **body) -> int:
    response = api.post("/api/v1/events", {"kind": "k", **body}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_a_small_event_on_an_idle_tenant_is_delivered_by_its_publish(api, tenant, make_topic, sent):
    make_topic(tenant, "live")
    event_id = publish(api, topics=["live"], recipients=["alice"])

    # Done when the request returns: no outbox row, no fan-out round needed.
    assert not FanoutJob.objects.exists()
    event = Event.objects.get(number=event_id)
    assert event.status == Event.Status.DELIVERED and event.seq == 1 and event.recipient_count == 1
    assert event.delivered_at is not None
    assert Notification.objects.filter(event=event, user__external_id="alice", seq=1).exists()
    assert Stream.objects.get(tenant=tenant).delivered_seq == 1
    assert sent == [("users", [event_id]), ("topic", [event_id])]
    assert fanout.process_pending() == 0


def test_the_frames_are_the_ones_a_fanout_round_sends(api, tenant, make_topic, monkeypatch):
    """Same frame text whichever path delivered the event (the topics sorted by key alike)."""
    make_topic(tenant, "b.live")
    make_topic(tenant, "a-live")
    texts: list[str] = []
    monkeypatch.setattr(delivery, "push_to_topic", lambda **kw: texts.extend(f.text for f in kw["frames"]))
    monkeypatch.setattr(delivery, "push_to_users", lambda **kw: None)
    publish(api, topics=["b.live", "a-live"], data={"n": 1})
    assert not FanoutJob.objects.exists()
    with transaction.atomic():  # inside a transaction: through the outbox
        publish(api, topics=["b.live", "a-live"], data={"n": 1})
    assert fanout.process_pending() == 1
    direct, round_ = (json.loads(text) for text in (texts[0], texts[-1]))
    assert direct["topics"] == ["a-live", "b.live"]
    for frame in (direct, round_):  # what differs between two events
        del frame["id"], frame["cursor"], frame["created_at"]
    assert direct == round_


def test_a_publish_inside_a_transaction_goes_through_the_outbox(api, tenant, make_topic, sent):
    make_topic(tenant, "live")
    with transaction.atomic():
        publish(api, topics=["live"])
        assert FanoutJob.objects.count() == 1
    assert sent == []
    assert fanout.process_pending() == 1
    assert len(sent) == 1


def test_a_quick_succession_goes_through_the_outbox_and_keeps_its_order(api, tenant, make_topic, sent):
    """The second of two publishes within DIRECT_MIN_GAP_SECONDS waits for a round, so a stream of
    events is sent in runs; its position still comes after the first's."""
    make_topic(tenant, "live")
    first = publish(api, topics=["live"])
    second = publish(api, topics=["live"])
    assert list(FanoutJob.objects.values_list("event__number", flat=True)) == [second]
    assert fanout.process_pending() == 1
    assert list(Event.objects.order_by("seq").values_list("number", flat=True)) == [first, second]
    assert [ids for _, ids in sent] == [[first], [second]]


def test_an_event_waiting_in_the_outbox_goes_first(api, tenant, make_topic, sent):
    make_topic(tenant, "live")
    with transaction.atomic():
        waiting = publish(api, topics=["live"])
    fanout._last_publish.clear()  # not a quick succession
    later = publish(api, topics=["live"])
    assert FanoutJob.objects.count() == 2  # the later one queued behind the waiting one
    assert fanout.process_pending() == 2
    assert list(Event.objects.order_by("seq").values_list("number", flat=True)) == [waiting, later]
    assert [ids for _, ids in sent] == [[waiting, later]]


def test_events_with_persistent_subscribers_or_broadcasts_go_through_the_outbox(api, tenant, make_topic, sent):
    topic = make_topic(tenant, "members")
    member = services.end_user_ensure(tenant=tenant, external_id="m")
    Subscription.objects.create(tenant=tenant, topic=topic, user=member)
    publish(api, topics=["members"])
    fanout._last_publish.clear()
    publish(api, broadcast=True)
    assert FanoutJob.objects.count() == 2
    assert sent == []
    assert fanout.process_pending() == 2


def test_a_tenant_whose_fanout_is_busy_elsewhere_goes_through_the_outbox(api, tenant, make_topic, sent):
    """Another thread (on PostgreSQL: another database session) holds the tenant's fan-out."""
    make_topic(tenant, "live")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with fanout.tenant_lock(tenant.pk) as acquired:
                assert acquired
                held.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        publish(api, topics=["live"])
        assert FanoutJob.objects.count() == 1
    finally:
        release.set()
        holder.join(10)
    assert fanout.process_pending() == 1


def test_a_job_committed_while_the_lock_was_held_gets_a_round_at_once(tenant, make_topic, monkeypatch):
    """A round that ran meanwhile skipped the locked tenant: the publish that held the lock wakes
    the fan-out again rather than leaving the job to the next sweep."""
    make_topic(tenant, "live")
    wakes: list[int] = []
    monkeypatch.setattr(fanout, "request_fanout", lambda: wakes.append(1))
    item = services.EventInput(kind="k", topics=("live",))
    with fanout.direct_delivery(tenant.pk) as direct:
        assert direct
        # Another publish of the same tenant commits meanwhile (it cannot take the lock).
        services.events_publish(tenant=tenant, api_key=None, items=[item])
        assert FanoutJob.objects.count() == 1
        wakes_inside = len(wakes)
    assert len(wakes) == wakes_inside + 1


def test_a_refused_publish_stores_nothing_and_frees_the_tenant(api, tenant, make_topic, sent):
    make_topic(tenant, "live")
    response = api.post("/api/v1/events", {"kind": "k", "topics": ["nope"]}, format="json")
    assert response.status_code == 400
    assert not Event.objects.exists() and not FanoutJob.objects.exists()
    with fanout.tenant_lock(tenant.pk) as acquired:
        assert acquired
    fanout._last_publish.clear()
    publish(api, topics=["live"])
    assert not FanoutJob.objects.exists() and len(sent) == 1
