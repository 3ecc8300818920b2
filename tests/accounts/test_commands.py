"""Operator commands: output on stdout, the secret alone on the last line."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey, Membership, SigningKey, Tenant
from notifications.models import Topic
from tests.conftest import api_key_of

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_create_tenant_makes_a_signing_key_and_prints_the_slug():
    lines = run("create_tenant", "initech", "--name", "Initech")
    assert lines[-1] == "initech"
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.name == "Initech"
    assert SigningKey.objects.filter(tenant=tenant, revoked_at__isnull=True).count() == 1


def test_create_tenant_refuses_a_bad_or_taken_slug():
    run("create_tenant", "initech")
    with pytest.raises(CommandError):
        run("create_tenant", "initech")
    with pytest.raises(CommandError):
        run("create_tenant", "not a slug")


def test_create_api_key_prints_the_secret_last_and_stores_its_hash(tenant, client_for):
    lines = run("create_api_key", "acme", "--scopes", "publish,read")
    secret = lines[-1]
    assert secret.startswith("hk_")
    key = api_key_of(secret)
    assert key.scopes == ["publish", "read"]
    assert secret not in " ".join(lines[:-1])
    assert client_for(secret).get("/api/v1/topics").status_code == 200


def test_create_api_key_errors():
    with pytest.raises(CommandError, match="No tenant"):
        run("create_api_key", "nobody")
    Tenant.objects.create(slug="t", name="t")
    with pytest.raises(CommandError):
        run("create_api_key", "t", "--scopes", "everything")


def test_seed_demo_is_repeatable_and_the_printed_key_works(client_for):
    first = run("seed_demo", "--password", "pw-one-123")
    second = run("seed_demo", "--password", "pw-two-123")
    tenant = Tenant.objects.get(slug="demo")
    assert Membership.objects.get(user__username="demo").tenant == tenant
    assert Topic.objects.filter(tenant=tenant).count() == 3
    assert client_for(second[-1]).get("/api/v1/topics").status_code == 200
    assert client_for(first[-1]).get("/api/v1/topics").status_code == 401  # replaced
    assert ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).count() == 1
    assert any("pw-two-123" in line for line in second)
