"""`manage.py create_tenant <slug> [--name N]`: create a tenant (and its token signing key)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant. Prints its slug on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_create(slug=options["slug"], name=options["name"])
        except ValidationError as error:
            raise CommandError(
                "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
            ) from None
        self.stdout.write(f"Created tenant {tenant.name!r} (id {tenant.pk}).")
        self.stdout.write(tenant.slug)
