"""Herald's error model: every domain error is a HeraldError with an HTTP status and a stable
code. REST renders it as `{"error": {...}}` (config/exception_handler.py); the WebSocket consumer
turns the same exceptions into `error` frames (notifications/protocol.py)."""

from __future__ import annotations

from typing import Any


class HeraldError(Exception):
    status_code = 400
    code = "bad_request"
    default_message = "The request is not valid."

    def __init__(
        self,
        message: str | None = None,
        *,
        fields: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.fields = fields
        self.retry_after = retry_after
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body


class ValidationFailed(HeraldError):
    status_code = 400
    code = "invalid"
    default_message = "Some fields are not valid."


class Unauthorized(HeraldError):
    status_code = 401
    code = "unauthorized"
    default_message = "Missing or invalid credentials."


class TokenExpired(Unauthorized):
    code = "token_expired"
    default_message = "The connection token has expired."


class Forbidden(HeraldError):
    status_code = 403
    code = "forbidden"
    default_message = "These credentials may not do that."


class TenantInactive(Forbidden):
    code = "tenant_inactive"
    default_message = "This tenant is deactivated."


class NotFound(HeraldError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class Conflict(HeraldError):
    status_code = 409
    code = "conflict"
    default_message = "The request conflicts with an earlier one."


class PayloadTooLarge(HeraldError):
    status_code = 413
    code = "too_large"
    default_message = "The payload is too large."


class RateLimited(HeraldError):
    status_code = 429
    code = "rate_limited"
    default_message = "Too many requests; retry later."
    # Which limit (e.g. "publish.tenant"), for metrics; set by accounts.ratelimit.consume.
    action = "unknown"


class ServiceUnavailable(HeraldError):
    status_code = 503
    code = "unavailable"
    default_message = "Herald cannot do that right now; retry later."
