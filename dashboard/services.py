"""Writes for the dashboard: a staff member sends themselves a test notification, and their
notification center gets connection tokens for their own end-user id."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from accounts.exceptions import TenantInactive, ValidationFailed
from accounts.models import Membership
from accounts.services import connection_token_mint
from notifications.models import Event
from notifications.services import EventInput, events_publish

DEMO_NOTIFICATION_KIND = "dashboard.test"
TITLE_MAX_LENGTH = Event._meta.get_field("title").max_length or 200
BODY_MAX_LENGTH = Event._meta.get_field("body").max_length or 2000


@transaction.atomic
def demo_notification_send(*, membership: Membership, title: str, body: str = "") -> int:
    """Publish a notification to the staff member's own end-user id in their own tenant; return
    the event id. Counts against the tenant's publish rate limit like any publish (RateLimited)."""
    tenant = membership.tenant
    if not tenant.is_active:
        raise TenantInactive()
    # The form checks these too; this keeps the rule for any other caller (the database column
    # lengths are not enforced by SQLite).
    errors: dict[str, list[str]] = {}
    if not title.strip():
        errors["title"] = ["A title is required."]
    elif len(title) > TITLE_MAX_LENGTH:
        errors["title"] = [f"At most {TITLE_MAX_LENGTH} characters."]
    if len(body) > BODY_MAX_LENGTH:
        errors["body"] = [f"At most {BODY_MAX_LENGTH} characters."]
    if errors:
        raise ValidationFailed(fields=errors)
    result = events_publish(
        tenant=tenant,
        api_key=None,
        items=[
            EventInput(
                kind=DEMO_NOTIFICATION_KIND,
                title=title,
                body=body,
                recipients=(membership.external_id,),
            )
        ],
    )
    return result.event_ids[0]


@transaction.atomic
def member_connection_token_mint(*, membership: Membership) -> tuple[str, datetime]:
    """A connection token for the staff member's own end-user id in their own tenant (what a
    tenant's backend does with POST /api/v1/tokens for its users), and its expiry. The token has
    no `topics` claim: it may listen live only to topics open to clients. Default lifetime."""
    tenant = membership.tenant
    if not tenant.is_active:
        raise TenantInactive()
    return connection_token_mint(tenant=tenant, user_id=membership.external_id)
