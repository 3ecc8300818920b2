"""WebSocket routes: /ws/v1/ and a denial for every other path."""

from channels.security.websocket import WebsocketDenier
from django.urls import path, re_path

from notifications.consumers import NotificationConsumer
from notifications.protocol import PATH

websocket_urlpatterns = [
    path(PATH.lstrip("/"), NotificationConsumer.as_asgi()),
    re_path(r"", WebsocketDenier.as_asgi()),
]
