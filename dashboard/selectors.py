"""Reads for the dashboard: which tenant a signed-in staff member acts in, what their
notification center shows before its WebSocket connects, and which tenants the operations page
may show someone (with the tenant's recent events)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Prefetch

from accounts.models import EXTERNAL_ID_PATTERN, EndUser, Membership, Tenant
from notifications import protocol
from notifications.models import Event, Topic
from notifications.selectors import inbox_list, stream_cursor, unread_count

# Items rendered on the first paint; later ones arrive live over the socket.
FIRST_PAINT_ITEMS = 20

# A notification's url becomes a link only if it is an http(s) URL or a path on this site. A path
# must not start with "//" or "/\" (browsers read both as another host), and no whitespace or
# control character may appear anywhere, because browsers drop tabs and newlines inside URLs
# ("/\t/evil.example" would become "//evil.example"). live.js applies the same rule.
_SAFE_LINK = re.compile(r"^(?:https?://|/(?![/\\]))[^\x00-\x20\x7f\\]*$", re.IGNORECASE)


def notification_link(url: str) -> str:
    """The url if it is safe to render as a link, else ""."""
    return url if _SAFE_LINK.match(url) else ""


def staff_membership(*, user: Any) -> Membership | None:
    """The signed-in user's tenant membership (with its tenant), or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.select_related("tenant").filter(user_id=user.pk).first()


def membership_problem(*, membership: Membership | None) -> str | None:
    """Why this membership cannot use the live page ("no_membership", "tenant_inactive",
    "invalid_external_id"), or None when it can."""
    if membership is None:
        return "no_membership"
    if not membership.tenant.is_active:
        return "tenant_inactive"
    if not EXTERNAL_ID_PATTERN.match(membership.external_id):
        return "invalid_external_id"
    return None


@dataclass(frozen=True)
class LivePageState:
    # Newest first: notifications.selectors.inbox_item, plus `heading` (the title, or the kind when
    # there is none), `created` (created_at as a datetime), `read`, and `link` (the url when it is
    # safe to link, else "").
    items: list[dict[str, Any]]
    unread: int
    # The stream position the page's socket resumes from, so nothing delivered between this read
    # and the socket's auth is missed (the client drops ids it already shows).
    cursor: str
    # The REST inbox cursor of the next (older) page, or "" when this is all of it.
    next_cursor: str = ""


def live_page_state(*, membership: Membership, limit: int = FIRST_PAINT_ITEMS) -> LivePageState:
    tenant = membership.tenant
    # Read only: the EndUser row is created when the socket authenticates or an event addresses it.
    end_user = EndUser.objects.filter(tenant=tenant, external_id=membership.external_id).first()
    if end_user is None:
        return LivePageState(items=[], unread=0, cursor=protocol.cursor_text(stream_cursor(tenant_id=tenant.pk)))
    page = inbox_list(user=end_user, limit=limit)
    items = [
        {
            **item,
            "heading": item["title"] or item["kind"],
            "created": datetime.fromisoformat(item["created_at"]),
            "read": item["read_at"] is not None,
            "link": notification_link(item["url"]),
        }
        for item in page.items
    ]
    return LivePageState(
        items=items,
        unread=unread_count(user=end_user),
        cursor=protocol.cursor_text(page.stream_cursor),
        next_cursor=page.next_cursor or "",
    )


def ops_tenants(*, user: Any) -> list[Tenant]:
    """The tenants whose operations figures this user may watch, by slug: every tenant for a
    platform admin (superuser), their own for tenant staff (any role), none for anyone else. The
    operations page, its recent-events view and /ws/v1/ops/ all ask this one question."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return []
    if user.is_superuser:
        return list(Tenant.objects.order_by("slug"))
    membership = staff_membership(user=user)
    return [membership.tenant] if membership is not None else []


def watchable_tenants(*, user: Any) -> list[tuple[int, str]]:
    """(id, slug) of the tenants of ops_tenants(), for /ws/v1/ops/."""
    return [(tenant.pk, tenant.slug) for tenant in ops_tenants(user=user)]


def ops_tenant(*, user: Any, slug: str | None = None) -> Tenant | None:
    """The tenant the operations page shows this user. Without a slug: a staff member's own tenant,
    or for a platform admin their own (if they are staff of one too) or else the first. With a
    slug: that tenant if the user may watch it, else None: another tenant's slug and one that does
    not exist get the same answer, so nothing tells a staff member which other tenants exist."""
    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return None
    membership = staff_membership(user=user)
    if not user.is_superuser:
        if membership is None or (slug is not None and slug != membership.tenant.slug):
            return None
        return membership.tenant
    if slug is not None:
        return Tenant.objects.filter(slug=slug).first()
    if membership is not None:
        return membership.tenant
    return Tenant.objects.order_by("slug").first()


# Rows of the operations page's recent-events table: enough to see a burst go through, few enough
# to read in one query every few seconds.
RECENT_EVENTS_LIMIT = 25
# User ids named in a row's targets summary; the rest is a count.
TARGET_SAMPLE_SIZE = 3


def recent_events(*, tenant: Tenant, limit: int = RECENT_EVENTS_LIMIT) -> list[dict[str, Any]]:
    """The tenant's latest events, newest first, as the operations page lists them: what was
    published to whom and how its fan-out went. Metadata only: no title, body, url or data (an
    operator watching throughput has no need to read people's notifications)."""
    events = (
        Event.objects.filter(tenant=tenant)
        .order_by("-id")
        .only("number", "kind", "status", "recipient_count", "created_at", "delivered_at", "recipients", "broadcast")
        .prefetch_related(Prefetch("topics", queryset=Topic.objects.only("id", "key").order_by("key")))[:limit]
    )
    return [
        {
            "id": event.number,
            "kind": event.kind,
            "status": event.status,
            "recipient_count": event.recipient_count,
            "targets": {
                "broadcast": event.broadcast,
                "users": len(event.recipients),
                "users_sample": [str(user_id) for user_id in event.recipients[:TARGET_SAMPLE_SIZE]],
                "topics": [topic.key for topic in event.topics.all()],
            },
            "created_at": protocol.timestamp(event.created_at),
            "delivered_at": protocol.timestamp(event.delivered_at) if event.delivered_at else None,
        }
        for event in events
    ]
