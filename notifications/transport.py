"""Writing live frames to a socket: the fast path on uvicorn and Daphne, a bounded queue elsewhere.

On the two servers Herald runs on (uvicorn with its `websockets-sansio` WebSocket protocol, and
Daphne) the hub bypasses the ASGI send of every connection: frames are framed ONCE per layer
message (`Outgoing.wire`) and the same bytes are written to each socket's transport, which never
blocks. That is also where a slow consumer shows: the bytes it has not read pile up in its
transport buffer, which `write()` reports, so the consumer can close it before it eats the node's
memory. Both servers write whole frames per call, so frames Herald writes this way never
interleave with the server's own (pings, close).

On any other ASGI server (Channels' test communicator, say) frames go through the ASGI send, from
a per-connection writer task fed by a bounded queue of frames, so a client that stops reading
blocks only its own writer and is closed when its queue is full."""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Sequence
from typing import Any

from autobahn.websocket.protocol import PreparedMessage


class Outgoing:
    """Encoded frames that go together to every connection of a group: one frame, or a fan-out
    round's run of events with the same audience (fanout._same_audience). `texts` and `event_ids`
    (None for a frame that is not an event: a ping, `unread`) pair up; `wire` is all of them as
    complete WebSocket frames in one bytes object (server frames are unmasked, so the same bytes
    for everyone), written to a socket in ONE call: a run of 15 events costs each socket one
    system call instead of 15."""

    __slots__ = ("event_ids", "texts", "wire")

    def __init__(self, texts: Sequence[str], event_ids: Sequence[int | None] | None = None) -> None:
        self.texts = tuple(texts)
        self.event_ids: tuple[int | None, ...] = (None,) * len(self.texts) if event_ids is None else tuple(event_ids)
        assert len(self.event_ids) == len(self.texts), "one event id (or None) per frame"
        self.wire: bytes = b"".join(
            PreparedMessage(text.encode(), False, False, True).payloadHybi for text in self.texts
        )

    @classmethod
    def one(cls, text: str, event_id: int | None = None) -> Outgoing:
        return cls((text,), (event_id,))

    def only(self, keep: Sequence[bool]) -> Outgoing | None:
        """The frames whose flag is true (None if none is): what is left for a socket that has
        already seen some of these events."""
        kept = [index for index, flag in enumerate(keep) if flag]
        if not kept:
            return None
        return Outgoing([self.texts[i] for i in kept], [self.event_ids[i] for i in kept])


class DaphneSocket:
    """Direct access to a Daphne (autobahn/Twisted) WebSocket's transport."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    def write(self, frames: Outgoing) -> int:
        """Queue the frames on the socket; return the bytes written to it that the client has not
        read yet (kernel buffers aside), or -1 if the socket is no longer open."""
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return -1
        protocol.sendData(frames.wire)
        transport = protocol.transport
        if transport is None:
            return 0
        return int(len(transport.dataBuffer) - transport.offset + transport._tempDataLen)

    def limit_kernel_buffer(self, size: int) -> None:
        """Cap the kernel's send buffer (0 leaves Linux's autotuning on)."""
        transport = self.protocol.transport
        if size and transport is not None:
            with contextlib.suppress(OSError, AttributeError):
                transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    def abort(self) -> None:
        """Drop the TCP connection now, discarding unsent bytes (their memory is released)."""
        transport = self.protocol.transport
        if transport is not None:
            transport.abortConnection()

    def accepted(self) -> None:
        """Called once the handshake is answered. Daphne keeps nothing of it worth releasing."""


class UvicornSocket:
    """Direct access to the asyncio transport of a uvicorn `websockets-sansio` WebSocket."""

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.transport = protocol.transport

    def write(self, frames: Outgoing) -> int:
        """As DaphneSocket.write. Called for every delivery, so it touches as little as it can."""
        transport = self.transport
        if self.protocol.close_sent or transport.is_closing():
            return -1
        transport.write(frames.wire)  # asyncio sends at once when the socket can take it
        return int(transport.get_write_buffer_size())

    def limit_kernel_buffer(self, size: int) -> None:
        sock = self.transport.get_extra_info("socket")
        if size and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    def abort(self) -> None:
        self.transport.abort()

    def accepted(self) -> None:
        """Called once the handshake is answered: uvicorn keeps the handshake's request and
        response (two sets of headers, ~1.9 KB) for the socket's whole life, but reads them only
        while answering the handshake. Released here (docs/performance.md, "Memory")."""
        protocol = self.protocol
        if protocol.handshake_complete and hasattr(protocol, "response"):
            protocol.request = protocol.response = None


DirectSocket = DaphneSocket | UvicornSocket


def direct_socket(send: Any) -> DirectSocket | None:
    """The socket behind an ASGI `send` callable if Herald knows its server, else None.
    Daphne passes each connection `functools.partial(server.handle_reply, protocol)`; uvicorn's
    `websockets-sansio` protocol passes its bound `send` method."""
    if isinstance(send, functools.partial) and getattr(send.func, "__name__", "") == "handle_reply" and send.args:
        protocol = send.args[0]
        if hasattr(protocol, "sendData") and hasattr(protocol, "STATE_OPEN"):
            return DaphneSocket(protocol)
    owner = getattr(send, "__self__", None)
    if type(owner).__name__ == "WebSocketsSansIOProtocol" and hasattr(owner, "transport"):
        return UvicornSocket(owner)
    return None
