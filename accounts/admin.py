"""Admin for tenants, staff memberships, API keys, signing keys and end users, scoped per tenant."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.admin_scoping import (
    ADD,
    ADMIN,
    CHANGE,
    DELETE,
    PlatformOnlyAdmin,
    TenantGuardedForm,
    TenantScopedAdmin,
    adopt_saved,
)
from accounts.exceptions import ValidationFailed
from accounts.models import ApiKey, EndUser, Membership, SigningKey, Tenant
from accounts.services import (
    api_key_create,
    api_key_revoke,
    end_user_ensure,
    end_user_revoke_tokens,
    membership_create,
    scopes_clean,
    signing_key_revoke,
    signing_key_rotate,
    tenant_create,
    tenant_set_active,
)

LIMIT_FIELDS = (
    "max_connections",
    "max_connections_per_user",
    "publishes_per_minute",
    "key_publishes_per_minute",
    "client_messages_per_second",
    "max_subscriptions_per_connection",
    "retention_days",
    "max_payload_bytes",
)


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    tenant_field = "pk"
    # Deleting a tenant would cascade through its whole history; deactivate it instead.
    writes = frozenset({ADD, CHANGE})
    staff_write_roles = frozenset()  # staff see their own tenant's limits, read-only
    list_display = (
        "slug",
        "name",
        "is_active",
        "max_connections",
        "publishes_per_minute",
        "retention_days",
        "created_at",
    )
    list_filter = ("is_active",)
    search_fields = ("slug", "name")
    actions = ("deactivate_tenants", "activate_tenants", "rotate_signing_keys")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ("slug", "name", "is_active", *LIMIT_FIELDS, "allowed_origins")
        return fields if obj is None else (*fields, "created_at", "updated_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The slug names the tenant in logs, seeds and scripts; it stays what it was created as.
        return () if obj is None else ("slug", "created_at", "updated_at")

    def save_scoped(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj.save()
            if "is_active" in form.changed_data:
                tenant_set_active(tenant=obj, active=obj.is_active)
            return
        # tenant_create also makes the tenant's first signing key, so tokens can be minted at once.
        limits = {name: form.cleaned_data[name] for name in (*LIMIT_FIELDS, "is_active", "allowed_origins")}
        adopt_saved(obj, tenant_create(slug=obj.slug, name=obj.name, **limits))

    @admin.action(description="Deactivate selected tenants", permissions=["platform"])
    def deactivate_tenants(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_active(request, queryset, active=False)

    @admin.action(description="Activate selected tenants", permissions=["platform"])
    def activate_tenants(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._set_active(request, queryset, active=True)

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Tenant], *, active: bool) -> None:
        changed = 0
        for tenant in self.scope(request, queryset):
            if tenant.is_active != active:
                tenant_set_active(tenant=tenant, active=active)
                self.log_change(request, tenant, "Activated." if active else "Deactivated.")
                changed += 1
        self.message_user(request, f"{'Activated' if active else 'Deactivated'} {changed} tenant(s).")

    @admin.action(description="Rotate signing key of selected tenants", permissions=["platform"])
    def rotate_signing_keys(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        rotated = 0
        for tenant in self.scope(request, queryset):
            new_key = signing_key_rotate(tenant=tenant)
            self.log_change(request, tenant, f"Rotated signing key; new kid {new_key.kid}.")
            rotated += 1
        self.message_user(
            request,
            f"Rotated the signing key of {rotated} tenant(s). Tokens signed with the previous key stay "
            "valid until the next rotation.",
        )


@admin.register(Membership)
class MembershipAdmin(TenantScopedAdmin):
    # Only superusers manage staff; a tenant's admins may see who their colleagues are.
    staff_view_roles = frozenset({ADMIN})
    staff_write_roles = frozenset()
    list_display = ("user", "tenant", "role", "external_id", "created_at")
    list_filter = ("tenant", "role")
    list_select_related = ("user", "tenant")
    search_fields = ("user__username", "user__email", "external_id", "tenant__slug")
    autocomplete_fields = ("user",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ("user", "tenant", "role", "external_id")
        return fields if obj is None else (*fields, "created_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else ("user", "created_at")

    def save_scoped(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj.save()
            return
        created = membership_create(user=obj.user, tenant=obj.tenant, role=obj.role, external_id=obj.external_id)
        adopt_saved(obj, created)


class ApiKeyCreationForm(TenantGuardedForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKey.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do. The secret is shown once, right after the key is created.",
    )

    class Meta:
        model = ApiKey
        fields = ("tenant", "name", "scopes")

    def clean_scopes(self) -> list[str]:
        try:
            return scopes_clean(self.cleaned_data["scopes"])
        except ValidationFailed as error:
            raise forms.ValidationError(error.message) from None


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    # Revoke, don't delete: events keep pointing at the key that published them.
    writes = frozenset({ADD, CHANGE})
    list_display = ("name", "key_display", "tenant", "scopes", "active", "created_at", "last_used_at", "revoked_at")
    list_filter = ("tenant", RevokedFilter)
    list_select_related = ("tenant",)
    search_fields = ("name", "prefix", "tenant__slug")
    actions = ("revoke_keys",)

    @admin.display(description="Key")
    def key_display(self, obj: ApiKey) -> str:
        return f"hk_{obj.prefix}_…"

    @admin.display(description="Active", boolean=True)
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # secret_hash is never among them: not even the hash of a credential leaves the database.
        if obj is None:
            return ("tenant", "name", "scopes")
        return ("tenant", "name", "key_display", "scopes", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else ("key_display", "scopes", "created_at", "last_used_at", "revoked_at")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyCreationForm
        return super().get_form(request, obj, change=change, **kwargs)

    def save_scoped(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        api_key, raw_secret = api_key_create(tenant=obj.tenant, name=obj.name, scopes=form.cleaned_data["scopes"])
        adopt_saved(obj, api_key)
        # The one time the secret is ever shown: Herald keeps only its hash.
        messages.warning(
            request,
            format_html(
                "Copy this API key now; it will not be shown again: <code class='herald-secret'>{}</code>",
                raw_secret,
            ),
        )

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        staff_tenant = self.staff_tenant(request)
        revoked = 0
        for api_key in self.scope(request, queryset).select_related("tenant"):
            if api_key.is_active:
                api_key_revoke(tenant=staff_tenant or api_key.tenant, api_key=api_key)
                self.log_change(request, api_key, "Revoked.")
                revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).")


@admin.register(SigningKey)
class SigningKeyAdmin(TenantScopedAdmin):
    # Rotation is a tenant action; the secret itself is never displayed, filtered or searched.
    writes = frozenset()
    fields = ("tenant", "kid", "created_at", "revoked_at")
    exclude = ("secret",)
    list_display = ("kid", "tenant", "active", "created_at", "revoked_at")
    list_filter = ("tenant", RevokedFilter)
    list_select_related = ("tenant",)
    search_fields = ("kid", "tenant__slug")

    actions = ("revoke_signing_keys",)

    @admin.display(description="Active", boolean=True)
    def active(self, obj: SigningKey) -> bool:
        return obj.revoked_at is None

    @admin.action(description="Revoke selected keys and disconnect their clients", permissions=["revoke"])
    def revoke_signing_keys(self, request: HttpRequest, queryset: QuerySet[SigningKey]) -> None:
        revoked = 0
        for key in self.scope(request, queryset).select_related("tenant"):
            if key.revoked_at is None:
                signing_key_revoke(tenant=key.tenant, signing_key=key)
                self.log_change(request, key, "Revoked; its connections were closed.")
                revoked += 1
        self.message_user(request, f"Revoked {revoked} signing key(s); their live connections are being closed.")


@admin.register(EndUser)
class EndUserAdmin(TenantScopedAdmin):
    # An external id is the tenant's own identity for a person: tokens and inbox rows hang off it,
    # so it is created or deleted, never renamed.
    writes = frozenset({ADD, DELETE})
    list_display = ("external_id", "tenant", "created_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("external_id", "tenant__slug")
    readonly_fields = ("created_at",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("tenant", "external_id") if obj is None else ("tenant", "external_id", "created_at")

    actions = ("revoke_tokens",)

    def save_scoped(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        adopt_saved(obj, end_user_ensure(tenant=obj.tenant, external_id=obj.external_id))

    @admin.action(description="Revoke their tokens and disconnect them", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[EndUser]) -> None:
        users = list(self.scope(request, queryset).select_related("tenant"))
        for end_user in users:
            end_user_revoke_tokens(tenant=end_user.tenant, external_id=end_user.external_id)
            self.log_change(request, end_user, "Tokens revoked; connections closed.")
        self.message_user(request, f"Revoked the tokens of {len(users)} end user(s).")

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        from notifications.models import Notification

        to_delete, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        # Inbox rows are read-only so nobody rewrites delivery history, but they belong to their
        # end user and go with them.
        perms_needed.discard(Notification._meta.verbose_name)
        return to_delete, model_count, perms_needed, protected


# Django users and groups carry no tenant: only platform admins manage them, and tenant staff
# never see them, even with auth permission rows granted by hand.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class PlatformUserAdmin(PlatformOnlyAdmin, UserAdmin):  # type: ignore[type-arg]
    pass


@admin.register(Group)
class PlatformGroupAdmin(PlatformOnlyAdmin, GroupAdmin):
    pass
