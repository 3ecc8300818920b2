"""What a Herald server process runs besides requests: the in-process fan-out loop (embedded
default), started on the first request or at ASGI lifespan startup, and stopped at shutdown."""

from __future__ import annotations

import logging
from typing import Any

from notifications import fanout, hub

logger = logging.getLogger("herald.node")


class HeraldApplication:
    """Outermost ASGI app: makes sure the background work of this process is running."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        fanout.ensure_local_runner()
        await self.inner(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                fanout.ensure_local_runner()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await fanout.stop_local_runner()
                await hub.stop_hub()
                await send({"type": "lifespan.shutdown.complete"})
                return
