"""Floods and protocol-level abuse against ONE real Herald process (Daphne), while a bystander of
tenant B (bystander.py, a process of its own) stays connected to it the whole module, publishing
to itself ten times a second: every flood must get its documented refusal (4009, 4002, 4029, 429,
413...; raw-client frames that a browser cannot send end only their own connection), and the
bystander must lose nothing and keep its connection. Its publish-to-deliver latency during each
flood is compared with a quiet baseline in the summary printed at the end.

Each attacker connects from a loopback address of its own (127.0.0.x), which Herald sees as its
client IP, so per-IP limits hit the attacker and not the bystander (127.0.0.2) -- as they would on
the internet. Everything is bounded in count and time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from websockets.exceptions import ConnectionClosed

from accounts.models import Tenant
from accounts.services import api_key_create, connection_token_mint, tenant_create
from notifications.models import Event, Notification
from tests.integration.conftest import HeraldProcess, start_herald
from tests.security.arena import Bystander, auth_outcome, close_code, http, ws_connect
from tests.security.figures import FIGURES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Tenant A's lowered limits, so that floods reach them quickly (and their figures are exact).
TENANT_CONNECTIONS, USER_CONNECTIONS = 100, 5
TENANT_PUBLISHES, KEY_PUBLISHES = 60, 40
FRAMES_PER_SECOND = 20
AUTH_TIMEOUT = 2.0
AUTH_FAILURES_PER_IP = 30
# Another tenant's allowed burst: a batch of this many events of 1,000 recipients each.
HEAVY_EVENTS = 10
# WebSocket handshakes to paths that are not Herald's, all refused (403).
DENIED_HANDSHAKES = 200
ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith("postgres")
ON_REDIS = bool(os.environ.get("REDIS_URL"))


@pytest.fixture(autouse=True)
def _isolated_cache() -> None:
    """Overrides tests/conftest.py's: emptying the cache would FLUSHDB the Redis database the
    arena's server uses for its channel layer, connection counts and rate limits mid-module."""


@dataclass
class Arena:
    server: HeraldProcess
    bystander: Bystander
    blocker: Any
    attacker: Tenant
    keys: dict[str, str]

    def db(self, function: Callable[[], Any]) -> Any:
        """Run ORM code from a test, async ones included: in a thread of its own (Django refuses
        the ORM inside an event loop), with a connection closed afterwards."""

        def run() -> Any:
            try:
                return function()
            finally:
                connections.close_all()

        with self.blocker.unblock(), ThreadPoolExecutor(1) as pool:
            return pool.submit(run).result(timeout=30)

    def tokens(self, users: list[str], tenant: Tenant | None = None) -> list[str]:
        owner = tenant or self.attacker
        return self.db(lambda: [connection_token_mint(tenant=owner, user_id=user)[0] for user in users])

    def count(self, model: Any, **filters: Any) -> int:
        return int(self.db(lambda: model.objects.filter(**filters).count()))

    def wait_delivered(self, tenant: Tenant, timeout: float) -> float:
        started = time.monotonic()
        while self.count(Event, tenant=tenant, status__in=["pending", "delivering"]):
            assert time.monotonic() - started < timeout, "fan-out did not finish"
            time.sleep(0.1)
        return time.monotonic() - started


@pytest.fixture(scope="module")
def arena(django_db_setup: Any, django_db_blocker: Any, request: pytest.FixtureRequest) -> Iterator[Arena]:
    """Built once per module, committed for real (the server process reads the same database),
    and flushed afterwards, as a transactional test would be. The server's log is printed if any
    test of the module failed."""
    failed_before = request.session.testsfailed
    server: HeraldProcess | None = None
    bystander: Bystander | None = None
    try:
        with django_db_blocker.unblock():
            attacker = tenant_create(
                slug="attacker",
                max_connections=TENANT_CONNECTIONS,
                max_connections_per_user=USER_CONNECTIONS,
                publishes_per_minute=TENANT_PUBLISHES,
                key_publishes_per_minute=KEY_PUBLISHES,
                client_messages_per_second=FRAMES_PER_SECOND,
            )
            victim = tenant_create(slug="victim")
            keys = {
                name: api_key_create(tenant=attacker, name=name, scopes=["publish", "read"])[1] for name in ("k1", "k2")
            }
            victim_key = api_key_create(tenant=victim, name="bystander", scopes=["publish"])[1]
            victim_token = connection_token_mint(tenant=victim, user_id="watcher", lifetime_seconds=3600)[0]
        server = start_herald(
            "attack-arena",
            HERALD_AUTH_TIMEOUT_SECONDS=str(AUTH_TIMEOUT),
            HERALD_AUTH_FAILURES_PER_IP_PER_MINUTE=str(AUTH_FAILURES_PER_IP),
        )
        bystander = Bystander.start(server, token=victim_token, key=victim_key, user="watcher")
        yield Arena(server=server, bystander=bystander, blocker=django_db_blocker, attacker=attacker, keys=keys)
    finally:
        if bystander is not None:
            bystander.stop()
        if server is not None:
            server.stop()
            if request.session.testsfailed > failed_before:
                print(f"\n----- log of the arena's server (port {server.port}) -----\n{server.log()[-20000:]}")
            server.log_path.unlink(missing_ok=True)
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


async def fresh_rate_window(seconds_needed: float) -> None:
    """Rate limits count in fixed one-minute windows (accounts/ratelimit.py): start a flood whose
    figures must be exact early enough in a window to finish inside it."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        await asyncio.sleep(left + 0.2)


@pytest.mark.django_db  # (also makes pytest-django create the test database when this module runs alone)
def test_00_the_attacker_tenant_has_lowered_limits(arena: Arena) -> None:
    limits = Tenant.objects.filter(slug="attacker").values(
        "max_connections", "max_connections_per_user", "publishes_per_minute", "key_publishes_per_minute"
    )
    assert list(limits) == [
        {
            "max_connections": TENANT_CONNECTIONS,
            "max_connections_per_user": USER_CONNECTIONS,
            "publishes_per_minute": TENANT_PUBLISHES,
            "key_publishes_per_minute": KEY_PUBLISHES,
        }
    ]


def test_01_quiet_baseline(arena: Arena) -> None:
    with arena.bystander.phase("quiet (before any flood)", minimum_seconds=3.0):
        pass


# --- Connections ---------------------------------------------------------------------------------


async def test_connection_flood_300_handshakes_hits_the_tenant_and_user_limits(arena: Arena) -> None:
    users = [f"user{i}" for i in range(30)]
    tokens = arena.tokens(users)
    (newcomer,) = arena.tokens(["newcomer"])
    opened: list[Any] = []
    outcomes: list[tuple[str, int]] = []
    gate = asyncio.Semaphore(100)

    async def handshake(index: int) -> None:
        async with gate:
            socket = await ws_connect(arena.server, source="127.0.0.4")
            code = await auth_outcome(socket, tokens[index % len(tokens)])
            outcomes.append((users[index % len(users)], code))
            if code == 0:
                opened.append(socket)

    started = time.monotonic()
    with arena.bystander.phase("connection flood: 300 handshakes"):
        async with asyncio.timeout(60):
            await asyncio.gather(*(handshake(index) for index in range(300)))
        elapsed = time.monotonic() - started
        codes = Counter(code for _, code in outcomes)
        per_user = Counter(user for user, code in outcomes if code == 0)
        # With the flood's sockets still open, the tenant is full: one more is refused 4009.
        extra = await ws_connect(arena.server, source="127.0.0.4")
        full = await auth_outcome(extra, newcomer)
        for socket in [*opened, extra]:
            await socket.close()
    # Never more than the limits; everyone else refused with 4009 (a client that sent its auth
    # frame at once is never closed 4002, however long the server takes to check it).
    assert codes == {0: TENANT_CONNECTIONS, 4009: 300 - TENANT_CONNECTIONS}, codes
    assert max(per_user.values()) <= USER_CONNECTIONS, per_user
    assert full == (4009 if codes[0] == TENANT_CONNECTIONS else 0)
    # The slots are given back: a new connection is accepted again (presence is released on close).
    async with asyncio.timeout(10):
        while True:
            socket = await ws_connect(arena.server, source="127.0.0.4")
            if await auth_outcome(socket, tokens[0]) == 0:
                await socket.close()
                break
            await asyncio.sleep(0.2)
    FIGURES.tried("flood: WS handshakes (authenticated)", 301)
    FIGURES.flood(
        "connection flood",
        held=True,
        handshakes=300,
        welcomed=codes[0],
        closed_4009=codes[4009],
        closed_4002_while_auth_was_being_checked=codes[4002],
        other=sum(count for code, count in codes.items() if code not in (0, 4009, 4002)),
        max_per_user=max(per_user.values()),
        seconds=round(elapsed, 1),
    )


async def test_unauthenticated_connection_flood_is_closed_4002_after_the_auth_timeout(arena: Arena) -> None:
    async def silent() -> tuple[int, float]:
        socket = await ws_connect(arena.server, source="127.0.0.5")
        opened = time.monotonic()
        try:
            await asyncio.wait_for(socket.recv(), AUTH_TIMEOUT + 10)
        except ConnectionClosed as closed:
            return close_code(closed), time.monotonic() - opened
        return -1, time.monotonic() - opened

    with arena.bystander.phase("300 sockets that never authenticate"):
        async with asyncio.timeout(60):
            results = await asyncio.gather(*(silent() for _ in range(300)))
    codes = Counter(code for code, _ in results)
    slowest = max(seconds for _, seconds in results)
    assert codes == {4002: 300}, codes
    assert slowest < AUTH_TIMEOUT + 3
    FIGURES.tried("flood: WS handshakes (never authenticated)", 300)
    FIGURES.flood(
        "unauthenticated sockets", held=True, sockets=300, closed_4002=codes[4002], slowest_close_s=round(slowest, 1)
    )


# --- Frames --------------------------------------------------------------------------------------


async def frame_flood(arena: Arena, token: str, frames: list[str], source: str) -> dict[str, Any]:
    """Send up to len(frames) frames as fast as possible while reading the answers; stop when the
    server closes the connection."""
    socket = await ws_connect(arena.server, source=source)
    assert await auth_outcome(socket, token) == 0
    answers: Counter[str] = Counter()
    sent, started = 0, time.monotonic()

    async def read() -> int:
        try:
            async for raw in socket:
                answer = json.loads(raw)
                answers[answer.get("code") or answer["type"]] += 1
        except ConnectionClosed as closed:
            return close_code(closed)
        return socket.close_code or 1006

    reader = asyncio.create_task(read())
    try:
        for text in frames:
            await socket.send(text)
            sent += 1
    except ConnectionClosed:
        pass
    async with asyncio.timeout(15):
        code = await reader
    return {"code": code, "sent": sent, "answers": answers, "seconds": time.monotonic() - started}


async def test_frame_flood_is_rate_limited_then_closed_4029(arena: Arena) -> None:
    (token,) = arena.tokens(["spammer"])
    garbage = [
        '{{"type": "ping", "id": {}}}',
        "not json at all {}",
        '{{"type": "mark_all_read", "id": {}}}',
        '{{"type": "subscribe", "topics": ["x{}"]}}',
    ]
    with arena.bystander.phase("frame flood: 1 + 10 clients"):
        pings = [f'{{"type": "ping", "id": {n}}}' for n in range(5000)]
        one = await frame_flood(arena, token, pings, "127.0.0.6")
        many_tokens = arena.tokens([f"spammer{i}" for i in range(10)])
        many = await asyncio.gather(
            *(
                frame_flood(arena, many_tokens[i], [garbage[n % 4].format(n) for n in range(1000)], "127.0.0.6")
                for i in range(10)
            )
        )
    # One client: a burst of twice the rate is answered, then frames are dropped with a
    # rate_limited error now and then, then the connection is closed 4029.
    assert one["code"] == 4029, one
    burst_and_refill = 2 * FRAMES_PER_SECOND + FRAMES_PER_SECOND * one["seconds"] + 1
    assert 0 < one["answers"]["pong"] <= burst_and_refill, one
    assert one["answers"]["rate_limited"] >= 1, one
    assert all(result["code"] == 4029 for result in many), [result["code"] for result in many]
    frames = one["sent"] + sum(result["sent"] for result in many)
    FIGURES.tried("flood: WS frames", frames)
    FIGURES.flood(
        "frame flood",
        held=True,
        clients=11,
        frames_sent=frames,
        answered_pongs=one["answers"]["pong"],
        rate_limited_errors=one["answers"]["rate_limited"],
        closed_4029=1 + sum(result["code"] == 4029 for result in many),
        seconds_to_4029=round(one["seconds"], 2),
    )


# --- Publishes -----------------------------------------------------------------------------------


def publish_many(
    arena: Arena, key: str, bodies: list[tuple[str, Any]], source: str
) -> list[tuple[int, dict[str, str], Any]]:
    """POST each (path, body) concurrently (8 at a time) with `key` from `source`."""
    with ThreadPoolExecutor(8) as pool:
        return list(
            pool.map(lambda item: http(arena.server, "POST", item[0], item[1], credential=key, source=source), bodies)
        )


async def test_publish_flood_is_429_over_the_key_and_tenant_limits_nothing_partially_applied(arena: Arena) -> None:
    await fresh_rate_window(25)
    recipients = [f"reader{i}" for i in range(50)]
    single = ("/api/v1/events", {"kind": "flood.single", "recipients": recipients})
    refused_batch = (
        "/api/v1/events/batch",
        {"events": [{"kind": "flood.refused-batch", "recipients": recipients}] * 11},
    )
    before = arena.count(Event, tenant=arena.attacker)
    loop = asyncio.get_running_loop()
    with arena.bystander.phase("publish flood: 96 requests over the limits"):
        first = await loop.run_in_executor(None, publish_many, arena, arena.keys["k1"], [single] * 50, "127.0.0.7")
        second = await loop.run_in_executor(None, publish_many, arena, arena.keys["k2"], [single] * 10, "127.0.0.7")
        batch = await loop.run_in_executor(None, publish_many, arena, arena.keys["k2"], [refused_batch], "127.0.0.7")
        rest = await loop.run_in_executor(None, publish_many, arena, arena.keys["k2"], [single] * 35, "127.0.0.7")
        delivered_in = arena.wait_delivered(arena.attacker, timeout=30)
    # k1: its own 40 per minute, then 429. k2: its first 10 fit the tenant's 60; the batch of 11
    # would make 61, so none of it is stored; a refused request still counts, so nothing more fits.
    assert Counter(status for status, _, _ in first) == {202: KEY_PUBLISHES, 429: 50 - KEY_PUBLISHES}
    assert Counter(status for status, _, _ in second) == {202: 10}
    assert [status for status, _, _ in batch] == [429]
    assert Counter(status for status, _, _ in rest) == {429: 35}
    for status, headers, body in first + batch + rest:
        if status == 429:
            assert body["error"]["code"] == "rate_limited"
            assert body["error"]["retry_after"] == int(headers["retry-after"]) >= 1
    assert arena.count(Event, tenant=arena.attacker) == before + TENANT_PUBLISHES - 10 == before + 50
    assert arena.count(Event, kind="flood.refused-batch") == 0
    assert arena.count(Notification, event__kind="flood.single") == 50 * len(recipients)
    FIGURES.tried("flood: REST publishes over the limits", 96)
    FIGURES.flood(
        "publish flood",
        held=True,
        requests=96,
        accepted=50,
        refused_429=46,
        stored_events=50,
        refused_batch_rows=0,
        inbox_rows_fanned_out=50 * len(recipients),
        fanout_s=round(delivered_in, 1),
    )


async def test_heavy_fanout_of_another_tenant_within_its_limits(arena: Arena) -> None:
    """Not an attack Herald refuses: a tenant publishing big audiences within its default limits.
    It shares the fan-out with everyone; the bystander's latency during it is what the summary
    shows (see docs/security.md, noisy neighbours)."""
    heavy = arena.db(lambda: tenant_create(slug="heavy"))
    key = arena.db(lambda: api_key_create(tenant=heavy, name="heavy", scopes=["publish"])[1])
    events = [{"kind": "heavy", "recipients": [f"member{i}" for i in range(1000)]} for _ in range(HEAVY_EVENTS)]
    loop = asyncio.get_running_loop()
    with arena.bystander.phase(f"another tenant fans out {HEAVY_EVENTS * 1000:,} rows"):
        status, _, body = await loop.run_in_executor(
            None,
            lambda: http(
                arena.server, "POST", "/api/v1/events/batch", {"events": events}, credential=key, source="127.0.0.8"
            ),
        )
        assert status == 202, body
        seconds = arena.wait_delivered(heavy, timeout=60)
    FIGURES.flood(
        "heavy fan-out of another tenant (allowed)",
        held=True,
        inbox_rows=HEAVY_EVENTS * 1000,
        fanout_s=round(seconds, 1),
    )


# --- Failed authentication -----------------------------------------------------------------------


async def test_failed_authentication_flood_locks_out_that_ip_only(arena: Arena) -> None:
    await fresh_rate_window(20)
    attacker_ip, neighbour_ip = "127.0.0.9", "127.0.0.10"
    (good_token,) = arena.tokens(["legit"])
    forged = good_token[:-4] + ("AAAA" if not good_token.endswith("AAAA") else "BBBB")

    async def attempt(token: str, source: str = attacker_ip) -> int:
        return await auth_outcome(await ws_connect(arena.server, source=source), token)

    outcomes = []
    with arena.bystander.phase("failed-auth flood: 50 forged tokens"):
        for _ in range(AUTH_FAILURES_PER_IP):  # one at a time: the count is exact
            outcomes.append(await attempt(forged))
        later = await asyncio.gather(*(attempt(forged) for _ in range(20)))
        good_after = await attempt(good_token)
        rest_status, headers, rest_body = http(
            arena.server, "GET", "/api/v1/topics", credential=arena.keys["k1"], source=attacker_ip
        )
        neighbour = await attempt(good_token, neighbour_ip)
        neighbour_rest = http(arena.server, "GET", "/api/v1/topics", credential=arena.keys["k1"], source=neighbour_ip)
    assert outcomes == [4001] * AUTH_FAILURES_PER_IP
    assert later == [4029] * 20
    assert good_after == 4029  # even a good token, from that IP, for the rest of the minute
    assert (rest_status, rest_body["error"]["code"]) == (429, "rate_limited") and int(headers["retry-after"]) >= 1
    assert neighbour == 0 and neighbour_rest[0] == 200
    FIGURES.tried("flood: failed authentications", AUTH_FAILURES_PER_IP + 20 + 2)
    FIGURES.flood(
        "failed-authentication flood",
        held=True,
        closed_4001=outcomes.count(4001),
        then_closed_4029=later.count(4029),
        good_token_same_ip="4029",
        rest_same_ip=rest_status,
        other_ip="welcome + 200",
    )


# --- Protocol-level abuse that only a real server sees ---------------------------------------------


async def closed_with(socket: Any, timeout: float = 10) -> int:
    try:
        async with asyncio.timeout(timeout):
            while True:
                await socket.recv()
    except ConnectionClosed as closed:
        return close_code(closed)


def raw_http(server: HeraldProcess, request: bytes, source: str = "127.0.0.11") -> tuple[int, bytes]:
    """Send bytes as they are (no client library would) and read the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer.partition(b"\r\n\r\n")[2]


async def ends_with(arena: Arena, send: Callable[[Any], Any], *, authenticated: bool) -> int:
    """Open a connection (authenticated or not), let `send` abuse it, return how it ended."""
    socket = await ws_connect(arena.server, source="127.0.0.12")
    if authenticated:
        (token,) = arena.tokens(["prober"])
        assert await auth_outcome(socket, token) == 0
    with contextlib.suppress(ConnectionClosed):  # (the server may close while we still send)
        await send(socket)
    return await closed_with(socket)


async def send_invalid_utf8(socket: Any) -> None:
    await socket.send(b'{"type": "ping", "id": "\xc3\x28"}', text=True)


async def send_oversized(socket: Any) -> None:
    await socket.send('{"type": "ping", "pad": "' + "x" * 70_000 + '"}')


async def test_bad_utf8_oversized_and_binary_frames_end_only_that_connection(arena: Arena) -> None:
    """What a raw client can send and a browser cannot: the connection that sends it ends (and only
    that one), the server and the bystander carry on."""
    (token,) = arena.tokens(["prober"])
    results: dict[str, Any] = {}

    async def fragments(*parts: bytes) -> Callable[[Any], Any]:
        async def send(socket: Any) -> None:
            await socket.send(list(parts), text=True)

        return send

    with arena.bystander.phase("protocol abuse: bad UTF-8, 1009, binary"):
        # A text frame that is not UTF-8 (browsers cannot send one, the websockets library can).
        results["invalid UTF-8 before auth"] = await ends_with(arena, send_invalid_utf8, authenticated=False)
        results["invalid UTF-8 after auth"] = await ends_with(arena, send_invalid_utf8, authenticated=True)
        results["invalid UTF-8 across two fragments"] = await ends_with(
            arena, await fragments(b'{"type": "ping", "id": "\xe2\x82', b'\x28"}'), authenticated=True
        )
        # Over 64 KiB, in one frame or in fragments, or a 10 MB frame before auth.
        results["70,000-byte frame"] = await ends_with(arena, send_oversized, authenticated=True)
        results["90,000 bytes in fragments"] = await ends_with(
            arena, await fragments(b'{"type": "ping", "pad": "', *[b"x" * 30_000] * 3, b'"}'), authenticated=True
        )

        async def ten_megabytes(socket: Any) -> None:
            await socket.send("x" * 10_000_000)

        results["10 MB frame before auth"] = await ends_with(arena, ten_megabytes, authenticated=False)
        # Controls: a character split across fragments is fine; a binary frame gets an error frame
        # and the connection stays open.
        socket = await ws_connect(arena.server, source="127.0.0.12")
        assert await auth_outcome(socket, token) == 0
        await socket.send([b'{"type": "ping", "id": "caf\xc3', b'\xa9"}'], text=True)
        results["valid UTF-8 across fragments"] = json.loads(await socket.recv())
        await socket.send(b'{"type": "ping", "id": 1}')
        results["binary frame"] = json.loads(await socket.recv())["code"]
        await socket.send('{"type": "ping", "id": 2}')
        results["after the binary frame"] = json.loads(await socket.recv())
        await socket.close()
    ended = {name: code for name, code in results.items() if isinstance(code, int)}
    assert set(ended.values()) <= {1006, 1007, 1009}, ended  # ended by the WebSocket layer itself
    assert results["valid UTF-8 across fragments"] == {"type": "pong", "id": "caf\u00e9"}
    assert results["binary frame"] == "bad_frame"
    assert results["after the binary frame"] == {"type": "pong", "id": 2}
    FIGURES.tried("real server: WS frames (UTF-8, size, binary)", len(results))
    FIGURES.flood("raw-client frames", held=True, **{name.replace(" ", "_"): code for name, code in ended.items()})


async def test_invalid_utf8_text_frame_is_closed_1007(arena: Arena) -> None:
    assert await ends_with(arena, send_invalid_utf8, authenticated=True) == 1007


async def test_oversized_frame_is_closed_1009_as_documented(arena: Arena) -> None:
    assert await ends_with(arena, send_oversized, authenticated=True) == 1009


async def test_malformed_http_on_a_real_server(arena: Arena) -> None:
    key = arena.keys["k1"]
    host = f"127.0.0.1:{arena.server.port}"

    def request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
        return (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n"
        ).encode() + body

    loop = asyncio.get_running_loop()
    results: dict[str, Any] = {}
    with arena.bystander.phase("malformed HTTP"):
        cases = {
            "invalid UTF-8 body": request("POST", "/api/v1/events", b'{"kind": "\xff", "recipients": ["a"]}'),
            "5 MiB body": request("POST", "/api/v1/events", b'{"data": "' + b"x" * (5 * 1024 * 1024) + b'"}'),
            "invalid UTF-8 in the path": request("GET", "/api/v1/topics/%FF%FE"),
            "a NUL in the path": request("GET", "/api/v1/events/%00"),
            "garbage request line": b"\x16\x03\x01\x02\x00 GARBAGE\r\n\r\n",
        }
        for name, raw in cases.items():
            results[name] = await loop.run_in_executor(None, raw_http, arena.server, raw)
        health = http(arena.server, "GET", "/healthz")
    statuses = {name: status for name, (status, _) in results.items()}
    assert statuses == {
        "invalid UTF-8 body": 400,
        "5 MiB body": 413,
        "invalid UTF-8 in the path": 404,
        "a NUL in the path": 404,
        "garbage request line": 400,
    }
    for name in ("invalid UTF-8 body", "5 MiB body", "invalid UTF-8 in the path", "a NUL in the path"):
        code = json.loads(results[name][1])["error"]["code"]
        assert code == {400: "bad_json", 413: "too_large", 404: "not_found"}[statuses[name]], (name, code)
    assert health[0] == 200 and arena.server.alive()
    FIGURES.tried("real server: malformed HTTP", len(results))


def websocket_handshake(server: HeraldProcess, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


# What Daphne logs after a refused handshake stalled the channel layer.
async def test_refused_websocket_handshakes_do_not_delay_anyone(arena: Arena) -> None:
    loop = asyncio.get_running_loop()
    paths = ["/ws/v2/", "/ws/", "/ws/v1", "/ws/v1/x/", "/api/v1/inbox"] * (DENIED_HANDSHAKES // 5)

    def refuse_all() -> list[int]:
        with ThreadPoolExecutor(8) as pool:
            return list(
                pool.map(lambda path: raw_http(arena.server, websocket_handshake(arena.server, path))[0], paths)
            )

    with arena.bystander.phase(f"{len(paths)} WS handshakes to other paths") as phase:
        statuses = await loop.run_in_executor(None, refuse_all)
    assert statuses == [403] * len(paths)
    FIGURES.tried("real server: WS handshakes to other paths", len(paths))
    assert phase.result is not None
    worst = max(phase.result.latencies)
    # (quiet: ~50 ms; a stalled channel layer: ~5 s)
    assert worst < 2.5, f"the bystander waited up to {worst:.1f} s for its notifications"


def test_a_nul_in_a_topic_key_through_daphne_is_404(arena: Arena) -> None:
    status, _, body = http(arena.server, "GET", "/api/v1/topics/%00", credential=arena.keys["k1"], source="127.0.0.13")
    assert (status, body["error"]["code"]) == (404, "not_found")


def server_errors(arena: Arena) -> list[str]:
    return [line for line in arena.server.log().splitlines() if '"level":"error"' in line or "Traceback" in line]


def test_zz_quiet_after_the_floods(arena: Arena) -> None:
    with arena.bystander.phase("quiet (after all floods)", minimum_seconds=2.0):
        pass
    report = arena.bystander.report()
    assert report["duplicates"] == 0 and report["disconnects"] == []
    assert arena.server.alive()
    # Nothing of all this made the server log an error.
    errors = server_errors(arena)
    assert not errors, "the server logged errors:\n" + "\n".join(errors[:10])
    # ... nor a credential: thousands of tokens and keys were sent, valid, forged and refused.
    log = arena.server.log()
    assert "eyJ" not in log, "a connection token (or its header) was logged"
    assert "hk_" not in log and arena.keys["k1"].split("_", 2)[2] not in log, "an API key was logged"
