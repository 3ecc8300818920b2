"""WebSocket routes: /ws/v1/ (end users), /ws/v1/ops/ (the operations dashboard) and a denial
for every other path."""

from __future__ import annotations

from typing import Any

from channels.consumer import AsyncConsumer
from channels.security.websocket import WebsocketDenier

from dashboard.consumers import OpsConsumer
from notifications.consumers import NotificationConsumer
from notifications.protocol import PATH


class PathDenier(WebsocketDenier):
    """Refuses the handshake (HTTP 403). No channel-layer channel: Channels would otherwise give
    every refused handshake a Redis receive of its own, and a stream of them would hold up the
    process's receive lock, and with it the live delivery of every tenant on the node."""

    channel_layer_alias = "herald-none"


class WebSocketRoutes:
    """Runs the consumer of the handshake's path, or PathDenier. The path must match exactly once
    the ASGI root_path, if any, and repeated leading slashes are taken off (as Channels' URLRouter
    does). Channels' URLRouter and as_asgi() would each keep a suspended coroutine, and URLRouter
    one more copy of the scope, for the whole life of every socket: ~0.5 KB of a node's memory per
    idle connection (docs/performance.md, "Memory")."""

    def __init__(self, routes: dict[str, type[AsyncConsumer]]) -> None:
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        path = "/" + path.lstrip("/")
        consumer_class = self.routes.get(path, PathDenier)
        await consumer_class()(scope, receive, send)


websocket_routes = WebSocketRoutes({PATH: NotificationConsumer, "/ws/v1/ops/": OpsConsumer})
