"""One DRF exception handler: every error leaves the API as
`{"error": {"code": ..., "message": ..., "fields": {...}}}` with a matching HTTP status."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404
from redis.exceptions import RedisError
from rest_framework import exceptions as drf
from rest_framework.response import Response

from accounts.exceptions import HeraldError, RateLimited
from notifications import metrics

logger = logging.getLogger("herald.api")

_DRF_CODES = {
    drf.ParseError: "bad_json",
    drf.AuthenticationFailed: "unauthorized",
    drf.NotAuthenticated: "unauthorized",
    drf.PermissionDenied: "forbidden",
    drf.NotFound: "not_found",
    drf.MethodNotAllowed: "method_not_allowed",
    drf.NotAcceptable: "not_acceptable",
    drf.UnsupportedMediaType: "unsupported_media_type",
    drf.Throttled: "rate_limited",
    drf.ValidationError: "invalid",
}


def error_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response({"error": body}, status=status, headers=headers)


def herald_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = _render(exc)
    if response is not None:
        # `_user`, not `user`: reading `user` would run the (possibly failing) authentication again.
        tenant = getattr(getattr(context.get("request"), "_user", None), "tenant", None)
        tenant_id = tenant.pk if tenant is not None else None
        metrics.error("rest", response.data["error"]["code"], tenant_id)
        if isinstance(exc, RateLimited):
            metrics.rate_limited(exc.action, tenant_id)
    return response


def _render(exc: Exception) -> Response | None:
    if isinstance(exc, HeraldError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) and exc.retry_after else None
        if exc.status_code == 401:
            headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="herald"'}
        return error_response(exc.status_code, exc.as_dict(), headers)
    if isinstance(exc, Http404):
        exc = drf.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf.PermissionDenied()
    if isinstance(exc, drf.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return error_response(400, {"code": "invalid", "message": "Some fields are not valid.", "fields": fields})
    if isinstance(exc, drf.APIException):
        code = next((code for kind, code in _DRF_CODES.items() if isinstance(exc, kind)), "error")
        headers = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf.Throttled) and wait:
            headers["Retry-After"] = str(int(wait))
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="herald"'
        return error_response(exc.status_code, {"code": code, "message": str(exc.detail)}, headers)
    if isinstance(exc, RedisError):
        logger.warning("redis unavailable", exc_info=True)
        return error_response(
            503, {"code": "unavailable", "message": "A dependency is unavailable; retry later."}, {"Retry-After": "5"}
        )
    if isinstance(exc, DatabaseError):
        # Nothing was half-written: every write runs in a transaction that this error rolled back.
        logger.warning("database unavailable", exc_info=True)
        return error_response(
            503, {"code": "unavailable", "message": "Storage is unavailable; retry later."}, {"Retry-After": "5"}
        )
    return None
