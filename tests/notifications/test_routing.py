"""How a connection reaches its consumer: HeraldApplication by scope type, WebSocketRoutes by
exact path, and what the consumer lets go of once the handshake is answered on a real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

import pytest
import uvicorn
import websockets
from channels.testing import WebsocketCommunicator

from config.asgi import application
from notifications import hub
from notifications.node import HeraldApplication
from notifications.routing import WebSocketRoutes
from notifications.transport import UvicornSocket


class Recorder:
    """A stand-in consumer class: records the scope it was run with."""

    seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        Recorder.seen.append(scope)


@pytest.mark.parametrize(
    ("path", "root_path", "routed"),
    [
        ("/ws/v1/", "", True),
        ("/herald/ws/v1/", "/herald", True),  # served under a prefix: the prefix is not the route's
        ("/herald/ws/v1/", "/herald/", True),
        ("//ws/v1/", "", True),  # repeated leading slashes count as one, as with Channels' URLRouter
        ("/ws/v1", "", False),  # exact paths only
        ("/ws/v1/x", "", False),
        ("/herald/ws/v1/", "", False),
    ],
)
async def test_a_path_runs_its_consumer_or_the_denier(path, root_path, routed, monkeypatch):
    Recorder.seen = []
    denied: list[str] = []

    class Denier:
        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            denied.append(scope["path"])

    monkeypatch.setattr("notifications.routing.PathDenier", Denier)
    scope = {"type": "websocket", "path": path, "root_path": root_path}
    await WebSocketRoutes({"/ws/v1/": Recorder})(scope, None, None)  # type: ignore[dict-item]
    assert (len(Recorder.seen), len(denied)) == ((1, 0) if routed else (0, 1))
    if routed:
        assert Recorder.seen[0] is scope  # no copy of the scope per connection


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_stack")
async def test_unknown_paths_are_refused_at_the_handshake_and_known_ones_accepted():
    for path, accepted in (("/ws/v2/", False), ("/ws/v1", False), ("/", False), ("/ws/v1/", True)):
        socket_ = WebsocketCommunicator(application, path)
        connected, _ = await socket_.connect()
        assert connected is accepted, path
        await socket_.disconnect()


async def test_a_scope_type_without_an_app_is_an_error():
    app = HeraldApplication(http=Recorder(), websocket=Recorder())
    with pytest.raises(ValueError, match="No application configured for scope type 'webtransport'"):
        await app({"type": "webtransport"}, None, None)


@contextlib.asynccontextmanager
async def _uvicorn() -> Any:
    """Herald's application on a real uvicorn (the production default's WebSocket protocol) in
    this event loop, on a loopback port of its own."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        application, ws="websockets-sansio", http="h11", lifespan="off", log_level="warning", loop="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        for _ in range(200):  # <= 10 s to start
            if server.started:
                break
            await asyncio.sleep(0.05)
        assert server.started
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
        listener.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_stack")
async def test_uvicorn_lets_go_of_the_handshake_once_it_is_answered(tenant, make_token):
    token = await asyncio.to_thread(make_token, tenant, "alice")
    async with _uvicorn() as port, websockets.connect(f"ws://127.0.0.1:{port}/ws/v1/", open_timeout=10) as client:
        await client.send(json.dumps({"type": "auth", "token": token}))
        frames = [json.loads(await asyncio.wait_for(client.recv(), 10)) for _ in range(2)]
        assert [frame["type"] for frame in frames] == ["welcome", "resumed"]
        node_hub = hub.current_hub()
        assert node_hub is not None
        (connection,) = [c for group in node_hub.by_user.values() for c in group]
        assert isinstance(connection.direct, UvicornSocket)
        protocol = connection.direct.protocol
        # Released: the request's and response's headers, kept by uvicorn for the socket's life.
        assert protocol.handshake_complete and protocol.request is None and protocol.response is None
        # ... and the socket still works both ways afterwards.
        await client.send(json.dumps({"type": "ping", "id": "p1"}))
        answer = json.loads(await asyncio.wait_for(client.recv(), 10))
        assert answer["type"] == "pong"
