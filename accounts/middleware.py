"""ASGI middleware for /ws/v1/: decides whether this socket may use the Django session.

A browser sends the session cookie with any WebSocket handshake to Herald, even one opened by
another site's page (cross-site WebSocket hijacking). So the session counts only when the
handshake's Origin is Herald's own site (ALLOWED_HOSTS) or listed in HERALD_ALLOWED_ORIGINS.
Sockets from other origins can still authenticate with a connection token in their auth frame."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.sessions import SessionMiddlewareStack
from django.conf import settings
from django.http.request import validate_host

from config.herald import herald_settings


def origin_allows_session(headers: list[tuple[bytes, bytes]]) -> bool:
    origin = next((value for name, value in headers if name == b"origin"), None)
    if origin is None:
        # Browsers always send Origin on WebSocket handshakes; a client without one is not a
        # browser page that could be hijacked.
        return True
    try:
        text = origin.decode("ascii")
        parts = urlsplit(text)
    except (UnicodeDecodeError, ValueError):
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if text in herald_settings.ALLOWED_ORIGINS or text in settings.CSRF_TRUSTED_ORIGINS:
        return True
    # ALLOWED_HOSTS = ["*"] accepts any Host header; it must not also accept any Origin.
    hosts = [host for host in settings.ALLOWED_HOSTS if host != "*"]
    return validate_host(parts.hostname, hosts)


class SessionOriginMiddleware:
    """Sends the handshake through Channels' cookie and session middleware only when it may use
    the session (`herald_session_allowed`) and carries a session cookie. A socket that
    authenticates with a token (the usual case) goes on with the server's own scope, not a copy
    (which every socket would hold for its whole life: ~0.6 KB, docs/performance.md "Memory"), and
    holds no session objects; the consumers treat a missing `session` (and a missing
    `herald_session_allowed`) as no session."""

    def __init__(self, inner: Any) -> None:
        self.without_session = inner
        self.with_session = SessionMiddlewareStack(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = scope.get("headers", [])
        cookie_name = settings.SESSION_COOKIE_NAME.encode("latin-1")
        # A substring test: a false match only costs the session middleware's parsing.
        has_cookie = any(name == b"cookie" and cookie_name in value for name, value in headers)
        if not (has_cookie and origin_allows_session(headers)):
            return await self.without_session(scope, receive, send)
        scope = dict(
            scope,
            herald_session_allowed=True,
            # The server's own send, before the session middleware wraps it: live frames are
            # written through it (notifications/transport.py), skipping a wrapper per frame.
            herald_server_send=send,
        )
        return await self.with_session(scope, receive, send)
