"""Per-tenant event numbers: the public event id no longer comes from the sequence all tenants
share, so its gaps cannot count what other tenants publish."""

from django.db import migrations, models
import django.db.models.deletion


def number_existing_events(apps, schema_editor):
    Event = apps.get_model("notifications", "Event")
    EventCounter = apps.get_model("notifications", "EventCounter")
    tenant_ids = Event.objects.values_list("tenant_id", flat=True).distinct().order_by("tenant_id")
    for tenant_id in tenant_ids:
        last = 0
        events = Event.objects.filter(tenant_id=tenant_id).order_by("id").only("id")
        batch = []
        for event in events.iterator(chunk_size=2000):
            last += 1
            event.number = last
            batch.append(event)
            if len(batch) == 2000:
                Event.objects.bulk_update(batch, ["number"])
                batch = []
        Event.objects.bulk_update(batch, ["number"])
        EventCounter.objects.create(tenant_id=tenant_id, last_number=last)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_subscriptions_cap"),
        ("notifications", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="EventCounter",
            fields=[
                (
                    "tenant",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="accounts.tenant",
                    ),
                ),
                ("last_number", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name="event",
            name="number",
            field=models.BigIntegerField(editable=False, null=True),
        ),
        migrations.RunPython(number_existing_events, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="event",
            name="number",
            field=models.BigIntegerField(editable=False),
        ),
        migrations.AddConstraint(
            model_name="event",
            constraint=models.UniqueConstraint(fields=("tenant", "number"), name="event_number_once_per_tenant"),
        ),
    ]
