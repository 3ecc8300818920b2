"""Tenants and everything that identifies someone inside one: staff memberships, API keys,
connection-token signing keys and end users (the tenant's own users, by external id)."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

# External user ids are the tenant's own ids ("42", "auth0|abc", "ann@example.com"). They appear in
# URL paths, so they are limited to characters that need no escaping there.
EXTERNAL_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.@:|+=~-]{1,200}$")
external_id_validator = RegexValidator(
    EXTERNAL_ID_PATTERN,
    "Use 1-200 characters: letters, digits and _ . @ : | + = ~ -",
)

# A hard ceiling for any tenant's payload limit: frames stay small enough to fan out quickly.
PAYLOAD_BYTES_CEILING = 256 * 1024


class Tenant(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True, help_text="A deactivated tenant can neither publish nor connect.")
    max_connections = models.PositiveIntegerField(
        default=10_000, help_text="Concurrent WebSocket connections across all nodes."
    )
    max_connections_per_user = models.PositiveIntegerField(
        default=20, help_text="Concurrent WebSocket connections of one end user (tabs, devices)."
    )
    publishes_per_minute = models.PositiveIntegerField(
        default=6_000, help_text="Events accepted per minute over REST (all API keys together)."
    )
    key_publishes_per_minute = models.PositiveIntegerField(
        default=3_000, help_text="Events accepted per minute from any one API key."
    )
    client_messages_per_second = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1)],
        help_text="Frames one WebSocket client may send per second (bursts up to twice that).",
    )
    max_subscriptions_per_connection = models.PositiveIntegerField(
        default=100,
        # 100 is also the most one frame may name (HERALD MAX_SUBSCRIPTIONS_PER_CONNECTION).
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Topics one WebSocket connection may listen to live (at most 100).",
    )
    allowed_origins = models.TextField(
        blank=True,
        help_text=(
            "If set, one origin per line (e.g. https://app.example.com): browsers on other sites cannot "
            "connect with this tenant's tokens. Clients that send no Origin (servers, apps) are unaffected."
        ),
    )
    retention_days = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="Events and inbox rows older than this are deleted by `manage.py herald_cleanup`.",
    )
    max_payload_bytes = models.PositiveIntegerField(
        default=16 * 1024,
        validators=[MinValueValidator(256), MaxValueValidator(PAYLOAD_BYTES_CEILING)],
        help_text="Largest encoded `data` payload of one event, in bytes.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def origin_allowed(self, origin: str | None) -> bool:
        allowed = {line.strip().rstrip("/") for line in self.allowed_origins.splitlines() if line.strip()}
        return not allowed or origin is None or origin.rstrip("/") in allowed


class Membership(models.Model):
    """A Django user who is staff of one tenant: logs into the admin and sees only that tenant."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin (view and change)"
        VIEWER = "viewer", "Viewer (view only)"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="herald_membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    external_id = models.CharField(
        max_length=200,
        validators=[external_id_validator],
        help_text="The end-user id this person has when their browser session connects to /ws/v1/.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "user"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class ApiKey(models.Model):
    """A tenant backend's credential. Only the prefix is kept in clear; the secret is hashed."""

    class Scope(models.TextChoices):
        PUBLISH = "publish", "publish: send events, mint connection tokens"
        READ = "read", "read: read topics, subscriptions and events"
        ADMIN = "admin", "admin: everything, including topics and subscriptions"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["tenant", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (hk_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class SigningKey(models.Model):
    """A per-tenant secret that signs connection tokens (HS256). Two may be active during rotation;
    tokens name theirs in the `kid` header."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="signing_keys")
    kid = models.CharField(max_length=32, unique=True, editable=False)
    secret = models.CharField(max_length=128, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["tenant", "-created_at"]

    def __str__(self) -> str:
        return f"{self.tenant} key {self.kid}"


class EndUser(models.Model):
    """One of a tenant's own users, known by the tenant's external id. Created on first sight
    (token minted, subscribed, or addressed by an event); a broadcast reaches all of them."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="end_users")
    external_id = models.CharField(max_length=200, validators=[external_id_validator])
    created_at = models.DateTimeField(auto_now_add=True)
    tokens_revoked_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Connection tokens issued up to this moment are refused; their connections were closed.",
    )

    class Meta:
        ordering = ["tenant", "external_id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "external_id"], name="enduser_unique_per_tenant")]
        verbose_name = "end user"

    def __str__(self) -> str:
        return self.external_id
