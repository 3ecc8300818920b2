"""`manage.py serve [--host H] [--port P] [--server uvicorn|daphne]`: run Herald with its WebSocket
limits, proxy settings and graceful shutdown. One process (no workers, no shell around it), so
its PID is the server's.

uvicorn (with uvloop, httptools and the `websockets-sansio` WebSocket protocol) is the default:
measured side by side (docs/performance.md), it spends about half Daphne's CPU per delivered
frame. Daphne stays supported (HERALD_SERVER=daphne); both get the same fast path
(notifications/transport.py).

On SIGTERM or SIGINT the node stops accepting connections, closes every WebSocket with 4012
("reconnect elsewhere"; clients resume from their cursor, so nothing is lost), lets the fan-out
loop finish the batch in hand, and exits. Left alone, Daphne would drop the sockets without a
close frame and uvicorn would close them with 1012."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server
from django.core.management.base import BaseCommand, CommandParser

from config.herald import herald_settings
from config.logging import HandshakeLinesFilter

logger = logging.getLogger("herald.serve")

# How long an idle keep-alive HTTP connection stays open on uvicorn (its default is 5 s). Longer
# than the `keepalive_timeout` of nginx's upstream connections (60 s, nginx.conf), so that the
# proxy, never the node, closes an idle one: a request nginx sends on a connection the node is
# closing at that moment fails, and nginx does not retry a POST (a publish answered 502). Clients
# calling a node directly with keep-alive meet the same race (one failed publish in a benchmark run).
KEEP_ALIVE_SECONDS = 75


def no_delay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on a listening socket: Linux copies TCP_NODELAY to every
    connection accepted from it. With Nagle on, a small write that follows another one still
    unacknowledged waits for the peer's delayed ACK, ~40 ms: uvicorn writes a response's headers
    and its body separately, so every keep-alive publish answered 40 ms late (a sequential
    publisher got at most ~20 requests/s), and a live frame written less than ~40 ms after the
    previous one to the same socket could wait as long."""
    with contextlib.suppress(OSError):  # not a TCP socket (a Unix socket passed with --fd)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class GracefulServer(Server):  # type: ignore[misc]
    """Daphne's server with Herald's SIGTERM/SIGINT handling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["signal_handlers"] = False
        super().__init__(*args, **kwargs)
        self.ports: list[Any] = []
        self.stopping = False

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        listening = getattr(port, "socket", None)  # before the reactor accepts on it
        if listening is not None:
            no_delay(listening)
        super().listen_success(port)

    def run(self) -> None:
        from twisted.internet import reactor

        def on_signal(signum: int, frame: Any) -> None:
            reactor.callFromThread(self.graceful_stop)  # type: ignore[attr-defined]

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        super().run()

    def graceful_stop(self) -> None:
        from twisted.internet import reactor

        from notifications import node

        if self.stopping:
            return
        self.stopping = True
        logger.info("stop requested: draining")
        for port in self.ports:
            port.stopListening()
        task = asyncio.ensure_future(node.shutdown())
        task.add_done_callback(lambda _: reactor.stop())  # type: ignore[attr-defined,misc]


class HeraldCommandLine(CommandLineInterface):  # type: ignore[misc]
    server_class = GracefulServer


def graceful_uvicorn_class() -> type:
    import uvicorn

    class GracefulUvicorn(uvicorn.Server):  # type: ignore[misc]
        async def shutdown(self, sockets: Any = None) -> None:
            from notifications import node

            logger.info("stop requested: draining")
            for server in self.servers:
                server.close()  # stop accepting first
            await node.shutdown()
            await super().shutdown(sockets)

    return GracefulUvicorn


class Command(BaseCommand):
    help = "Serve Herald (HTTP + WebSocket) on Daphne."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--fd", type=int, default=None, help="Serve on an inherited socket file descriptor.")
        parser.add_argument(
            "--proxy-headers", action="store_true", help="Trust X-Forwarded-For/-Proto (only behind nginx)."
        )
        parser.add_argument("--access-log", action="store_true", help="The server's own access log, too.")
        parser.add_argument(
            "--server", choices=("uvicorn", "daphne"), default=herald_settings.SERVER, help="Default: HERALD_SERVER."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["server"] == "uvicorn":
            self._uvicorn(options)
            return
        limit = str(herald_settings.MAX_CLIENT_FRAME_BYTES)
        argv = [
            # Daphne refuses bigger client messages with close 1009 before Herald reads them.
            "--websocket-max-message-size",
            limit,
            "--websocket-max-frame-size",
            limit,
            # Herald sends its own application-level heartbeat; Daphne's protocol pings stay on as
            # a second line (browsers answer them without any JavaScript).
            "--ping-interval",
            "20",
            "--ping-timeout",
            "30",
            "--verbosity",
            "1" if options["access_log"] else "0",
        ]
        if options["fd"] is not None:
            argv += ["--fd", str(options["fd"])]
        else:
            argv += ["--bind", options["host"], "--port", str(options["port"])]
        if options["proxy_headers"]:
            argv.append("--proxy-headers")
        argv.append("config.asgi:application")
        HeraldCommandLine().run(argv)

    def _uvicorn(self, options: dict[str, Any]) -> None:
        import uvicorn

        config = uvicorn.Config(
            "config.asgi:application",
            host=options["host"],
            port=options["port"],
            fd=options["fd"],
            loop="uvloop",
            http="httptools",
            ws="websockets-sansio",
            lifespan="on",
            # Bigger client messages are refused with close 1009 before Herald reads them.
            ws_max_size=herald_settings.MAX_CLIENT_FRAME_BYTES,
            ws_ping_interval=20,
            ws_ping_timeout=30,
            # Never negotiated unless asked for: see HERALD_WS_COMPRESSION (config/herald.py).
            ws_per_message_deflate=herald_settings.WS_COMPRESSION,
            # Room for a burst of reconnecting clients (uvicorn's default is 2048).
            backlog=4096,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            proxy_headers=options["proxy_headers"],
            forwarded_allow_ips="127.0.0.1" if options["proxy_headers"] else None,
            # Herald's JSON logging (config/settings.py LOGGING) instead of uvicorn's own.
            log_config=None,
            access_log=options["access_log"],
            timeout_graceful_shutdown=15,
        )
        if not options["access_log"]:
            logging.getLogger("uvicorn.error").addFilter(HandshakeLinesFilter())
        # The listening socket is made here (uvicorn's own bind, as its multi-process mode does)
        # to set TCP_NODELAY on it before the first connection.
        listening = config.bind_socket()
        no_delay(listening)
        graceful_uvicorn_class()(config).run(sockets=[listening])
