"""`manage.py herald_cleanup`: enforce each tenant's retention and expire idempotency records.
Run it periodically (e.g. hourly from cron or a Kubernetes CronJob); safe to run concurrently
with traffic and with itself."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Tenant
from notifications.retention import PruneResult, events_prune, idempotency_records_prune


class Command(BaseCommand):
    help = "Delete events (and inbox rows) past each tenant's retention, in batches, with progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="Only this tenant (slug).")
        parser.add_argument("--batch-size", type=int, default=1000, help="Events deleted per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        tenants = Tenant.objects.order_by("slug")
        if options["tenant"]:
            tenants = tenants.filter(slug=options["tenant"])
            if not tenants.exists():
                raise CommandError(f"No tenant {options['tenant']!r}.")
        total = PruneResult()
        for tenant in tenants:

            def report(result: PruneResult, slug: str = tenant.slug) -> None:
                self.stdout.write(f"  {slug}: {result.events} events, {result.notifications} inbox rows deleted so far")

            self.stdout.write(f"{tenant.slug}: keeping {tenant.retention_days} days")
            result = events_prune(tenant=tenant, batch_size=options["batch_size"], progress=report)
            total.events += result.events
            total.notifications += result.notifications
            if result.events:
                self.stdout.write(
                    f"{tenant.slug}: done, resume cursors below {result.pruned_seq} now get recovered:false"
                )
        records = idempotency_records_prune(batch_size=options["batch_size"])
        self.stdout.write(
            f"Deleted {total.events} events, {total.notifications} inbox rows, {records} idempotency records."
        )
