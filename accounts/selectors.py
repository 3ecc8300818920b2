"""Reads for accounts."""

from __future__ import annotations

from accounts.models import Tenant


def tenant_by_slug(*, slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug).first()
