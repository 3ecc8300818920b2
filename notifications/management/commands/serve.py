"""`manage.py serve [--host H] [--port P]`: run Herald on Daphne with Herald's WebSocket limits
and proxy settings. One process (no workers, no shell around it), so its PID is the server's."""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface
from django.core.management.base import BaseCommand, CommandParser

from config.herald import herald_settings


class Command(BaseCommand):
    help = "Serve Herald (HTTP + WebSocket) on Daphne."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--fd", type=int, default=None, help="Serve on an inherited socket file descriptor.")
        parser.add_argument(
            "--proxy-headers", action="store_true", help="Trust X-Forwarded-For/-Proto (only behind nginx)."
        )
        parser.add_argument("--access-log", action="store_true", help="Log each request (never logs query strings).")

    def handle(self, *args: Any, **options: Any) -> None:
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
        CommandLineInterface().run(argv)
