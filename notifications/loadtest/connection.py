"""One load-test client socket speaking Herald's WebSocket protocol (docs/protocol.md): connect, send
`auth` (with `since` when resuming), read `welcome`, the replay and `resumed`, all within
--connect-timeout; failures become one exception carrying a short reason for the report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from notifications.loadtest.options import Options

try:  # orjson is one of Herald's own dependencies; parsing every frame is this tool's main cost
    import orjson

    loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover
    loads = json.loads

PONG = '{"type":"pong"}'


class ConnectFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def open_socket(
    options: Options,
    token: str,
    *,
    since: int | None = None,
    on_replayed: Callable[[dict[str, Any], float], None] | None = None,
) -> tuple[ClientConnection, dict[str, Any]]:
    """An authenticated socket listening to the run's topic, and its `resumed` frame. Each notification
    of the replay (between `welcome` and `resumed`) goes to `on_replayed(frame, receive_time)`, or is
    ignored without one. Raises ConnectFailed (reason: timeout, HTTP status, close code, ...)."""
    ws: ClientConnection | None = None
    auth: dict[str, Any] = {"type": "auth", "token": token, "topics": [options.topic]}
    if since is not None:
        auth["since"] = str(since)
    try:
        async with asyncio.timeout(options.connect_timeout):
            ws = await connect(
                options.ws_url,
                ssl=options.ssl_context(),
                open_timeout=None,  # bounded by the timeout above
                ping_interval=None,  # Herald's own heartbeat frames are answered below
                compression=None,
                max_size=2**20,
                close_timeout=2,
                user_agent_header="herald-loadtest",
            )
            await ws.send(json.dumps(auth))
            while True:  # welcome, the replay, then resumed
                raw = await ws.recv(decode=False)
                now = time.monotonic()  # the clock of the `sent` time in each event's data
                frame = loads(raw)
                kind = frame.get("type")
                if kind == "notification" and on_replayed is not None:
                    on_replayed(frame, now)
                elif kind == "resumed":
                    return ws, frame
                elif kind == "error":
                    raise ConnectFailed(f"auth error: {frame.get('code')}")
                elif kind == "ping":
                    await ws.send(PONG)
    except ConnectFailed:
        await close_quietly(ws)
        raise
    except TimeoutError:
        await close_quietly(ws)
        raise ConnectFailed("timeout") from None
    except InvalidStatus as error:
        raise ConnectFailed(f"HTTP {error.response.status_code}") from None
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else 1006
        raise ConnectFailed(f"closed {code}") from None
    except (OSError, InvalidHandshake, ValueError) as error:
        await close_quietly(ws)
        raise ConnectFailed(type(error).__name__) from None
    except asyncio.CancelledError:  # the run is ending: drop the socket without waiting
        if ws is not None:
            ws.transport.abort()
        raise


async def close_quietly(ws: ClientConnection | None) -> None:
    if ws is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), timeout=2)


def parse_cursor(value: Any) -> int | None:
    """A cursor (a string of decimal digits, docs/protocol.md) as a number, or None if it is not one."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
