"""WebSocket routes: /ws/v1/ (end users), /ws/v1/ops/ (the operations dashboard) and a denial
for every other path."""

from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from dashboard.consumers import OpsConsumer
from notifications.consumers import NotificationConsumer
from notifications.protocol import PATH


class PathDenier(WebsocketDenier):
    """Refuses the handshake (HTTP 403). No channel-layer channel: Channels would otherwise give
    every refused handshake a Redis receive of its own, and a stream of them would hold up the
    process's receive lock, and with it the live delivery of every tenant on the node."""

    channel_layer_alias = "herald-none"


websocket_urlpatterns = [
    path(PATH.lstrip("/"), NotificationConsumer.as_asgi()),
    path("ws/v1/ops/", OpsConsumer.as_asgi()),
    re_path(r"", PathDenier.as_asgi()),
]
