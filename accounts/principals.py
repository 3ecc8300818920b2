"""Who is calling: the principal objects REST views and WebSocket consumers act for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from accounts.models import ApiKey, EndUser, Tenant


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """A tenant backend authenticated by an API key."""

    tenant: Tenant
    api_key: ApiKey
    # DRF's IsAuthenticated looks at request.user.is_authenticated.
    is_authenticated: bool = True

    def has_scope(self, scope: str) -> bool:
        scopes = self.api_key.scopes
        return ApiKey.Scope.ADMIN in scopes or scope in scopes


@dataclass(frozen=True)
class EndUserPrincipal:
    """One of a tenant's end users, authenticated by a connection token or (for tenant staff in
    Herald's own pages) by the Django session."""

    tenant: Tenant
    end_user: EndUser
    # Topics the token grants (None: only topics marked `allow_client_subscribe`).
    granted_topics: tuple[str, ...] | None
    expires_at: datetime | None
    via: Literal["token", "session"]
    # The signing key of the token (None for a session): revoking the key closes the connection.
    signing_kid: str | None = None
    is_authenticated: bool = True

    @property
    def user_id(self) -> str:
        return self.end_user.external_id
