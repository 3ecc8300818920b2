"""Request and response shapes of the notifications REST API (also the OpenAPI schema)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from rest_framework import serializers

from accounts.models import EXTERNAL_ID_PATTERN
from config.api_fields import (
    FieldsBuiltOnce,
    JsonObjectField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    StrictRegexField,
)
from config.herald import herald_settings
from notifications.models import TOPIC_KEY_PATTERN
from notifications.services import EventInput

KIND_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"


def topic_key_field(**kwargs: Any) -> StrictRegexField:
    return StrictRegexField(TOPIC_KEY_PATTERN, max_length=128, **kwargs)


def user_id_field(**kwargs: Any) -> StrictRegexField:
    return StrictRegexField(EXTERNAL_ID_PATTERN, max_length=200, **kwargs)


class EventInSerializer(FieldsBuiltOnce):
    kind = StrictRegexField(KIND_PATTERN, max_length=100, help_text="What happened, e.g. `order.shipped`.")
    data = JsonObjectField(  # type: ignore[assignment]
        required=False, default=dict, help_text="Any JSON object; size-capped per tenant."
    )
    title = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    body = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")
    url = StrictCharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text="Where the notification leads: an http(s) URL or a path starting with `/`.",
    )
    recipients = serializers.ListField(
        child=user_id_field(),
        required=False,
        default=list,
        max_length=1000,
        help_text="External user ids (up to 1,000) whose inboxes receive the event.",
    )
    topics = serializers.ListField(
        child=topic_key_field(),
        required=False,
        default=list,
        max_length=20,
        help_text="Topic keys: reaches each topic's subscribers (inbox) and live listeners.",
    )
    broadcast = StrictBooleanField(required=False, default=False, help_text="Every end user of the tenant.")

    def validate_url(self, value: str) -> str:
        if not value:
            return value
        # Browsers treat "\\" like "/" and drop tabs and newlines, so "/\\evil.example" or
        # "/\t/evil.example" would lead off-site: such characters are refused outright.
        if any(char.isspace() or char == "\\" or ord(char) < 32 or ord(char) == 127 for char in value):
            raise serializers.ValidationError("Must not contain whitespace, control characters or backslashes.")
        if value.startswith("/") and not value.startswith("//"):
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise serializers.ValidationError("Must be an http(s) URL or a path starting with `/`.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not (attrs["recipients"] or attrs["topics"] or attrs["broadcast"]):
            raise serializers.ValidationError(
                {"non_field_errors": ["Give at least one target: recipients, topics or broadcast: true."]}
            )
        if len(attrs["recipients"]) > herald_settings.MAX_RECIPIENTS:
            raise serializers.ValidationError({"recipients": [f"At most {herald_settings.MAX_RECIPIENTS}."]})
        return attrs


def event_input(data: dict[str, Any]) -> EventInput:
    """The service's input from a validated EventInSerializer."""
    return EventInput(
        kind=data["kind"],
        data=data["data"],
        title=data["title"],
        body=data["body"],
        url=data["url"],
        recipients=tuple(dict.fromkeys(data["recipients"])),
        topics=tuple(dict.fromkeys(data["topics"])),
        broadcast=data["broadcast"],
    )


class BatchInSerializer(FieldsBuiltOnce):
    events = EventInSerializer(many=True, allow_empty=False, max_length=100)  # type: ignore[call-arg]


class EventAcceptedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField(help_text="The event id; notifications carry it as `id`.")


class BatchResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    index = serializers.IntegerField()
    id = serializers.IntegerField()


class BatchAcceptedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    results = BatchResultSerializer(many=True)


class EventOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField(source="number", help_text="The event id, counted per tenant.")
    kind = serializers.CharField()
    data = serializers.JSONField()  # type: ignore[assignment]
    title = serializers.CharField()
    body = serializers.CharField()
    url = serializers.CharField()
    recipients = serializers.ListField(child=serializers.CharField())
    topics = serializers.SerializerMethodField()
    broadcast = serializers.BooleanField()
    status = serializers.CharField(help_text="pending, delivering or delivered.")
    cursor = serializers.SerializerMethodField(help_text="Stream position, once fan-out has started.")
    recipient_count = serializers.IntegerField(help_text="Inbox rows written, once delivered.")
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)

    def get_topics(self, event: Any) -> list[str]:
        return sorted(topic.key for topic in event.topics.all())

    def get_cursor(self, event: Any) -> str | None:
        return None if event.seq is None else str(event.seq)


class TopicSerializer(serializers.Serializer):  # type: ignore[type-arg]
    key = topic_key_field()
    name = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    description = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")
    allow_client_subscribe = StrictBooleanField(required=False, default=False)
    allow_client_publish = StrictBooleanField(required=False, default=False)
    created_at = serializers.DateTimeField(read_only=True)


class TopicPatchSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = StrictCharField(max_length=200, required=False, allow_blank=True)
    description = StrictCharField(max_length=2000, required=False, allow_blank=True)
    allow_client_subscribe = StrictBooleanField(required=False)
    allow_client_publish = StrictBooleanField(required=False)


class TopicPageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    results = TopicSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class SubscribeInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    topics = serializers.ListField(child=topic_key_field(), allow_empty=False, max_length=100)


class SubscriptionsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    user_id = serializers.CharField()
    topics = serializers.ListField(child=serializers.CharField())


class SubscriberPageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    results = serializers.ListField(child=serializers.CharField(), help_text="External user ids.")
    next_cursor = serializers.CharField(allow_null=True)


class InboxItemSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    cursor = serializers.CharField()
    kind = serializers.CharField()
    topics = serializers.ListField(child=serializers.CharField())
    data = serializers.JSONField()  # type: ignore[assignment]
    title = serializers.CharField()
    body = serializers.CharField()
    url = serializers.CharField()
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True)


class InboxPageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    results = InboxItemSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True, help_text="Pass as `cursor` for the next (older) page.")
    unread = serializers.IntegerField()
    stream_cursor = serializers.CharField(
        help_text="Pass as `since` in the WebSocket auth frame to receive everything after this page."
    )


class InboxQuerySerializer(serializers.Serializer):  # type: ignore[type-arg]
    unread = serializers.BooleanField(required=False, default=False, help_text="Only unread notifications.")
    archived = serializers.ChoiceField(
        choices=["exclude", "only", "include"],
        required=False,
        default="exclude",
        help_text="Archived notifications: left out (default), only them, or included.",
    )
    cursor = serializers.CharField(required=False, max_length=20)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=100)


class IdsInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    ids = serializers.ListField(
        child=StrictIntegerField(min_value=1, max_value=2**63 - 1), allow_empty=False, max_length=100
    )


class InboxChangeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    updated = serializers.IntegerField()
    not_found = serializers.ListField(child=serializers.IntegerField())
    unread = serializers.IntegerField()


class CountSerializer(serializers.Serializer):  # type: ignore[type-arg]
    count = serializers.IntegerField()


class ErrorBodySerializer(serializers.Serializer):  # type: ignore[type-arg]
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(required=False)  # type: ignore[assignment]
    retry_after = serializers.IntegerField(required=False)


class ErrorSerializer(serializers.Serializer):  # type: ignore[type-arg]
    error = ErrorBodySerializer()
