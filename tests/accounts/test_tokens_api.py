"""POST /api/v1/tokens, API key authentication and scopes."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt
import pytest

from accounts.models import ApiKey, EndUser, SigningKey
from accounts.services import api_key_revoke
from tests.conftest import api_key_of

pytestmark = pytest.mark.django_db


def test_mint_returns_a_short_lived_token_signed_with_the_tenant_key(api, tenant):
    response = api.post("/api/v1/tokens", {"user_id": "alice"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["user_id"] == "alice"
    header = jwt.get_unverified_header(body["token"])
    key = SigningKey.objects.get(kid=header["kid"])
    assert key.tenant == tenant and header["alg"] == "HS256"
    claims = jwt.decode(body["token"], key.secret, algorithms=["HS256"], audience="herald")
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 900
    assert "topics" not in claims
    assert datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")) > datetime.now(tz=UTC)
    assert EndUser.objects.filter(tenant=tenant, external_id="alice").exists()


def test_mint_with_topics_and_lifetime(api):
    body = api.post(
        "/api/v1/tokens", {"user_id": "bob", "ttl_seconds": 120, "topics": ["project.42"]}, format="json"
    ).json()
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["topics"] == ["project.42"]
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": 42}, "user_id"),
        ({"user_id": "a b"}, "user_id"),
        ({"user_id": "x" * 201}, "user_id"),
        ({"user_id": "a", "ttl_seconds": 10}, "ttl_seconds"),
        ({"user_id": "a", "ttl_seconds": "600"}, "ttl_seconds"),
        ({"user_id": "a", "ttl_seconds": 10**9}, "ttl_seconds"),
        ({"user_id": "a", "topics": "all"}, "topics"),
        ({"user_id": "a", "topics": ["bad key!"]}, "topics"),
    ],
)
def test_mint_validation_errors_name_the_field(api, body, field):
    response = api.post("/api/v1/tokens", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_no_credentials_is_401_with_json_and_www_authenticate(client):
    response = client.post("/api/v1/tokens", {"user_id": "a"}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "credential",
    ["hk_nope_nope", "hk_", "hk_abc", "not-a-key", "a.b.c", "hk_" + "x" * 300, "Basic Zm9vOmJhcg=="],
)
def test_invalid_credentials_are_401(client_for, tenant, credential):
    response = client_for(credential).get("/api/v1/topics")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_wrong_scheme_is_401(client, tenant, make_key):
    response = client.get("/api/v1/topics", HTTP_AUTHORIZATION=f"Token {make_key(tenant)}")
    assert response.status_code == 401


def test_right_prefix_wrong_secret_is_401(client_for, tenant, make_key):
    secret = make_key(tenant)
    tampered = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert client_for(tampered).get("/api/v1/topics").status_code == 401


def test_revoked_key_is_refused_immediately(client_for, tenant, make_key):
    secret = make_key(tenant)
    client = client_for(secret)
    assert client.get("/api/v1/topics").status_code == 200
    api_key_revoke(tenant=tenant, api_key=api_key_of(secret))
    response = client.get("/api/v1/topics")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_deactivated_tenant_cannot_publish(client_for, tenant, make_key):
    client = client_for(make_key(tenant))
    tenant.is_active = False
    tenant.save()
    response = client.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "tenant_inactive"


@pytest.mark.parametrize(
    ("scopes", "method", "path", "body", "allowed"),
    [
        (("read",), "post", "/api/v1/events", {"kind": "k", "recipients": ["a"]}, False),
        (("read",), "post", "/api/v1/tokens", {"user_id": "a"}, False),
        (("read",), "get", "/api/v1/topics", None, True),
        (("publish",), "get", "/api/v1/topics", None, False),
        (("publish",), "post", "/api/v1/events", {"kind": "k", "recipients": ["a"]}, True),
        (("publish",), "post", "/api/v1/tokens", {"user_id": "a"}, True),
        (("publish", "read"), "post", "/api/v1/topics", {"key": "t"}, False),
        (("admin",), "post", "/api/v1/topics", {"key": "t"}, True),
        (("admin",), "post", "/api/v1/events", {"kind": "k", "recipients": ["a"]}, True),
        (("read",), "post", "/api/v1/users/a/subscriptions", {"topics": ["t"]}, False),
    ],
)
def test_scopes_are_enforced(client_for, tenant, make_key, scopes, method, path, body, allowed):
    response = getattr(client_for(make_key(tenant, scopes)), method)(path, body, format="json")
    if allowed:
        assert response.status_code < 400, response.json()
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


def test_last_used_is_recorded(client_for, tenant, make_key):
    secret = make_key(tenant)
    assert api_key_of(secret).last_used_at is None
    client_for(secret).get("/api/v1/topics")
    assert api_key_of(secret).last_used_at is not None


def test_keys_are_stored_hashed_with_only_the_prefix_in_clear(tenant, make_key):
    secret = make_key(tenant)
    key = ApiKey.objects.get()
    stored = " ".join(str(value) for value in ApiKey.objects.values_list().get())
    assert secret.split("_", 2)[2] not in stored
    assert key.prefix == secret.split("_")[1]
    assert len(key.secret_hash) == 64


def test_end_user_token_cannot_use_api_key_endpoints(client_for, tenant, make_token):
    client = client_for(make_token(tenant, "alice"))
    response = client.post("/api/v1/events", {"kind": "k", "recipients": ["alice"]}, format="json")
    assert response.status_code == 403
    assert "API key" in response.json()["error"]["message"]
