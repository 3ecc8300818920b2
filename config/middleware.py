"""Request logging: one JSON line per request with its id, tenant, status and duration. The
path is logged without its query string and no header is logged, so no credential can leak."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from config.logging import log_context

logger = logging.getLogger("herald.request")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class HealthCheckMiddleware:
    """Answers /healthz and /readyz before anything else: load balancers probe nodes by IP
    address, a Host that ALLOWED_HOSTS rightly refuses everywhere else, and every few seconds, which
    would drown the request log."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from config import health

        if request.path == "/healthz":
            return health.healthz(request)
        if request.path == "/readyz":
            return health.readyz(request)
        return self.get_response(request)


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        token = log_context.set({"request_id": request_id})
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            tenant = getattr(getattr(request, "user", None), "tenant", None)
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
        finally:
            log_context.reset(token)
