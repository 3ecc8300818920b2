"""`manage.py seed_demo`: a demo tenant, a platform admin, a tenant staff user, topics and an
API key, printed (the API key alone on the last line). Safe to run again: it resets the demo
passwords and replaces the demo API key."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from accounts.models import ApiKey, Membership, Tenant
from accounts.services import api_key_create, api_key_revoke, tenant_create
from notifications.models import Topic

DEMO_TOPICS = [
    ("announcements", "Announcements", True),
    ("orders.shipped", "Orders shipped", False),
    ("project.42", "Project 42", True),
]
DEMO_KEY_NAME = "demo key"


class Command(BaseCommand):
    help = "Create or refresh the demo tenant and print its credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", default=os.environ.get("HERALD_DEMO_PASSWORD", ""))

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        password = options["password"] or secrets.token_urlsafe(9)
        tenant = Tenant.objects.filter(slug="demo").first() or tenant_create(slug="demo", name="Demo Company")
        users = get_user_model()
        admin, _ = users.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
        admin.is_staff = admin.is_superuser = True
        admin.set_password(password)
        admin.save()
        staff, _ = users.objects.get_or_create(username="demo", defaults={"email": "demo@example.com"})
        staff.is_staff, staff.is_superuser = True, False
        staff.set_password(password)
        staff.save()
        Membership.objects.update_or_create(
            user=staff, defaults={"tenant": tenant, "role": Membership.Role.ADMIN, "external_id": "demo"}
        )
        for key, name, public in DEMO_TOPICS:
            Topic.objects.get_or_create(
                tenant=tenant, key=key, defaults={"name": name, "allow_client_subscribe": public}
            )
        for old in ApiKey.objects.filter(tenant=tenant, name=DEMO_KEY_NAME, revoked_at__isnull=True):
            api_key_revoke(tenant=tenant, api_key=old)
        _, secret = api_key_create(tenant=tenant, name=DEMO_KEY_NAME, scopes=["publish", "read", "admin"])

        self.stdout.write(f"Demo tenant:            {tenant.slug} ({tenant.name})")
        self.stdout.write(f"Platform admin:         admin / {password}")
        self.stdout.write(f"Tenant staff (demo):    demo / {password}   (end-user id 'demo')")
        self.stdout.write(f"Topics:                 {', '.join(key for key, _, _ in DEMO_TOPICS)}")
        self.stdout.write("Demo API key (all scopes), shown once:")
        self.stdout.write(secret)
