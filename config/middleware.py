"""Request logging: one JSON line per request with its id, tenant, status and duration. The
path is logged without its query string and no header is logged, so no credential can leak."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse
from django.utils.functional import LazyObject, empty

from config.logging import log_context

logger = logging.getLogger("herald.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _SyncAndAsync:
    """Both kinds of middleware in one class (Django's "sync_and_async" middleware). Herald's
    ASGI handler (config/http.py) runs the chain in sync mode, in one thread hop per request; the
    async half serves a stack that runs in async mode (Django's own ASGIHandler)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.handle_async(request)
        return self.handle(request)

    def handle(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    async def handle_async(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError


class HealthCheckMiddleware(_SyncAndAsync):
    """Answers /healthz and /readyz before anything else: load balancers probe nodes by IP
    address, a Host that ALLOWED_HOSTS rightly refuses everywhere else, and every few seconds, which
    would drown the request log."""

    def handle(self, request: HttpRequest) -> HttpResponse:
        probe = _probe_for(request)
        return probe(request) if probe is not None else self.get_response(request)

    async def handle_async(self, request: HttpRequest) -> HttpResponse:
        probe = _probe_for(request)
        if probe is not None:  # the checks talk to PostgreSQL and Redis synchronously
            return await sync_to_async(probe, thread_sensitive=False)(request)
        response: Awaitable[HttpResponse] = self.get_response(request)
        return await response


def _probe_for(request: HttpRequest) -> Callable[[HttpRequest], HttpResponse] | None:
    from config import health

    return {"/healthz": health.healthz, "/readyz": health.readyz}.get(request.path)


def _user_if_loaded(request: HttpRequest) -> Any:
    """The request's user (an API key or token principal, or a session user) if something already
    loaded it: logging never costs a query, which an async handler could not even make."""
    user = request.__dict__.get("user")
    if isinstance(user, LazyObject) and user._wrapped is empty:
        return None
    return user


class RequestLogMiddleware(_SyncAndAsync):
    def handle(self, request: HttpRequest) -> HttpResponse:
        request_id, token, started = self._start(request)
        try:
            return self._finish(request, self.get_response(request), request_id, started)
        finally:
            log_context.reset(token)

    async def handle_async(self, request: HttpRequest) -> HttpResponse:
        request_id, token, started = self._start(request)
        try:
            return self._finish(request, await self.get_response(request), request_id, started)
        finally:
            log_context.reset(token)

    @staticmethod
    def _start(request: HttpRequest) -> tuple[str, Any, float]:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        return request_id, log_context.set({"request_id": request_id}), time.perf_counter()

    @staticmethod
    def _finish(request: HttpRequest, response: HttpResponse, request_id: str, started: float) -> HttpResponse:
        tenant = getattr(_user_if_loaded(request), "tenant", None)
        logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "tenant": getattr(tenant, "slug", None),
            },
        )
        response["X-Request-ID"] = request_id
        return response
