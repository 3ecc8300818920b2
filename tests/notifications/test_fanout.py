"""Fan-out: the outbox, batches, ordering, crash recovery and a 10,000-member topic."""

from __future__ import annotations

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import EndUser
from notifications import delivery, fanout
from notifications.models import Event, FanoutJob, Notification, Stream, Subscription, Topic

pytestmark = pytest.mark.django_db


def subscribe_many(tenant, topic: Topic, count: int) -> None:
    EndUser.objects.bulk_create(
        [EndUser(tenant=tenant, external_id=f"member-{i}") for i in range(count)], batch_size=2000
    )
    users = EndUser.objects.filter(tenant=tenant, external_id__startswith="member-")
    Subscription.objects.bulk_create(
        [Subscription(tenant=tenant, topic=topic, user=user) for user in users], batch_size=2000
    )


def test_publish_to_a_10000_member_topic_gives_each_member_exactly_one_row(api, tenant, make_topic, run_fanout):
    topic = make_topic(tenant, "big")
    subscribe_many(tenant, topic, 10_000)
    with CaptureQueriesContext(connection) as request_queries:
        response = api.post("/api/v1/events", {"kind": "k", "topics": ["big"]}, format="json")
    assert response.status_code == 202
    # The request does O(1) work: no per-recipient row, a handful of queries.
    assert Notification.objects.count() == 0
    assert len(request_queries) < 20
    assert run_fanout() == 1
    assert Notification.objects.count() == 10_000
    assert Notification.objects.values("user").distinct().count() == 10_000
    event = Event.objects.get()
    assert event.recipient_count == 10_000 and event.status == Event.Status.DELIVERED


def test_fanout_writes_in_batches_and_pushes_each_batch_once(
    tenant, api, make_topic, run_fanout, settings, monkeypatch
):
    settings.HERALD = {**settings.HERALD, "FANOUT_BATCH_SIZE": 100}
    topic = make_topic(tenant, "t")
    subscribe_many(tenant, topic, 250)
    pushes: list[int] = []
    monkeypatch.setattr(delivery, "push_to_users", lambda **kw: pushes.append(len(kw["user_pks"])))
    api.post("/api/v1/events", {"kind": "k", "topics": ["t"]}, format="json")
    run_fanout()
    assert pushes == [0, 100, 100, 50]  # the (empty) direct batch, then the subscriber batches


def test_a_crash_mid_fanout_is_resumed_and_nobody_gets_two_rows(tenant, api, make_topic, settings, monkeypatch):
    settings.HERALD = {**settings.HERALD, "FANOUT_BATCH_SIZE": 100}
    topic = make_topic(tenant, "t")
    subscribe_many(tenant, topic, 350)
    api.post("/api/v1/events", {"kind": "k", "topics": ["t"], "recipients": ["member-5", "outsider"]}, format="json")
    calls = {"n": 0}

    def crash_on_third_push(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker killed")

    monkeypatch.setattr(delivery, "push_to_users", crash_on_third_push)
    assert fanout.process_pending() == 0  # the job failed mid-way
    job = FanoutJob.objects.get()
    assert job.attempts == 1 and "worker killed" in job.last_error and job.phase == "audience"
    assert 0 < Notification.objects.count() < 351
    monkeypatch.setattr(delivery, "push_to_users", lambda **kwargs: None)
    assert fanout.process_pending() == 1
    assert Notification.objects.count() == 351  # 350 members (member-5 once) + outsider
    assert Notification.objects.values("user").distinct().count() == 351
    assert not FanoutJob.objects.exists()


def test_stream_positions_follow_processing_order_and_delivered_position_advances(api, tenant, run_fanout):
    ids = [api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json").json()["id"] for _ in range(3)]
    assert Stream.objects.filter(tenant=tenant).first() is None or Stream.objects.get(tenant=tenant).last_seq == 0
    run_fanout()
    assert list(Event.objects.filter(number__in=ids).order_by("seq").values_list("number", flat=True)) == ids
    stream = Stream.objects.get(tenant=tenant)
    assert (stream.last_seq, stream.delivered_seq) == (3, 3)


def test_a_tenant_locked_elsewhere_is_skipped_not_blocked(api, tenant, run_fanout):
    api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    with fanout.tenant_lock(tenant.pk) as acquired:
        assert acquired
        if connection.vendor == "sqlite":  # the process-local lock: another thread would skip
            with fanout.tenant_lock(tenant.pk) as again:
                assert again is False
    assert run_fanout() == 1


def test_a_round_whose_jobs_another_node_finished_meanwhile_moves_on(
    api, tenant, other_tenant, make_key, client_for, monkeypatch
):
    """The tenants are listed before each one's lock is taken: by then another node may have done
    that tenant's jobs. The round must take the empty list in its stride ("IN ()" is an SQL error on
    PostgreSQL) and go on with the next tenant."""
    api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    client_for(make_key(other_tenant)).post("/api/v1/events", {"kind": "k", "recipients": ["b"]}, format="json")
    real_fetch_with = fanout.fetch_with

    def finished_elsewhere(model, where, params, **kwargs):
        if params[0] == tenant.pk:  # this tenant's jobs were done by another node meanwhile
            FanoutJob.objects.filter(tenant_id=tenant.pk).delete()
        return real_fetch_with(model, where, params, **kwargs)

    monkeypatch.setattr(fanout, "fetch_with", finished_elsewhere)
    assert fanout.process_pending() == 1  # the other tenant's job, in the same round
    assert not FanoutJob.objects.exists()


def test_other_tenants_keep_flowing_while_one_job_fails(api, tenant, other_tenant, make_key, client_for, monkeypatch):
    other = client_for(make_key(other_tenant))
    api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    other.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    real = fanout._fanout_small

    def fail_for_acme(jobs, topics):
        if jobs[0].tenant_id == tenant.pk:
            raise RuntimeError("poison")
        real(jobs, topics)

    monkeypatch.setattr(fanout, "_fanout_small", fail_for_acme)
    assert fanout.process_pending() == 1
    assert Notification.objects.filter(tenant=other_tenant).count() == 1
    assert FanoutJob.objects.filter(tenant=tenant).exists()


def test_small_events_are_finished_together_and_order_is_kept(api, tenant, make_topic, run_fanout):
    make_topic(tenant, "live", allow_client_subscribe=True)
    make_topic(tenant, "followed")
    api.post("/api/v1/users/fan/subscriptions", {"topics": ["followed"]}, format="json")
    bodies = (
        [{"kind": "k", "topics": ["live"]}] * 3
        + [{"kind": "k", "topics": ["followed"]}]
        + [{"kind": "k", "topics": ["live"]}] * 2
    )
    ids = [api.post("/api/v1/events", body, format="json").json()["id"] for body in bodies]
    with CaptureQueriesContext(connection) as queries:
        assert run_fanout() == 6
    by_id = {event.number: event for event in Event.objects.filter(tenant=tenant)}
    assert [by_id[event_id].seq for event_id in ids] == [1, 2, 3, 4, 5, 6]  # publish order kept
    assert all(by_id[event_id].status == Event.Status.DELIVERED for event_id in ids)
    assert Notification.objects.count() == 1 and Notification.objects.get().event.number == ids[3]
    assert Stream.objects.get(tenant=tenant).delivered_seq == 6
    # Six events, far fewer statements than the dozen each would take one by one.
    assert len(queries) < 60


def test_direct_events_in_one_run_write_every_row_once(api, tenant, run_fanout):
    for index in range(30):
        api.post(
            "/api/v1/events", {"kind": "k", "recipients": [f"u{index % 7}", "everyone", "everyone"]}, format="json"
        )
    with CaptureQueriesContext(connection) as queries:
        assert run_fanout() == 30
    assert Notification.objects.count() == 60
    assert set(Event.objects.values_list("recipient_count", flat=True)) == {2}
    assert len(queries) < 60  # 30 events: about two statements each, not a dozen


def _record_sends(monkeypatch) -> list[tuple[str, list[int | None], bool]]:
    """What the fan-out hands to the layer: (target, event ids of the message's frames, once)."""
    sent: list[tuple[str, list[int | None], bool]] = []

    def record(target: str):
        return lambda **kw: sent.append((target, [frame.event_id for frame in kw["frames"]], kw.get("once", False)))

    monkeypatch.setattr(delivery, "push_to_users", record("users"))
    monkeypatch.setattr(delivery, "push_to_topic", record("topic"))
    return sent


def _fan_out_recording(api, tenant, make_topic, run_fanout, monkeypatch, bodies: list[dict]):
    """Publish `bodies` (topics "a" and "b" exist), run one fan-out and return the event ids and
    what was handed to the layer (_record_sends)."""
    make_topic(tenant, "a", allow_client_subscribe=True)
    make_topic(tenant, "b", allow_client_subscribe=True)
    sent = _record_sends(monkeypatch)
    ids = [api.post("/api/v1/events", body, format="json").json()["id"] for body in bodies]
    assert run_fanout() == len(bodies)
    return ids, sent


def test_only_events_that_reach_a_socket_through_one_message_are_marked_once(
    api, tenant, make_topic, run_fanout, monkeypatch
):
    bodies = [
        {"kind": "k", "topics": ["a"]},  # one topic
        {"kind": "k", "recipients": ["x", "y"]},  # recipients only: each socket is one user's
        {"kind": "k", "topics": ["a", "b"]},  # two topics: a socket on both gets two messages
        {"kind": "k", "topics": ["a"], "recipients": ["x"]},  # x may listen to "a" too
    ]
    ids, sent = _fan_out_recording(api, tenant, make_topic, run_fanout, monkeypatch, bodies)
    assert sent == [
        ("topic", [ids[0]], True),
        ("users", [ids[1]], True),
        ("topic", [ids[2]], False),
        ("topic", [ids[2]], False),
        ("users", [ids[3]], False),
        ("topic", [ids[3]], False),
    ]


def test_consecutive_events_with_the_same_audience_go_as_one_message_per_group_in_order(
    api, tenant, make_topic, run_fanout, monkeypatch
):
    bodies = [
        *[{"kind": "k", "topics": ["a"]}] * 3,  # one run: one message with 3 frames
        {"kind": "k", "recipients": ["x"]},  # another audience ends the run
        *[{"kind": "k", "topics": ["a", "b"], "recipients": ["x"]}] * 2,  # a run to 3 groups
        {"kind": "k", "topics": ["a"]},
    ]
    ids, sent = _fan_out_recording(api, tenant, make_topic, run_fanout, monkeypatch, bodies)
    assert (
        sent
        == [
            ("topic", ids[0:3], True),
            ("users", [ids[3]], True),
            ("users", ids[4:6], False),  # every group of the run gets all of it, one group after another
            ("topic", ids[4:6], False),
            ("topic", ids[4:6], False),
            ("topic", [ids[6]], True),
        ]
    )
    # Each message's frames carry their own event's position, in stream order.
    seqs = dict(Event.objects.filter(number__in=ids).values_list("number", "seq"))
    assert [seqs[event_id] for event_id in ids] == sorted(seqs.values())


def test_runs_are_cut_at_the_seen_id_window_and_at_each_change_of_audience():
    from types import SimpleNamespace

    from notifications.consumers import SEEN_IDS_KEPT

    events = [SimpleNamespace(pk=n, recipients=[] if n < 300 else ["x"]) for n in range(302)]
    topics = {n: [(7, "a")] for n in range(302)}
    runs = [[event.pk for event in run] for run in fanout._same_audience(events, topics)]
    cap = delivery.RUN_MAX_EVENTS
    assert cap <= SEEN_IDS_KEPT  # a run's second copy on a socket still finds every id it sent
    assert [len(run) for run in runs] == [cap, cap, 300 - 2 * cap, 2]
    assert [pk for run in runs for pk in run] == list(range(302))  # stream order kept


def test_a_long_run_is_split_into_messages_of_bounded_size_in_order(monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(delivery, "_group_send", lambda group, message: sent.append((group, message)))
    monkeypatch.setattr(delivery, "LIVE_MESSAGE_MAX_BYTES", 1000)
    frames = [delivery.LiveFrame("x" * 300, n, 1.0) for n in range(10)]
    delivery.push_to_topic(tenant_id=1, topic_id=2, frames=frames, topics=["t"], once=True)
    assert [group for group, _ in sent] == ["herald.t1.k2"] * 4
    assert [[frame[1] for frame in message["frames"]] for _, message in sent] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert all(message["once"] and message["topics"] == ["t"] and not message["inbox"] for _, message in sent)
    sent.clear()
    delivery.push_to_users(tenant_id=1, user_pks=[7], frames=[delivery.LiveFrame("y" * 5000, 1, None)])
    assert [len(message["frames"]) for _, message in sent] == [1]  # one frame over the size still goes
    sent.clear()
    # The size is counted in UTF-8 bytes: 200 characters of "é" are 400 bytes.
    delivery.push_to_topic(tenant_id=1, topic_id=2, frames=[delivery.LiveFrame("é" * 200, n) for n in range(5)])
    assert [len(message["frames"]) for _, message in sent] == [2, 2, 1]


def test_a_message_is_at_most_a_quarter_of_the_slow_client_limit(monkeypatch, settings):
    sent: list[dict] = []
    monkeypatch.setattr(delivery, "_group_send", lambda group, message: sent.append(message))
    settings.HERALD = {**settings.HERALD, "MAX_OUTBOUND_BYTES": 16 * 1024}  # the smallest allowed
    delivery.push_to_topic(tenant_id=1, topic_id=2, frames=[delivery.LiveFrame("z" * 1000, n) for n in range(40)])
    assert [len(message["frames"]) for message in sent] == [4] * 10  # 4,096 bytes each at most


@pytest.mark.django_db(transaction=True)
def test_a_lock_whose_release_fails_is_freed_by_closing_its_session(tenant):
    """A session-level advisory lock outlives a failed unlock: left on a pooled connection, it
    would stop every node from fanning out this tenant's events until a restart."""
    if connection.vendor != "postgresql":
        pytest.skip("session advisory locks are PostgreSQL's (SQLite uses a process-local lock)")
    import psycopg
    from django.db import OperationalError

    def unlock_fails(execute, sql, params, many, context):
        if "pg_advisory_unlock" in sql:
            raise OperationalError("simulated: the unlock did not go through")
        return execute(sql, params, many, context)

    with (
        pytest.raises(OperationalError),
        connection.execute_wrapper(unlock_fails),
        fanout.tenant_lock(tenant.pk) as acquired,
    ):
        assert acquired
    connection.close()  # what the round's thread does when it ends (config.db.in_thread)

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as other:  # another node's session
        taken = other.execute("SELECT pg_try_advisory_lock(%s, %s)", [fanout._ADVISORY_NAMESPACE, tenant.pk]).fetchone()
        assert taken == (True,)
        # Released here, not by the close: a closing session's locks go only when its backend exits.
        other.execute("SELECT pg_advisory_unlock(%s, %s)", [fanout._ADVISORY_NAMESPACE, tenant.pk])
    with fanout.tenant_lock(tenant.pk) as acquired:  # and this process gets it again, too
        assert acquired


def test_a_round_for_named_tenants_does_only_theirs_and_skips_the_tenant_list(
    api, tenant, other_tenant, make_key, client_for
):
    other = client_for(make_key(other_tenant))
    api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    other.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    with CaptureQueriesContext(connection) as queries:
        assert fanout.process_pending([other_tenant.pk]) == 1
    assert not any("DISTINCT" in query["sql"] for query in queries.captured_queries)
    assert Notification.objects.filter(tenant=other_tenant).count() == 1
    assert not Notification.objects.filter(tenant=tenant).exists()  # not named: left for its round
    assert fanout.process_pending([other_tenant.pk]) == 0  # a wake-up whose jobs are done: nothing
    with CaptureQueriesContext(connection) as queries:
        assert fanout.process_pending() == 1  # the sweep asks the outbox, and finds the rest
    assert any("DISTINCT" in query["sql"] for query in queries.captured_queries)


@pytest.mark.asyncio
async def test_the_runner_names_the_woken_tenants_and_sweeps_for_all(monkeypatch, settings):
    """Each round after wake-ups is for their tenants; a wake-up without one (another process's,
    or a stop), the sweep, and the round after a full batch look at every tenant."""
    import asyncio

    settings.HERALD = {**settings.HERALD, "FANOUT_SWEEP_SECONDS": 0.2}
    rounds: list[set[int] | None] = []
    answers = iter([fanout.JOBS_PER_TENANT_ROUND])  # the first round's batch was full

    def recording(tenant_ids=None):
        rounds.append(None if tenant_ids is None else set(tenant_ids))
        return next(answers, 0)

    monkeypatch.setattr(fanout, "process_pending", recording)
    runner = fanout.FanoutRunner(listen_on_layer=False)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop=stop))
    while runner._wake is None:
        await asyncio.sleep(0.01)

    async def settled(count: int) -> None:
        for _ in range(200):
            if len(rounds) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} rounds, got {rounds}")

    runner.wake(7)
    runner.wake(9)
    await settled(2)
    assert rounds == [{7, 9}, None]  # both wake-ups in one round; its full batch: then everyone
    runner.wake(7)
    runner.wake(None)
    await settled(3)
    assert rounds[2] is None
    await settled(4)  # nothing woke it: the sweep, for every tenant
    assert rounds[3] is None
    runner.wake(5)
    await settled(5)
    assert rounds[4] == {5}  # earlier wake-ups are not carried over
    stop.set()
    runner.wake()
    await asyncio.wait_for(task, 5)


def test_a_rounds_live_frames_name_the_events_topics_sorted_by_key(api, tenant, make_topic, run_fanout, monkeypatch):
    """The round reads each event's topics beside its job (one statement); a frame lists them by
    key, whatever order the publisher gave, and goes to each topic's group."""
    zeta, alpha = make_topic(tenant, "zeta"), make_topic(tenant, "alpha")
    pushed: list[tuple[int, list[str], list[str]]] = []

    def record(*, tenant_id, topic_id, frames, topics, once=False):
        pushed.append((topic_id, topics, [orjson.loads(frame.text)["topics"] for frame in frames]))

    monkeypatch.setattr(delivery, "push_to_topic", record)
    assert api.post("/api/v1/events", {"kind": "k", "topics": ["zeta", "alpha"]}, format="json").status_code == 202
    assert api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json").status_code == 202
    assert run_fanout() == 2
    assert sorted(pushed) == sorted([(topic.pk, ["alpha", "zeta"], [["alpha", "zeta"]]) for topic in (zeta, alpha)])
