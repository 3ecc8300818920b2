"""Django's HTTP side under ASGI (config/http.py): the middleware chain and the view run in sync
mode, in one thread hop per request, and a request still gets everything Django's own ASGI handler
gives it: every middleware on both halves, the request signals, the JSON body."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction
from django.core.signals import request_finished, request_started

from config.http import SyncChainASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_chain_is_loaded_in_sync_mode():
    handler = SyncChainASGIHandler()
    assert not iscoroutinefunction(handler._middleware_chain)


def request(
    app: Any, *, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]], client_port: int = 50000
) -> Any:
    """A coroutine that sends one request to the ASGI app and returns what the app sent back."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", client_port),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop()
        await asyncio.sleep(30)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    async def run() -> list[dict]:
        await app(scope, receive, send)
        return sent

    return run()


def call(app: Any, *, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[dict, bytes]:
    sent = asyncio.run(asyncio.wait_for(request(app, method=method, path=path, body=body, headers=headers), 20))
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return start, body


def test_a_publish_through_the_asgi_application(tenant, make_key, make_topic):
    # Django's side of config.asgi.application (without Herald's wrapper, which would start a
    # fan-out loop and a hub on each test's short-lived event loop).
    from config.asgi import django_http as application

    make_topic(tenant, "news")
    secret = make_key(tenant)
    signals: list[str] = []

    def started(**kwargs: Any) -> None:
        signals.append("started")

    def finished(**kwargs: Any) -> None:
        signals.append("finished")

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        start, body = call(
            application,
            method="POST",
            path="/api/v1/events",
            body=json.dumps({"kind": "k", "topics": ["news"]}).encode(),
            headers=[
                (b"content-type", b"application/json"),
                (b"authorization", f"Bearer {secret}".encode()),
                (b"x-request-id", b"asgi-test-1"),
            ],
        )
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    assert start["status"] == 202, body
    assert json.loads(body) == {"id": 1}
    headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    assert headers["x-request-id"] == "asgi-test-1"  # the outermost middleware (request log)
    assert headers["x-frame-options"] == "DENY"  # the innermost of Django's own
    assert headers["x-content-type-options"] == "nosniff"  # security middleware
    # request_finished is what hands the request's pooled database connection back.
    assert signals == ["started", "finished"]


def unauthorised_publish(application: Any) -> tuple[dict, bytes]:
    return call(
        application,
        method="POST",
        path="/api/v1/events",
        body=b"{}",
        headers=[(b"content-type", b"application/json"), (b"authorization", b"Bearer hk_0000000000_nope")],
    )


def test_an_error_is_json_through_the_asgi_application(tenant):
    from config.asgi import django_http as application

    start, body = unauthorised_publish(application)
    assert start["status"] == 401
    assert json.loads(body)["error"]["code"] == "unauthorized"


def test_loading_the_application_freezes_what_it_imported():
    """Full garbage collections walk every tracked object and stall the event loop meanwhile;
    what the server imported at start-up is moved out of their way (config/asgi.py)."""
    import gc

    import config.asgi  # noqa: F401

    assert gc.get_freeze_count() > 10_000


def test_loading_the_application_imports_what_the_first_request_would_and_connects_to_nothing():
    """config.warmup: the URLconf, DRF's configured classes and the middleware's backends are
    imported while the process starts (the first request took ~100 ms more without it), and
    loading the application still needs neither the database nor Redis (here: closed ports)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    wanted = [
        "config.urls",
        "notifications.api.views",
        "drf_spectacular.views",
        "rest_framework.renderers",
        "rest_framework.parsers",
        "accounts.authentication",
        "django.contrib.messages.storage.fallback",
        "django.core.cache.backends.redis",
        "psycopg_pool",
    ]
    script = (
        "import sys, config.asgi; "
        f"missing = [name for name in {wanted!r} if name not in sys.modules]; "
        "print('missing:', missing)"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "warm-up-test-secret-key-0123456789abcdef0123456789abcdef",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": "postgres://herald:herald@127.0.0.1:1/herald",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "LOG_LEVEL": "WARNING",
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "missing: []" in result.stdout


def test_a_request_runs_its_sync_work_in_one_thread_which_the_next_request_reuses(tenant):
    """Django's guarantee (one thread per request for everything sync: the request signals, the
    chain, the view) holds, and the thread is not started anew for every request."""
    application = SyncChainASGIHandler()
    seen: list[tuple[str, int]] = []

    def started(**kwargs: Any) -> None:
        seen.append(("started", threading.get_ident()))

    def finished(**kwargs: Any) -> None:
        seen.append(("finished", threading.get_ident()))

    request_started.connect(started)
    request_finished.connect(finished)
    try:
        assert unauthorised_publish(application)[0]["status"] == 401
        starts_before = threading.active_count()
        assert unauthorised_publish(application)[0]["status"] == 401
        assert threading.active_count() == starts_before  # no thread started or left behind
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    assert [name for name, _ in seen] == ["started", "finished", "started", "finished"]
    threads = {ident for _, ident in seen}
    assert len(threads) == 1  # both requests, both signals: one thread...
    assert threading.get_ident() not in threads  # ...which is not the event loop's


def test_requests_in_flight_at_once_have_threads_of_their_own(tenant):
    """Two requests whose sync work overlaps: each needs the other to have started (a barrier in
    request_started), which could never happen if they shared a thread."""
    application = SyncChainASGIHandler()
    barrier = threading.Barrier(2, timeout=10)
    threads: list[int] = []

    def started(**kwargs: Any) -> None:
        barrier.wait()  # raises BrokenBarrierError after 10 s if the other request never starts
        threads.append(threading.get_ident())

    async def both() -> list[list[dict]]:
        requests = [
            request(application, method="GET", path="/api/v1/topics", body=b"", headers=[], client_port=50000 + index)
            for index in range(2)
        ]
        return list(await asyncio.wait_for(asyncio.gather(*requests), timeout=20))

    request_started.connect(started)
    try:
        results = asyncio.run(both())
    finally:
        request_started.disconnect(started)
    assert [sent[0]["status"] for sent in results] == [401, 401]
    assert len(set(threads)) == 2
