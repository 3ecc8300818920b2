"""DRF permissions: which principal may call which endpoint."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.exceptions import Forbidden, Unauthorized
from accounts.principals import ApiKeyPrincipal, EndUserPrincipal


class ApiKeyScope(BasePermission):
    """An API key with the scope the view names for this method: `scopes = {"POST": "publish"}`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.user
        if principal is None:
            raise Unauthorized()
        if not isinstance(principal, ApiKeyPrincipal):
            raise Forbidden("This endpoint needs an API key.")
        scope = view.scopes.get(request.method)
        if scope is None:  # a method the view does not serve: DRF answers 405
            return True
        if not principal.has_scope(scope):
            raise Forbidden(f"This API key lacks the `{scope}` scope.")
        return True


class IsEndUser(BasePermission):
    """An end user's connection token (the inbox endpoints)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.user
        if principal is None:
            raise Unauthorized()
        if not isinstance(principal, EndUserPrincipal):
            raise Forbidden("This endpoint needs an end user's connection token, not an API key.")
        if not principal.tenant.origin_allowed(request.headers.get("Origin")):
            raise Forbidden("This tenant does not accept requests from this site.")
        return True
