"""`manage.py create_api_key <tenant-slug> [--scopes publish,read] [--name N]`: the key's secret
is printed once, alone on the last line, and never again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.exceptions import ValidationFailed
from accounts.selectors import tenant_by_slug
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant. Prints the secret key alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("--scopes", default="publish,read", help="Comma-separated: publish, read, admin.")
        parser.add_argument("--name", default="API key")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_by_slug(slug=options["tenant_slug"])
        if tenant is None:
            raise CommandError(f"No tenant {options['tenant_slug']!r}.")
        try:
            api_key, secret = api_key_create(tenant=tenant, name=options["name"], scopes=options["scopes"].split(","))
        except ValidationFailed as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            f"Created API key {api_key.name!r} for {tenant.slug} with scopes {', '.join(api_key.scopes)}."
        )
        self.stdout.write("Store it now: it is shown only this once.")
        self.stdout.write(secret)
