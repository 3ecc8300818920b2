"""Helpers for consumer tests: an authenticated WebsocketCommunicator and frame collection."""

from __future__ import annotations

from typing import Any

from channels.testing import WebsocketCommunicator

from config.asgi import application


class Socket:
    """A WebsocketCommunicator speaking Herald's protocol."""

    def __init__(self, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.comm = WebsocketCommunicator(application, "/ws/v1/", headers=headers or [])

    async def open(self) -> Socket:
        connected, _ = await self.comm.connect(timeout=5)
        assert connected
        return self

    async def send(self, frame: dict[str, Any]) -> None:
        await self.comm.send_json_to(frame)

    async def send_text(self, text: str) -> None:
        await self.comm.send_to(text_data=text)

    async def receive(self, timeout: float = 5) -> dict[str, Any]:
        return await self.comm.receive_json_from(timeout=timeout)

    async def receive_type(self, frame_type: str, timeout: float = 5) -> dict[str, Any]:
        """The next frame of this type, skipping server pings."""
        while True:
            frame = await self.receive(timeout)
            if frame["type"] == frame_type:
                return frame
            assert frame["type"] == "ping", f"expected {frame_type}, got {frame}"

    async def nothing(self, wait: float = 0.3) -> bool:
        """True if no frame arrives within `wait` seconds (without cancelling the application,
        which a timed-out receive would do)."""
        return await self.comm.receive_nothing(timeout=wait)

    async def closed_with(self, timeout: float = 5) -> int:
        """Wait for the server to close the socket; return the close code."""
        while True:
            message = await self.comm.receive_output(timeout=timeout)
            if message["type"] == "websocket.close":
                return int(message.get("code", 1000))

    async def auth(
        self, token: str | None = None, **fields: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        """Authenticate; return (welcome, replayed notifications, resumed)."""
        frame: dict[str, Any] = {"type": "auth", **fields}
        if token is not None:
            frame["token"] = token
        await self.send(frame)
        welcome = await self.receive_type("welcome")
        replayed = []
        while True:
            frame = await self.receive()
            if frame["type"] == "resumed":
                return welcome, replayed, frame
            if frame["type"] == "notification":
                replayed.append(frame)

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a frame with a request id; return the matching ack or error."""
        await self.send(frame)
        while True:
            answer = await self.receive()
            if answer["type"] in ("ack", "error") and answer.get("id") == frame.get("id"):
                return answer

    async def close(self) -> None:
        await self.comm.disconnect()


async def connect(token: str | None = None, **fields: Any) -> tuple[Socket, dict[str, Any]]:
    socket = await Socket().open()
    welcome, _, _ = await socket.auth(token, **fields)
    return socket, welcome
