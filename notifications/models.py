"""What Herald stores: topics and subscriptions, events (stored once), the fan-out outbox, each
end user's inbox rows, each tenant's stream position, and idempotency records."""

from __future__ import annotations

import re

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from accounts.models import ApiKey, EndUser, Tenant

# Topic keys: "orders.shipped", "project.42", "room:lobby". They never appear raw in channel-layer
# group names (those use the topic's database id), so the only constraint is readability.
TOPIC_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
topic_key_validator = RegexValidator(
    TOPIC_KEY_PATTERN, "Use 1-128 characters: letters, digits and . _ : - (starting with a letter or digit)."
)


class Topic(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="topics")
    key = models.CharField(max_length=128, validators=[topic_key_validator])
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True, max_length=2000)
    allow_client_subscribe = models.BooleanField(
        default=False,
        help_text="End users may subscribe to this topic over WebSocket without a token that names it.",
    )
    allow_client_publish = models.BooleanField(
        default=False, help_text="End users may publish into this topic (chat rooms)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "key"]
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="topic_key_unique_per_tenant")]

    def __str__(self) -> str:
        return self.key


class Subscription(models.Model):
    """A lasting subscription: every event published to the topic lands in the user's inbox."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions")
    user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="subscriptions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["topic", "user"]
        constraints = [models.UniqueConstraint(fields=["topic", "user"], name="subscription_unique")]

    def __str__(self) -> str:
        return f"{self.user} -> {self.topic}"


class Event(models.Model):
    """One published notification, stored once whatever its audience."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending fan-out"
        DELIVERING = "delivering", "Fanning out"
        DELIVERED = "delivered", "Delivered"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="events")
    # The id publishers and end users see: 1, 2, 3... counted per tenant (see EventCounter), so it
    # tells nothing about other tenants. The primary key is global and stays internal.
    number = models.BigIntegerField(editable=False)
    kind = models.CharField(max_length=100)
    data = models.JSONField(default=dict, blank=True)
    title = models.CharField(max_length=200, blank=True)
    body = models.TextField(max_length=2000, blank=True)
    url = models.CharField(max_length=2000, blank=True)
    recipients = models.JSONField(default=list, blank=True, help_text="External user ids addressed directly.")
    topics = models.ManyToManyField(Topic, blank=True, related_name="events")
    broadcast = models.BooleanField(default=False)
    # Position in the tenant's stream, assigned when fan-out starts, in the order fan-out runs.
    # Clients resume from it (see notifications/fanout.py for why it is not the primary key).
    seq = models.BigIntegerField(null=True, blank=True, editable=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    recipient_count = models.PositiveIntegerField(default=0)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "number"], name="event_number_once_per_tenant")]
        indexes = [models.Index(fields=["tenant", "seq"], name="event_tenant_seq")]

    def __str__(self) -> str:
        return f"#{self.number} {self.kind}"


class FanoutJob(models.Model):
    """The outbox: written in the same transaction as its event, deleted when fan-out is done.
    A job still here after a crash is picked up again by the next sweep."""

    event = models.OneToOneField(Event, on_delete=models.CASCADE, primary_key=True, related_name="fanout_job")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    # Progress, so a restarted fan-out skips the batches already written: the phase being worked
    # on and the last EndUser/Subscription pk done in it.
    phase = models.CharField(max_length=12, default="direct")
    last_pk = models.BigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["event"]
        indexes = [models.Index(fields=["tenant", "event"], name="fanoutjob_tenant_event")]

    def __str__(self) -> str:
        return f"fan-out of event {self.event_id} ({self.phase})"


class Notification(models.Model):
    """One row of an end user's inbox: an event as this user sees it, with its read state."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="notifications")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="notifications")
    # The event's stream position, copied so inbox reads and resumes need no join.
    seq = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-seq"]
        constraints = [models.UniqueConstraint(fields=["user", "event"], name="notification_once_per_user")]
        indexes = [
            models.Index(fields=["user", "seq"], name="notification_user_seq"),
            models.Index(
                fields=["user"],
                name="notification_unread",
                condition=Q(read_at__isnull=True, archived_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} <- event {self.event_id}"


class Stream(models.Model):
    """A tenant's stream counter: the last position handed out, and the oldest still kept."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="stream")
    last_seq = models.BigIntegerField(default=0)
    # The highest position whose fan-out is complete. Fan-out runs one event at a time per tenant,
    # so every event at or below it has all its inbox rows: a client may safely resume from here.
    delivered_seq = models.BigIntegerField(default=0)
    # Everything at or below this position may have been deleted by retention: a client resuming
    # from below it cannot be given a complete backlog.
    pruned_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"stream of tenant {self.tenant_id} at {self.last_seq}"


class EventCounter(models.Model):
    """The last event number handed out in a tenant. Kept apart from Stream so that publishing
    never waits for a fan-out transaction holding the stream row."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    last_number = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"event numbers of tenant {self.tenant_id} at {self.last_number}"


class IdempotencyRecord(models.Model):
    """The first answer to a publish with an Idempotency-Key, replayed to retries of it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "key"], name="idempotency_key_unique")]

    def __str__(self) -> str:
        return self.key
