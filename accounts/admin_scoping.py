"""Who may see and do what in Herald's Django admin: superusers everything, tenant staff only their tenant."""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest

from accounts.models import Membership, Tenant

# Credentials are never a changelist filter: Django allows `?<local field>__startswith=...` on any
# changelist, and watching which rows stay listed would reveal a secret one character at a time.
SECRET_FIELD_NAMES = frozenset({"secret", "secret_hash", "password"})

ADMIN = Membership.Role.ADMIN.value
VIEWER = Membership.Role.VIEWER.value
ADD, CHANGE, DELETE = "add", "change", "delete"


def is_platform_admin(request: HttpRequest) -> bool:
    user = request.user
    return bool(getattr(user, "is_active", False) and getattr(user, "is_superuser", False))


def staff_membership(request: HttpRequest) -> Membership | None:
    """The Membership of a signed-in tenant staff user, or None (superusers included: they are
    not scoped). The reverse one-to-one accessor caches the answer, a miss too, on request.user,
    so every permission check of one request shares one query."""
    user = request.user
    if is_platform_admin(request) or not (getattr(user, "is_active", False) and getattr(user, "is_staff", False)):
        return None
    membership: Membership | None = getattr(user, "herald_membership", None)
    return membership


def adopt_saved(target: models.Model, saved: models.Model) -> None:
    """Turn the admin's unsaved instance into the row a service just wrote, so the admin's change
    log, messages and redirect (which all use the instance they passed to save_model) see it."""
    for field in saved._meta.concrete_fields:
        setattr(target, field.attname, getattr(saved, field.attname))
    target._state.adding = False
    target._state.db = saved._state.db


class TenantGuardedForm(forms.ModelForm):
    """The base form of every scoped admin. Its tenant can never be chosen by tenant staff and
    never changes once the row exists; every other choice must belong to the row's tenant."""

    # Set by TenantScopedAdmin.get_form on the class it builds for one request.
    pinned_tenant: ClassVar[Tenant | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields.get("tenant")
        if not isinstance(field, forms.ModelChoiceField):
            return
        # A disabled field ignores whatever was POSTed and keeps its initial value, yet still takes
        # part in validation, so per-tenant unique constraints (topic key, external id) are checked.
        if self.pinned_tenant is not None:
            # Tenant staff: always their own tenant, whatever the POST says.
            field.disabled = True
            field.queryset = Tenant.objects.filter(pk=self.pinned_tenant.pk)
            field.widget = forms.HiddenInput()
            self.initial["tenant"] = self.pinned_tenant.pk
        elif self.instance.pk is not None:
            # A row never moves between tenants: its topics, subscriptions and inbox would not follow.
            field.disabled = True
            field.queryset = Tenant.objects.filter(pk=self.instance.tenant_id)
            if isinstance(field.widget, RelatedFieldWidgetWrapper):
                field.widget.can_add_related = field.widget.can_change_related = False
                field.widget.can_view_related = False
        # Otherwise a superuser is adding a row and chooses its tenant.

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        tenant = cleaned.get("tenant") if "tenant" in self.fields else None
        tenant_id = tenant.pk if isinstance(tenant, Tenant) else getattr(self.instance, "tenant_id", None)
        if tenant_id is None:
            return cleaned
        for name, field in self.fields.items():
            value = cleaned.get(name)
            if name == "tenant" or value is None:
                continue
            if isinstance(field, forms.ModelMultipleChoiceField):
                chosen = list(value)
            elif isinstance(field, forms.ModelChoiceField):
                chosen = [value]
            else:
                continue
            # Staff only ever get their own tenant's choices; this stops a superuser from wiring a
            # subscription to one tenant's topic and another tenant's user.
            if any(getattr(item, "tenant_id", tenant_id) != tenant_id for item in chosen):
                self.add_error(name, "Choose one that belongs to the same tenant.")
        return cleaned


class TenantScopedAdmin(admin.ModelAdmin):
    """The one place tenant scoping lives. Every Herald ModelAdmin derives from it and only
    declares which writes its model allows and which staff roles may see and change it.

    Tenant staff need no auth.Permission rows: rights come from the Membership role alone, and
    permission rows are ignored, so none granted by mistake can widen a staff user's reach."""

    # The path from this model to its Tenant (`pk` for the Tenant model itself).
    tenant_field: ClassVar[str] = "tenant"
    # What anyone at all may do besides viewing; an empty set makes the model read-only.
    writes: ClassVar[frozenset[str]] = frozenset({ADD, CHANGE, DELETE})
    # Which Membership roles may view, and which may do `writes`, within their own tenant.
    staff_view_roles: ClassVar[frozenset[str]] = frozenset({ADMIN, VIEWER})
    staff_write_roles: ClassVar[frozenset[str]] = frozenset({ADMIN})
    # Columns and filters that only make sense to someone who sees several tenants.
    platform_only_names: ClassVar[frozenset[str]] = frozenset({"tenant"})

    form = TenantGuardedForm

    # --- Who is asking ------------------------------------------------------------------------------

    def staff_tenant(self, request: HttpRequest) -> Tenant | None:
        """The tenant a staff user is confined to; None for a superuser (or nobody)."""
        membership = staff_membership(request)
        return membership.tenant if membership is not None else None

    def tenant_id_of(self, obj: models.Model) -> Any:
        return obj.pk if self.tenant_field == "pk" else getattr(obj, f"{self.tenant_field}_id")

    def _allowed(self, request: HttpRequest, obj: models.Model | None, write: str | None) -> bool:
        if write is not None and write not in self.writes:
            return False
        if is_platform_admin(request):
            return True
        membership = staff_membership(request)
        roles = self.staff_view_roles if write is None else self.staff_write_roles
        if membership is None or membership.role not in roles:
            return False
        return obj is None or self.tenant_id_of(obj) == membership.tenant_id

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request, None, None)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj, None)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._allowed(request, None, ADD)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj, CHANGE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._allowed(request, obj, DELETE)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        """For revoking actions (keys, tokens): platform admins and the tenant's admins; the
        queryset is scoped, so a tenant admin only ever revokes their own tenant's."""
        membership = staff_membership(request)
        return is_platform_admin(request) or (membership is not None and membership.role == ADMIN)

    def has_platform_permission(self, request: HttpRequest) -> bool:
        """For actions declared with allowed_permissions=("platform",): superusers only."""
        return is_platform_admin(request)

    # --- What they see ------------------------------------------------------------------------------

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if is_platform_admin(request):
            return queryset
        membership = staff_membership(request)
        if membership is None or membership.role not in self.staff_view_roles:
            return queryset.none()
        return queryset.filter(**{self.tenant_field: membership.tenant_id})

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Changelists, object pages (get_object), actions and autocomplete all start here, so
        # another tenant's id is "not found" exactly like an id that does not exist.
        return self.scope(request, super().get_queryset(request))

    def choices_for(self, request: HttpRequest, model: type[models.Model]) -> QuerySet[Any] | None:
        """The rows a staff user may pick in a relation field; None leaves Django's default."""
        tenant = self.staff_tenant(request)
        if tenant is None:
            return None if is_platform_admin(request) else model._default_manager.none()
        if model is Tenant:
            return Tenant.objects.filter(pk=tenant.pk)
        if any(field.name == "tenant" for field in model._meta.concrete_fields):
            return model._default_manager.filter(tenant=tenant)
        return model._default_manager.none()  # a relation outside tenants (users): nothing

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs:
            queryset = self.choices_for(request, db_field.related_model)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs:
            queryset = self.choices_for(request, db_field.related_model)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form_class: Any = super().get_form(request, obj, change=change, **kwargs)
        # modelform_factory built this class for this request alone, so setting it here is safe.
        form_class.pinned_tenant = self.staff_tenant(request)
        return form_class

    def get_list_display(self, request: HttpRequest) -> Any:
        columns = super().get_list_display(request)
        if is_platform_admin(request):
            return columns
        return [column for column in columns if column not in self.platform_only_names]

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = super().get_list_filter(request)
        if is_platform_admin(request):
            return filters
        scoped: list[Any] = []
        for item in filters:
            if isinstance(item, str) and item in self.platform_only_names:
                continue
            if isinstance(item, str) and self.model._meta.get_field(item.split(LOOKUP_SEP)[0]).is_relation:
                # The plain relation filter lists every row of the related table, other tenants'
                # included; this one lists only values that occur in the (scoped) changelist.
                item = (item, admin.RelatedOnlyFieldListFilter)
            scoped.append(item)
        return scoped

    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        if SECRET_FIELD_NAMES.intersection(lookup.split(LOOKUP_SEP)):
            return False
        return super().lookup_allowed(lookup, value, request)

    # --- What they change ---------------------------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        tenant = self.staff_tenant(request)
        if tenant is not None and self.tenant_field != "pk":
            # The form already pins the tenant; this holds even if a subclass's form does not.
            if change and not self.get_queryset(request).filter(pk=obj.pk).exists():
                raise PermissionDenied
            obj.tenant = tenant
        self.save_scoped(request, obj, form, change)

    def save_scoped(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Write the row, its tenant already checked. Subclasses call their services here."""
        obj.save()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        if not self.has_delete_permission(request, obj):
            raise PermissionDenied
        self.delete_scoped(request, obj)

    def delete_scoped(self, request: HttpRequest, obj: Any) -> None:
        obj.delete()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        super().delete_queryset(request, self.scope(request, queryset))


class PlatformOnlyAdmin(admin.ModelAdmin):
    """For admins outside Herald's tenants (Django users and groups): superusers only, whatever
    permission rows a staff user has, so tenant staff can never edit users or grant themselves
    rights."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_platform_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_admin(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_platform_admin(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_admin(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_admin(request)
