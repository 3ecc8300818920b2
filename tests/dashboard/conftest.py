"""Fixtures for the dashboard: tenant staff users (with a membership) and signed-in clients."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import Membership, Tenant
from accounts.services import membership_create


@pytest.fixture
def make_staff(db: Any, django_user_model: type[User]) -> Callable[..., User]:
    """A Django user; with a tenant, also that tenant's staff member receiving as `external_id`."""

    def make(username: str, tenant: Tenant | None = None, external_id: str = "") -> User:
        user = django_user_model.objects.create_user(username=username, password="correct horse battery")
        if tenant is not None:
            membership_create(user=user, tenant=tenant, role=Membership.Role.ADMIN, external_id=external_id)
        return user

    return make


@pytest.fixture
def staff(make_staff: Callable[..., User], tenant: Tenant) -> User:
    return make_staff("ann", tenant, external_id="ann-ext")


@pytest.fixture
def staff_client(staff: User) -> Client:
    client = Client()
    client.force_login(staff)
    return client
