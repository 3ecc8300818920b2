"""A small client for integration tests: REST over urllib, WebSocket over the `websockets` library."""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


def rest(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    credential: str | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    """One JSON request; `context` verifies an https:// server (e.g. with the cluster's CA)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if credential:
        request.add_header("Authorization", f"Bearer {credential}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


class LiveClient:
    """A real WebSocket client that authenticates and collects notifications."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}
        self.resumed: dict[str, Any] = {}
        self.notifications: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls, ws_url: str, token: str, *, ssl_context: ssl.SSLContext | None = None, **auth: Any
    ) -> LiveClient:
        """Connect (wss:// URLs verify the server with `ssl_context`), authenticate, read up to `resumed`."""
        ws = await connect(ws_url, open_timeout=10, max_size=2**20, ssl=ssl_context)
        client = cls(ws)
        await ws.send(json.dumps({"type": "auth", "token": token, **auth}))
        client.welcome = await client.next_of("welcome")
        client.resumed = await client.next_of("resumed")
        return client

    async def next_frame(self, timeout: float = 10) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if frame["type"] == "ping":
            await self.ws.send('{"type":"pong"}')
        if frame["type"] == "notification":
            self.notifications.append(frame)
        return frame

    async def next_of(self, frame_type: str, timeout: float = 10) -> dict[str, Any]:
        while True:
            frame = await self.next_frame(timeout)
            if frame["type"] == frame_type:
                return frame

    async def collect(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait until `count` notifications have arrived in total."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.notifications) < count:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"got {len(self.notifications)} of {count} notifications")
            await self.next_frame(remaining)
        return self.notifications

    async def close(self) -> None:
        await self.ws.close()
