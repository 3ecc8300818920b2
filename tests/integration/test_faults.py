"""Fault tests with real processes: a node stopped or killed mid-stream, Redis restarted,
PostgreSQL cut off, a client offline for a while, the fan-out worker killed mid-batch. Each is
bounded in time and records its figures (printed in the terminal summary; docs/reliability.md)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from accounts.models import EndUser
from accounts.services import api_key_create, tenant_create
from notifications.models import Event, FanoutJob, Notification
from tests.integration.client import LiveClient, rest
from tests.integration.conftest import ROOT, HeraldProcess, base_env, wait_until
from tests.integration.faults import PrivateRedis, ResumingClient, TcpProxy, record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def acme(transactional_db) -> str:
    tenant = tenant_create(slug="acme", name="Acme")
    return api_key_create(tenant=tenant, name="faults", scopes=["publish", "read", "admin"])[1]


def mint(base: str, key: str, user_id: str) -> str:
    status, body = rest(base, "POST", "/api/v1/tokens", {"user_id": user_id, "ttl_seconds": 3600}, key)
    assert status == 201, body
    return str(body["token"])


class Publisher:
    """Publishes one event to every client user every `interval` seconds, round-robin over the
    nodes still answering; keeps the ids of the publishes answered 202, counts the others."""

    def __init__(self, nodes: list[HeraldProcess], key: str, users: list[str], interval: float = 0.05) -> None:
        self.nodes, self.key, self.users, self.interval = nodes, key, users, interval
        self.accepted: list[int] = []
        self.refused: dict[int, int] = {}
        self.failed = 0
        self.turn = 0

    def publish_once(self) -> None:
        for _ in range(len(self.nodes)):
            node = self.nodes[self.turn % len(self.nodes)]
            self.turn += 1
            try:
                status, body = rest(
                    node.url,
                    "POST",
                    "/api/v1/events",
                    {"kind": "fault", "data": {"n": len(self.accepted)}, "recipients": self.users},
                    self.key,
                )
            except OSError:
                continue  # node down: try the next one (nothing was accepted)
            if status == 202:
                self.accepted.append(body["id"])
            else:
                self.refused[status] = self.refused.get(status, 0) + 1
                assert status == 503 and body["error"]["code"] == "unavailable", (status, body)
            return
        self.failed += 1

    async def run(self, count: int, on_index: dict[int, Callable[[], Any]] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for index in range(count):
            if on_index and index in on_index:
                result = on_index[index]()
                if asyncio.iscoroutine(result):
                    await result
            await loop.run_in_executor(None, self.publish_once)
            await asyncio.sleep(self.interval)


async def open_clients(nodes: list[HeraldProcess], key: str, count: int) -> list[ResumingClient]:
    clients = []
    for index in range(count):
        first = nodes[index % len(nodes)]
        others = [node for node in nodes if node is not first]
        client = ResumingClient(
            urls=[first.ws_url] + [node.ws_url for node in others],
            token=mint(first.url, key, f"user{index}"),
            name=f"user{index}",
        )
        client.start()
        clients.append(client)
    for client in clients:
        await asyncio.wait_for(client.connected.wait(), 10)
    return clients


async def settle(clients: list[ResumingClient], ids: list[int], timeout: float = 30) -> float:
    started = time.monotonic()
    for client in clients:
        await client.wait_for(set(ids), timeout)
    return round(time.monotonic() - started, 2)


def check_exactly_once(clients: list[ResumingClient], ids: list[int]) -> None:
    for client in clients:
        assert set(client.received) == set(ids), client.name
        assert client.in_order(), f"{client.name} saw cursors out of order"


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
async def test_node_stopped_mid_stream_loses_nothing(herald_processes, acme, redis_url, how):
    nodes = [herald_processes("node-a"), herald_processes("node-b")]
    clients = await open_clients(nodes, acme, 6)
    publisher = Publisher(nodes, acme, [c.name for c in clients])
    stopped_at: list[float] = []

    def stop_node_a() -> None:
        stopped_at.append(time.monotonic())
        if how == "sigterm":
            nodes[0].stop(signal.SIGTERM)
        else:
            nodes[0].kill()

    await publisher.run(60, on_index={20: stop_node_a})
    drained = await settle(clients, publisher.accepted, timeout=60)
    moved = [c for c in clients if c.reconnects]
    for client in clients:
        await client.stop()
    check_exactly_once(clients, publisher.accepted)
    # The clients of node A came back on node B (the first close each saw is the node going away;
    # later ones, if any, are reconnect attempts that hit the stopped node).
    assert sorted(c.name for c in moved) == ["user0", "user2", "user4"], [(c.name, c.close_codes) for c in clients]
    codes = {c.close_codes[0] for c in moved}
    assert codes == ({4012} if how == "sigterm" else {1006})
    record(
        f"fault 1 node {how}",
        events=len(publisher.accepted),
        clients=len(clients),
        lost=0,
        duplicates_before_dedupe=sum(c.duplicates for c in clients),
        refused=publisher.refused or 0,
        reconnected=len(moved),
        close_codes=sorted(codes),
        settle_s=drained,
    )


async def test_redis_restart_mid_stream_recovers_without_restarting_nodes(herald_processes, acme, transactional_db):
    redis = PrivateRedis()
    redis.start()
    try:
        env = {"REDIS_URL": redis.url, "HERALD_REDIS_PREFIX": "herald-fault"}
        nodes = [herald_processes("node-a", **env), herald_processes("node-b", **env)]
        clients = await open_clients(nodes, acme, 4)
        publisher = Publisher(nodes, acme, [c.name for c in clients])
        outage: dict[str, float] = {}

        async def restart_redis() -> None:
            redis.kill()
            outage["down"] = time.monotonic()
            await asyncio.sleep(1.5)
            redis.start()
            outage["up"] = time.monotonic()

        await publisher.run(60, on_index={20: restart_redis})
        drained = await settle(clients, publisher.accepted, timeout=40)
        for client in clients:
            await client.stop()
        check_exactly_once(clients, publisher.accepted)
        assert all(node.alive() for node in nodes)
        record(
            "fault 2 redis restart",
            events=len(publisher.accepted),
            clients=len(clients),
            lost=0,
            refused_503=publisher.refused.get(503, 0),
            duplicates_before_dedupe=sum(c.duplicates for c in clients),
            outage_s=round(outage["up"] - outage["down"], 2),
            settle_s=drained,
        )
    finally:
        redis.stop()


async def test_postgres_unreachable_answers_503_keeps_sockets_and_recovers(herald_processes, acme):
    settings = connection.settings_dict
    proxy = TcpProxy(int(settings["PORT"] or 5432)) if connection.vendor == "postgresql" else None
    if proxy is None:
        pytest.skip("needs PostgreSQL (DATABASE_URL)")
    try:
        url = f"postgres://{settings['USER']}:{settings['PASSWORD']}@127.0.0.1:{proxy.port}/{settings['NAME']}"
        node = herald_processes("node", DATABASE_URL=url)
        token = mint(node.url, acme, "alice")
        client = await LiveClient.open(node.ws_url, token)
        before = await sync_to_async(Event.objects.count)()
        proxy.cut()
        started = time.monotonic()
        status, body = rest(node.url, "POST", "/api/v1/events", {"kind": "k", "recipients": ["alice"]}, acme)
        answered_in = round(time.monotonic() - started, 2)
        assert status == 503 and body["error"]["code"] == "unavailable"
        assert await sync_to_async(Event.objects.count)() == before  # nothing half-written
        await client.ws.send('{"type":"ping","id":"still-open"}')
        assert (await client.next_of("pong"))["id"] == "still-open"
        proxy.restore()
        recovered = time.monotonic()
        wait_until(lambda: rest(node.url, "GET", "/readyz")[0] == 200, 20, "readyz after PostgreSQL returns", 0.2)
        status, body = rest(node.url, "POST", "/api/v1/events", {"kind": "k", "recipients": ["alice"]}, acme)
        assert status == 202
        (frame,) = await client.collect(1)
        assert frame["id"] == body["id"]
        record(
            "fault 3 postgresql cut",
            publish_during_outage=f"503 in {answered_in}s",
            socket="stayed open",
            half_written=0,
            recovery_s=round(time.monotonic() - recovered, 2),
        )
        await client.close()
    finally:
        proxy.close()


async def test_client_offline_for_a_while_gets_what_it_missed(herald_processes, acme):
    node = herald_processes("node")
    client = ResumingClient(urls=[node.ws_url], token=mint(node.url, acme, "alice"), name="alice")
    client.start()
    await asyncio.wait_for(client.connected.wait(), 10)
    publisher = Publisher([node], acme, ["alice"], interval=0.01)
    await publisher.run(5)
    await client.wait_for(set(publisher.accepted), 10)
    await client.stop()
    await publisher.run(30)  # while alice is offline
    back = ResumingClient(
        urls=[node.ws_url],
        token=client.token,
        name="alice-back",
        cursor=client.cursor,
        received=dict(client.received),
        order=list(client.order),
    )
    started = time.monotonic()
    back.start()
    await back.wait_for(set(publisher.accepted), 10)
    await back.stop()
    check_exactly_once([back], publisher.accepted)
    assert back.not_recovered == 0
    catch_up = round(time.monotonic() - started, 2)

    # Offline for longer than the tenant keeps events: the server says so instead of replaying
    # a backlog with holes.
    await publisher.run(5)
    await sync_to_async(_expire_everything)()
    late = ResumingClient(urls=[node.ws_url], token=client.token, name="alice-late", cursor=back.cursor)
    late.start()
    await asyncio.wait_for(late.connected.wait(), 10)
    await asyncio.sleep(0.2)
    await late.stop()
    assert late.not_recovered == 1 and not late.received
    record(
        "fault 4 client offline",
        events=len(publisher.accepted) - 5,
        missed_while_offline=30,
        lost=0,
        duplicates_before_dedupe=back.duplicates,
        catch_up_s=catch_up,
        beyond_retention="recovered:false",
    )


def _expire_everything() -> None:
    from datetime import timedelta
    from io import StringIO

    from django.core.management import call_command
    from django.utils import timezone

    Event.objects.update(created_at=timezone.now() - timedelta(days=365))
    call_command("herald_cleanup", stdout=StringIO())


def test_fanout_worker_killed_mid_batch_leaves_exactly_one_row_each(herald_processes, acme, redis_url):
    tenant_id = EndUser._meta.get_field("tenant").related_model.objects.get(slug="acme").pk
    users = 30_000
    EndUser.objects.bulk_create(
        [EndUser(tenant_id=tenant_id, external_id=f"u{i}") for i in range(users)], batch_size=5000
    )
    env = {"HERALD_FANOUT_MODE": "worker", "HERALD_FANOUT_BATCH_SIZE": "500"}
    node = herald_processes("web", **env)

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "manage.py", "herald_worker"],
            cwd=ROOT,
            env=base_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    worker = start_worker()
    try:
        status, body = rest(node.url, "POST", "/api/v1/events", {"kind": "all", "broadcast": True}, acme)
        assert status == 202
        wait_until(lambda: Notification.objects.count() >= 2000, 60, "fan-out under way", 0.01)
        worker.kill()  # kill -9 mid-batch
        worker.wait(5)
        rows_at_kill = Notification.objects.count()
        assert FanoutJob.objects.filter(event__number=body["id"]).exists()
        assert rows_at_kill < users
        started = time.monotonic()
        worker = start_worker()
        wait_until(lambda: not FanoutJob.objects.exists(), 90, "fan-out finished after restart", 0.1)
        assert Notification.objects.filter(event__number=body["id"]).count() == users
        assert Notification.objects.values("user").distinct().count() == users
        record(
            "fault 6 worker killed mid-batch",
            recipients=users,
            rows_at_kill=rows_at_kill,
            rows_after_restart=users,
            duplicates=0,
            finish_after_restart_s=round(time.monotonic() - started, 2),
        )
    finally:
        worker.terminate()
        worker.wait(15)


async def test_node_killed_behind_nginx_loses_nothing(cluster_factory, acme):
    """Fault 1 in the production layout: clients connect to nginx (wss://, certificate verified),
    nginx spreads them over two nodes, one node is killed mid-stream; nginx sends the reconnecting
    clients to the survivor and they resume."""
    cluster = cluster_factory(nodes=2, workers=1, rate_limits=False)
    clients = []
    for index in range(6):
        client = ResumingClient(
            urls=[cluster.ws_url],
            token=cluster.mint(acme, f"user{index}"),
            name=f"user{index}",
            ssl=cluster.ssl_context(),
        )
        client.start()
        clients.append(client)
    for client in clients:
        await asyncio.wait_for(client.connected.wait(), 15)
    users = [client.name for client in clients]
    accepted: list[int] = []
    loop = asyncio.get_running_loop()
    killed_at = 0.0
    for index in range(60):
        if index == 20:
            killed_at = time.monotonic()
            cluster.kill_node(0)
        status, body = await loop.run_in_executor(
            None, lambda: cluster.rest("POST", "/api/v1/events", {"kind": "fault", "recipients": users}, acme)
        )
        if status == 202:
            accepted.append(body["id"])
        else:
            assert status in (502, 503), (status, body)  # refused, never accepted and lost
        await asyncio.sleep(0.05)
    drained = await settle(clients, accepted, timeout=60)
    moved = [client for client in clients if client.reconnects]
    for client in clients:
        await client.stop()
    check_exactly_once(clients, accepted)
    assert moved, "nobody was on the killed node: nginx did not spread the clients"
    record(
        "fault 1 node kill -9 behind nginx",
        events=len(accepted),
        clients=len(clients),
        lost=0,
        duplicates_before_dedupe=sum(c.duplicates for c in clients),
        reconnected=len(moved),
        recovery_s=round(max(c.last_welcome_at for c in moved) - killed_at, 2),
        settle_s=drained,
    )
