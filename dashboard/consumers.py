"""/ws/v1/ops/: the operations dashboard's live figures. Session-authenticated only (tenant staff
and platform admins, same-site Origin); each node's hub pushes its per-second `stats` frame of
the watched tenant (notifications/metrics.py). Tenant staff may watch only their own tenant."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer

from accounts.credentials import session_user
from config.db import in_thread
from dashboard import selectors
from notifications import delivery
from notifications.hub import Hub, get_hub
from notifications.transport import Outgoing


class OpsConsumer(AsyncWebsocketConsumer):
    channel_layer_alias = "herald-none"  # the hub delivers (notifications/hub.py)

    # What the hub expects of a connection (notifications.hub.LiveConnection).
    tenant_id = 0
    user_pk = 0
    signing_kid: str | None = None

    async def connect(self) -> None:
        self.hub: Hub | None = None
        self.group: str | None = None
        self.last_received = time.monotonic()
        self.closing = False
        self.tenants: dict[str, int] = {}
        if self.scope.get("herald_session_allowed"):
            self.tenants = {slug: pk for pk, slug in await in_thread(self._watchable)()}
        if not self.tenants:
            await self.close()  # before accept: the handshake is refused with 403
            return
        await self.accept()
        self.hub = await get_hub()
        await self._send({"type": "tenants", "tenants": sorted(self.tenants)})

    def _watchable(self) -> list[tuple[int, str]]:
        return selectors.watchable_tenants(user=session_user(self.scope.get("session")))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.last_received = time.monotonic()
        try:
            frame = orjson.loads(text_data or "")
        except orjson.JSONDecodeError:
            frame = None
        if not isinstance(frame, dict) or frame.get("type") != "watch" or frame.get("tenant") not in self.tenants:
            await self._send({"type": "error", "code": "invalid", "message": "Send {type: watch, tenant: <slug>}."})
            return
        assert self.hub is not None
        if self.group is not None:
            self.hub.leave(self, self.group)
        self.tenant_id = self.tenants[frame["tenant"]]
        self.group = delivery.group_for_ops(self.tenant_id)
        await self.hub.join(self, self.group)
        await self._send({"type": "watching", "tenant": frame["tenant"]})

    async def disconnect(self, code: int) -> None:
        self.closing = True
        if self.hub is not None and self.group is not None:
            self.hub.leave(self, self.group)

    def push(self, frames: Outgoing, inbox: bool, once: bool = False) -> None:
        # One small frame per node per second: sending it from a task of its own is cheap.
        if not self.closing:
            self.sending = asyncio.ensure_future(self._send_texts(frames.texts))

    async def _send_texts(self, texts: tuple[str, ...]) -> None:
        for text in texts:
            await self.send(text_data=text)

    async def close_for(self, code: int, reason: str) -> None:
        if not self.closing:
            self.closing = True
            await self.close(code=code)

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=orjson.dumps(frame).decode())
