"""DRF authentication: `Authorization: Bearer <credential>`, where the credential is an API key
(tenant backends) or a connection token (end users reading their inbox). The lookup is shared
with the WebSocket consumer (accounts.credentials.principal_from_bearer)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from accounts.credentials import principal_from_bearer
from accounts.exceptions import TokenExpired, Unauthorized
from accounts.principals import ApiKeyPrincipal, EndUserPrincipal
from accounts.ratelimit import auth_failure_record, auth_failures_check


class BearerAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal | EndUserPrincipal, Any] | None:
        header = get_authorization_header(request)
        if not header:
            return None
        try:
            scheme, _, credential = header.decode("ascii").partition(" ")
        except UnicodeDecodeError:
            raise Unauthorized("The Authorization header must be ASCII.") from None
        credential = credential.strip()
        ip = request.META.get("REMOTE_ADDR") or "unknown"
        # An IP that keeps failing is refused (429) before its credentials are even looked at.
        auth_failures_check(ip=ip)
        try:
            if scheme.lower() != "bearer" or not credential:
                raise Unauthorized("Use `Authorization: Bearer <API key or connection token>`.")
            principal = principal_from_bearer(credential)
        except TokenExpired:
            raise  # an honest client whose token ran out, not a guess
        except Unauthorized:
            auth_failure_record(ip=ip)
            raise
        return principal, principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="herald"'


class BearerScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = BearerAuthentication
    name = "bearer"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`hk_...`) for tenant endpoints, or a connection token for /api/v1/inbox.",
        }
