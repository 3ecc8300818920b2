"""Writes for accounts: tenants, API keys, signing keys, connection tokens and end users."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.exceptions import ValidationFailed
from accounts.models import EXTERNAL_ID_PATTERN, ApiKey, EndUser, Membership, SigningKey, Tenant
from accounts.tokens import new_kid, new_signing_secret, token_encode
from config.db import fetch_one
from config.herald import herald_settings

# How stale `last_used_at` may get before an authenticated request refreshes it: one write per
# key per minute instead of one per request.
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)
# Active signing keys per tenant: the current one and the previous one, so tokens minted just
# before a rotation keep working until they expire.
ACTIVE_SIGNING_KEYS = 2


@transaction.atomic
def tenant_create(*, slug: str, name: str = "", **limits: int | bool | str) -> Tenant:
    tenant = Tenant(slug=slug, name=name or slug, **limits)
    tenant.full_clean()
    tenant.save()
    signing_key_rotate(tenant=tenant)
    return tenant


@transaction.atomic
def tenant_set_active(*, tenant: Tenant, active: bool) -> Tenant:
    """Activate or deactivate a tenant. Deactivating also closes every open WebSocket of the
    tenant on every node (close 4003) once the change is committed."""
    tenant.is_active = active
    tenant.save(update_fields=["is_active", "updated_at"])
    if not active:
        from notifications import delivery  # notifications builds on accounts, not the reverse

        delivery.close_connections_on_commit(tenant_id=tenant.pk, reason="tenant deactivated")
    return tenant


def _generate_api_key() -> tuple[str, str, str]:
    prefix = secrets.token_hex(5)
    secret = secrets.token_urlsafe(32)
    return prefix, secret, f"hk_{prefix}_{secret}"


def scopes_clean(scopes: Iterable[str]) -> list[str]:
    valid = set(ApiKey.Scope.values)
    cleaned = sorted({scope.strip() for scope in scopes if scope.strip()})
    unknown = [scope for scope in cleaned if scope not in valid]
    if unknown or not cleaned:
        raise ValidationFailed(
            "Scopes must be a non-empty subset of: " + ", ".join(sorted(valid)),
            fields={"scopes": [f"Unknown scope: {scope}" for scope in unknown] or ["Required."]},
        )
    return cleaned


@transaction.atomic
def api_key_create(*, tenant: Tenant, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """Create a key and return it with its full secret, which is never retrievable again."""
    from accounts.credentials import api_key_hash

    prefix, secret, raw = _generate_api_key()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name or "API key",
        prefix=prefix,
        secret_hash=api_key_hash(secret),
        scopes=scopes_clean(scopes),
    )
    return api_key, raw


@transaction.atomic
def api_key_revoke(*, tenant: Tenant, api_key: ApiKey) -> ApiKey:
    if api_key.tenant_id != tenant.pk:
        raise ValidationFailed("That API key belongs to another tenant.")
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > API_KEY_TOUCH_INTERVAL:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


@transaction.atomic
def signing_key_rotate(*, tenant: Tenant) -> SigningKey:
    """Start signing with a new key; keep the previous one valid; revoke any older one."""
    new_key = SigningKey.objects.create(tenant=tenant, kid=new_kid(), secret=new_signing_secret())
    active = SigningKey.objects.filter(tenant=tenant, revoked_at__isnull=True).order_by("-created_at", "-pk")
    stale = [key.pk for key in active[ACTIVE_SIGNING_KEYS:]]
    if stale:
        SigningKey.objects.filter(pk__in=stale).update(revoked_at=timezone.now())
    return new_key


@transaction.atomic
def signing_key_revoke(*, tenant: Tenant, signing_key: SigningKey) -> SigningKey:
    """Refuse tokens signed with this key from now on, and close (4003) every live connection
    that authenticated with one, on every node, once committed. A tenant left without an
    active key gets a new one, so minting keeps working."""
    if signing_key.tenant_id != tenant.pk:
        raise ValidationFailed("That signing key belongs to another tenant.")
    if signing_key.revoked_at is None:
        signing_key.revoked_at = timezone.now()
        signing_key.save(update_fields=["revoked_at"])
        from notifications import delivery

        delivery.close_connections_on_commit(
            tenant_id=tenant.pk, signing_kid=signing_key.kid, reason="signing key revoked"
        )
    if not SigningKey.objects.filter(tenant=tenant, revoked_at__isnull=True).exists():
        signing_key_rotate(tenant=tenant)
    return signing_key


@transaction.atomic
def end_user_revoke_tokens(*, tenant: Tenant, external_id: str) -> EndUser:
    """Refuse every connection token issued to this user so far and close (4003) the user's
    live connections on every node. Tokens minted afterwards work."""
    end_user = end_user_ensure(tenant=tenant, external_id=external_id)
    end_user.tokens_revoked_at = timezone.now()
    end_user.save(update_fields=["tokens_revoked_at"])
    from notifications import delivery

    delivery.close_connections_on_commit(tenant_id=tenant.pk, user_pk=end_user.pk, reason="tokens revoked")
    return end_user


def signing_key_current(*, tenant: Tenant) -> SigningKey:
    key = SigningKey.objects.filter(tenant=tenant, revoked_at__isnull=True).order_by("-created_at", "-pk").first()
    return key or signing_key_rotate(tenant=tenant)


def connection_token_mint(
    *,
    tenant: Tenant,
    user_id: str,
    lifetime_seconds: int | None = None,
    topics: list[str] | None = None,
) -> tuple[str, datetime]:
    lifetime = lifetime_seconds or herald_settings.TOKEN_DEFAULT_LIFETIME_SECONDS
    maximum = herald_settings.TOKEN_MAX_LIFETIME_SECONDS
    if not 60 <= lifetime <= maximum:
        raise ValidationFailed(fields={"ttl_seconds": [f"Must be between 60 and {maximum} seconds."]})
    end_user_ensure(tenant=tenant, external_id=user_id)
    return token_encode(
        signing_key=signing_key_current(tenant=tenant),
        user_id=user_id,
        lifetime=timedelta(seconds=lifetime),
        topics=topics,
    )


def end_user_ensure(*, tenant: Tenant, external_id: str) -> EndUser:
    if not EXTERNAL_ID_PATTERN.match(external_id):
        raise ValidationFailed(fields={"user_id": ["Not a valid user id."]})
    # On every connect: a lookup without the ORM's compile.
    end_user = fetch_one(EndUser, "m.tenant_id = %s AND m.external_id = %s", [tenant.pk, external_id])
    if end_user is not None:
        return end_user
    try:
        with transaction.atomic():
            return EndUser.objects.create(tenant=tenant, external_id=external_id)
    except IntegrityError:  # created concurrently by another request
        return EndUser.objects.get(tenant=tenant, external_id=external_id)


def end_users_ensure(*, tenant: Tenant, external_ids: list[str]) -> dict[str, int]:
    """Make sure every id has an EndUser row; return external id -> EndUser pk. Two queries
    whatever the count, so the fan-out can resolve 1,000 recipients at once."""
    unique_ids = list(dict.fromkeys(external_ids))
    EndUser.objects.bulk_create(
        [EndUser(tenant=tenant, external_id=external_id) for external_id in unique_ids],
        ignore_conflicts=True,
    )
    rows = EndUser.objects.filter(tenant=tenant, external_id__in=unique_ids).order_by()
    return dict(rows.values_list("external_id", "pk"))


@transaction.atomic
def membership_create(*, user: Any, tenant: Tenant, role: str, external_id: str = "") -> Membership:
    username = getattr(user, "username", "")
    # Django usernames may hold characters external ids may not; fall back to a stable id.
    default_id = username if EXTERNAL_ID_PATTERN.match(username) else f"user-{user.pk}"
    membership = Membership(user=user, tenant=tenant, role=role, external_id=external_id or default_id)
    membership.full_clean()
    membership.save()
    return membership
