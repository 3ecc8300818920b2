"""WebSocket routes: /ws/v1/ (end users), /ws/v1/ops/ (the operations dashboard) and a denial
for every other path."""

from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from dashboard.consumers import OpsConsumer
from notifications.consumers import NotificationConsumer
from notifications.protocol import PATH

websocket_urlpatterns = [
    path(PATH.lstrip("/"), NotificationConsumer.as_asgi()),
    path("ws/v1/ops/", OpsConsumer.as_asgi()),
    re_path(r"", WebsocketDenier.as_asgi()),
]
