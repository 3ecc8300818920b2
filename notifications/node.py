"""What a Herald server process runs besides requests: the in-process fan-out loop (embedded
default), started on the first request or at ASGI lifespan startup, and stopped at shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from notifications import fanout, hub, protocol

logger = logging.getLogger("herald.node")

# How long a stopping node waits for its clients to go after telling them to reconnect elsewhere.
# Clients close at once when they receive the close frame; 10 s covers slow networks.
SHUTDOWN_GRACE_SECONDS = 10.0


async def shutdown(grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
    """Graceful stop of this process's Herald side: close every socket with 4012 ("reconnect
    elsewhere"; clients resume from their cursor on another node, so nothing is lost), wait for
    them to go (bounded), then let the fan-out loop finish the batch in hand and stop."""
    node_hub = hub.current_hub()
    if node_hub is not None:
        closed = await node_hub.close_all(protocol.CloseCode.SERVICE_RESTART, "server restarting: reconnect")
        logger.info("shutting down: closing sockets", extra={"connections": closed})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while node_hub.connection_count and loop.time() < deadline:  # noqa: ASYNC110 (bounded poll)
            await asyncio.sleep(0.05)
    await fanout.stop_local_runner()
    await hub.stop_hub()
    logger.info("shut down")


class HeraldApplication:
    """Outermost ASGI app: makes sure the background work of this process is running, and hands
    each connection to the app of its protocol (what Channels' ProtocolTypeRouter does, without
    one more coroutine kept suspended by every WebSocket)."""

    def __init__(self, *, http: Any, websocket: Any) -> None:
        self.apps = {"http": http, "websocket": websocket}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        app = self.apps.get(scope["type"])
        if app is None:
            raise ValueError(f"No application configured for scope type {scope['type']!r}")
        fanout.ensure_local_runner()
        if hub.current_hub() is None:
            # Start the hub with the first request, not the first WebSocket: a node that so far
            # served only REST must still report its figures (and join the cluster's presence).
            self._hub_starting = asyncio.ensure_future(hub.get_hub())
        await app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                fanout.ensure_local_runner()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
