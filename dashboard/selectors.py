"""Reads for the dashboard: which tenant a signed-in staff member acts in, and what their
notification center shows before its WebSocket connects."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accounts.models import EXTERNAL_ID_PATTERN, EndUser, Membership
from notifications import protocol
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


def watchable_tenants(*, user: Any) -> list[tuple[int, str]]:
    """(id, slug) of the tenants whose live figures this user may watch on the operations page:
    every tenant for a platform admin, their own for tenant staff, none for anyone else."""
    from accounts.models import Tenant

    if not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return []
    if user.is_superuser:
        return list(Tenant.objects.order_by("slug").values_list("pk", "slug"))
    membership = staff_membership(user=user)
    return [(membership.tenant.pk, membership.tenant.slug)] if membership is not None else []
