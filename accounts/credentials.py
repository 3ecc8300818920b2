"""The one credential lookup behind REST bearer auth and WebSocket auth: API keys, connection
tokens and (for Herald's own pages) the Django session. Authenticating may write: it records an
API key's last use and creates the EndUser row on first sight of an end user."""

from __future__ import annotations

import hashlib
import hmac
import re
from types import SimpleNamespace
from typing import Any

from django.contrib import auth
from django.contrib.auth.models import AnonymousUser

from accounts import services
from accounts.exceptions import TenantInactive, Unauthorized
from accounts.models import ApiKey, Membership
from accounts.principals import ApiKeyPrincipal, EndUserPrincipal
from accounts.tokens import token_verify
from config.db import fetch_one

API_KEY_PREFIX = "hk_"
# Prefixes are 10 lowercase hex characters (accounts.services._generate_api_key).
_PREFIX = re.compile(r"^[0-9a-f]{1,16}\Z")
_INVALID_KEY = "The API key is not valid."


def api_key_hash(secret: str) -> str:
    # API key secrets are 256 random bits, so a fast hash is enough: nobody can brute-force them.
    return hashlib.sha256(secret.encode()).hexdigest()


def principal_from_bearer(credential: str) -> ApiKeyPrincipal | EndUserPrincipal:
    """The one lookup behind REST bearer auth and WebSocket token auth: an API key (`hk_...`)
    or a connection token (a JWT). Raises Unauthorized, TokenExpired or TenantInactive."""
    if credential.startswith(API_KEY_PREFIX):
        return _api_key_principal(credential)
    return end_user_principal_from_token(credential)


def _api_key_principal(credential: str) -> ApiKeyPrincipal:
    parts = credential.split("_", 2)
    if len(parts) != 3 or not parts[1] or not parts[2] or len(credential) > 200:
        raise Unauthorized(_INVALID_KEY)
    prefix, secret = parts[1], parts[2]
    if not _PREFIX.match(prefix):
        raise Unauthorized(_INVALID_KEY)
    api_key = fetch_one(ApiKey, "m.prefix = %s", [prefix], related="tenant")  # on every request: no ORM compile
    # compare_digest even when the prefix is unknown, so timing does not reveal which prefixes exist.
    expected = api_key.secret_hash if api_key else "0" * 64
    matches = hmac.compare_digest(expected, api_key_hash(secret))
    if api_key is None or not matches:
        raise Unauthorized(_INVALID_KEY)
    if api_key.revoked_at is not None:
        raise Unauthorized("This API key has been revoked.")
    if not api_key.tenant.is_active:
        raise TenantInactive()
    services.api_key_touch(api_key=api_key)
    return ApiKeyPrincipal(tenant=api_key.tenant, api_key=api_key)


def end_user_principal_from_token(token: str) -> EndUserPrincipal:
    verified = token_verify(token)
    tenant = verified.signing_key.tenant
    if not tenant.is_active:
        raise TenantInactive()
    end_user = services.end_user_ensure(tenant=tenant, external_id=verified.user_id)
    revoked = end_user.tokens_revoked_at
    if revoked is not None and verified.issued_at <= revoked.timestamp():
        raise Unauthorized("The connection token is not valid.")
    return EndUserPrincipal(
        tenant=tenant,
        end_user=end_user,
        granted_topics=verified.topics,
        expires_at=verified.expires_at,
        via="token",
        signing_kid=verified.signing_key.kid,
    )


def session_user(session: Any) -> Any:
    """The Django user signed in to a WebSocket handshake's session (`scope["session"]`), or
    AnonymousUser: what Django's AuthenticationMiddleware gives a request. Reads the database, so
    call it from a worker thread (config.db.in_thread)."""
    if session is None:
        return AnonymousUser()
    return auth.get_user(SimpleNamespace(session=session))  # type: ignore[arg-type]


def end_user_principal_from_session(user: object) -> EndUserPrincipal | None:
    """The end-user identity of a signed-in Django user with a tenant membership, or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    membership = (
        Membership.objects.select_related("tenant").filter(user_id=user.pk).first()  # type: ignore[attr-defined]
    )
    if membership is None:
        return None
    if not membership.tenant.is_active:
        raise TenantInactive()
    end_user = services.end_user_ensure(tenant=membership.tenant, external_id=membership.external_id)
    return EndUserPrincipal(
        tenant=membership.tenant,
        end_user=end_user,
        granted_topics=None,
        expires_at=None,
        via="session",
    )
