"""Admin for topics and subscriptions (managed) and events, inbox rows and fan-out jobs (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.admin_scoping import TenantScopedAdmin, adopt_saved
from notifications.models import Event, FanoutJob, Notification, Subscription, Topic
from notifications.services import topic_create, topic_delete, topic_update

# Delivery history is what happened: nobody, superusers included, edits or deletes it by hand.
READ_ONLY: frozenset[str] = frozenset()


@admin.register(Topic)
class TopicAdmin(TenantScopedAdmin):
    list_display = ("key", "name", "tenant", "allow_client_subscribe", "allow_client_publish", "created_at")
    list_filter = ("tenant", "allow_client_subscribe", "allow_client_publish")
    list_select_related = ("tenant",)
    search_fields = ("key", "name")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ("tenant", "key", "name", "description", "allow_client_subscribe", "allow_client_publish")
        return fields if obj is None else (*fields, "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Clients and publishers name topics by key, so a key is never renamed (topic_update agrees).
        return () if obj is None else ("key", "created_at")

    def save_scoped(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            topic_update(tenant=obj.tenant, key=obj.key, changes=changes)
            return
        created = topic_create(
            tenant=obj.tenant,
            key=obj.key,
            name=obj.name,
            description=obj.description,
            allow_client_subscribe=obj.allow_client_subscribe,
            allow_client_publish=obj.allow_client_publish,
        )
        adopt_saved(obj, created)

    def delete_scoped(self, request: HttpRequest, obj: Any) -> None:
        topic_delete(tenant=obj.tenant, key=obj.key)


@admin.register(Subscription)
class SubscriptionAdmin(TenantScopedAdmin):
    list_display = ("user", "topic", "tenant", "created_at")
    list_filter = ("tenant", "topic")
    list_select_related = ("user", "topic", "tenant")
    search_fields = ("user__external_id", "topic__key")
    # Search boxes rather than selects: a tenant may have millions of end users. The searches run
    # through the EndUser and Topic admins' querysets, so they are tenant-scoped too.
    autocomplete_fields = ("topic", "user")
    readonly_fields = ("created_at",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("tenant", "topic", "user") if obj is None else ("tenant", "topic", "user", "created_at")


@admin.register(Event)
class EventAdmin(TenantScopedAdmin):
    writes = READ_ONLY
    list_display = (
        "number",
        "kind",
        "title",
        "tenant",
        "status",
        "broadcast",
        "seq",
        "recipient_count",
        "created_at",
        "delivered_at",
    )
    list_filter = ("status", "broadcast", "tenant")
    list_select_related = ("tenant",)
    # `number__exact` compares the id as text, so a search for a word does not fail on the id column.
    search_fields = ("number__exact", "kind", "title")
    fields = (
        "tenant",
        "number",
        "kind",
        "title",
        "body",
        "url",
        "data",
        "recipients",
        "topics",
        "broadcast",
        "status",
        "seq",
        "recipient_count",
        "api_key",
        "created_at",
        "delivered_at",
    )


class ReadStateFilter(admin.SimpleListFilter):
    title = "read state"
    parameter_name = "read_state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("unread", "Unread"), ("read", "Read"), ("archived", "Archived")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        # "Unread" matches the unread count users see: archived rows are not counted as unread.
        if self.value() == "unread":
            return queryset.filter(read_at__isnull=True, archived_at__isnull=True)
        if self.value() == "read":
            return queryset.filter(read_at__isnull=False)
        if self.value() == "archived":
            return queryset.filter(archived_at__isnull=False)
        return queryset


@admin.register(Notification)
class NotificationAdmin(TenantScopedAdmin):
    writes = READ_ONLY
    list_display = ("id", "recipient", "event", "tenant", "seq", "created_at", "read_at", "archived_at")
    list_filter = (ReadStateFilter, "tenant")
    list_select_related = ("tenant", "user", "event")
    search_fields = ("user__external_id", "event__number__exact")
    fields = ("tenant", "user", "event", "seq", "created_at", "read_at", "archived_at")

    @admin.display(description="Recipient", ordering="user__external_id")
    def recipient(self, obj: Notification) -> str:
        return obj.user.external_id


@admin.register(FanoutJob)
class FanoutJobAdmin(TenantScopedAdmin):
    # Outbox internals for platform operators; error text may name hosts and internals.
    writes = READ_ONLY
    staff_view_roles = frozenset()
    list_display = ("event", "tenant", "phase", "last_pk", "attempts", "created_at", "updated_at")
    list_filter = ("phase", "tenant")
    list_select_related = ("event", "tenant")
    fields = ("event", "tenant", "phase", "last_pk", "attempts", "last_error", "created_at", "updated_at")
