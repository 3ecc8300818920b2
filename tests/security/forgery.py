"""Forged and tampered credentials: the table of connection tokens and API keys an attacker can
present, each with the answer Herald must give over REST (status, error code) and over WebSocket
(close code, or `welcome` for the few valid controls that prove the table is not vacuous)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

MAX_LIFETIME = 86400  # HERALD_TOKEN_MAX_LIFETIME_SECONDS's default
LEEWAY = 10  # accounts.tokens.LEEWAY_SECONDS


@dataclass(frozen=True)
class Keys:
    """What the forger works with: tenant A's active signing key (the tests know it; a real
    attacker would not), tenant B's, a revoked key of A, and an end-user id of A."""

    kid: str
    secret: str
    other_kid: str
    other_secret: str
    revoked_kid: str
    revoked_secret: str
    user: str


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(keys: Keys, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": keys.user, "aud": "herald", "iat": now, "exp": now + 900, "jti": "forged"}
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


DROP = object()


def signed(
    keys: Keys, *, secret: str | None = None, kid: Any = None, header: dict[str, Any] | None = None, **claims: Any
) -> str:
    headers: dict[str, Any] = {"kid": keys.kid if kid is None else kid, **(header or {})}
    if headers["kid"] is DROP:
        del headers["kid"]
    return jwt.encode(claims_for(keys, **claims), secret or keys.secret, algorithm="HS256", headers=headers)


def hand_made(header: dict[str, Any], claims: dict[str, Any], secret: str | None) -> str:
    """A JWT assembled by hand, HMAC-SHA256-signed with `secret` whatever `alg` says, or unsigned."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def _tampered(keys: Keys) -> str:
    """A genuine token whose payload was swapped after signing (another user), signature kept."""
    header, _, signature = signed(keys).split(".")
    payload = b64url(json.dumps(claims_for(keys, sub="someone-else")).encode())
    return f"{header}.{payload}.{signature}"


def _stripped(keys: Keys) -> str:
    header, payload, _ = signed(keys).split(".")
    return f"{header}.{payload}."


@dataclass(frozen=True)
class ForgedToken:
    name: str
    build: Callable[[Keys], str]
    # "unauthorized" (REST 401 / WS 4001), "token_expired" (401 / 4004), "valid" (controls),
    # "too_long" (REST 401; WS 4000: the auth frame itself is invalid), "empty" (REST 401; WS 4000)
    outcome: str


_NOW = lambda: int(time.time())  # noqa: E731 (evaluated when each token is built)

FORGED_TOKENS: list[ForgedToken] = [
    # Controls: these MUST work, or every refusal below proves nothing.
    ForgedToken("valid token (control)", lambda k: signed(k), "valid"),
    ForgedToken("expired 3 s ago, inside the 10 s leeway (control)", lambda k: signed(k, exp=_NOW() - 3), "valid"),
    ForgedToken(
        "lifetime exactly the cap (control)",
        lambda k: signed(k, iat=_NOW(), exp=_NOW() + MAX_LIFETIME),
        "valid",
    ),
    # Algorithm attacks.
    ForgedToken(
        "alg none, no signature",
        lambda k: hand_made({"alg": "none", "kid": k.kid}, claims_for(k), None),
        "unauthorized",
    ),
    ForgedToken(
        "alg None (capitalised)",
        lambda k: hand_made({"alg": "None", "kid": k.kid}, claims_for(k), None),
        "unauthorized",
    ),
    ForgedToken(
        "alg none with a real signature",
        lambda k: hand_made({"alg": "none", "kid": k.kid}, claims_for(k), k.secret),
        "unauthorized",
    ),
    ForgedToken(
        "alg HS512 with the right secret",
        lambda k: jwt.encode(claims_for(k), k.secret, algorithm="HS512", headers={"kid": k.kid}),
        "unauthorized",
    ),
    ForgedToken(
        "alg RS256 header, HMAC-signed with the secret (confusion)",
        lambda k: hand_made({"alg": "RS256", "kid": k.kid}, claims_for(k), k.secret),
        "unauthorized",
    ),
    ForgedToken("no alg header", lambda k: hand_made({"kid": k.kid}, claims_for(k), k.secret), "unauthorized"),
    # Keys.
    ForgedToken("wrong secret, right kid", lambda k: signed(k, secret=secrets.token_urlsafe(48)), "unauthorized"),
    ForgedToken("B's kid with A's secret", lambda k: signed(k, kid=k.other_kid), "unauthorized"),
    ForgedToken("A's kid with B's secret", lambda k: signed(k, secret=k.other_secret), "unauthorized"),
    ForgedToken("revoked signing key", lambda k: signed(k, kid=k.revoked_kid, secret=k.revoked_secret), "unauthorized"),
    ForgedToken("unknown kid", lambda k: signed(k, kid="0123456789abcdef"), "unauthorized"),
    ForgedToken("no kid", lambda k: signed(k, kid=DROP), "unauthorized"),
    ForgedToken("kid path traversal", lambda k: signed(k, kid="../../../etc/passwd"), "unauthorized"),
    ForgedToken("kid SQL", lambda k: signed(k, kid="' OR '1'='1"), "unauthorized"),
    ForgedToken(
        "kid an integer",
        lambda k: hand_made({"alg": "HS256", "kid": 12345678}, claims_for(k), k.secret),
        "unauthorized",
    ),
    ForgedToken(
        "jwk header carrying the attacker's own key",
        lambda k: signed(
            k,
            secret="attacker-secret-attacker-secret-attacker",
            header={"jwk": {"kty": "oct", "k": b64url(b"attacker-secret-attacker-secret-attacker")}},
        ),
        "unauthorized",
    ),
    # Claims, correctly signed: Herald must still refuse them.
    ForgedToken("wrong audience", lambda k: signed(k, aud="other-service"), "unauthorized"),
    ForgedToken("audience list without herald", lambda k: signed(k, aud=["other-service"]), "unauthorized"),
    ForgedToken("no audience", lambda k: signed(k, aud=DROP), "unauthorized"),
    ForgedToken("expired an hour ago", lambda k: signed(k, iat=_NOW() - 4000, exp=_NOW() - 3600), "token_expired"),
    ForgedToken(
        "expired just past the leeway", lambda k: signed(k, iat=_NOW() - 900, exp=_NOW() - 30), "token_expired"
    ),
    ForgedToken("iat an hour in the future", lambda k: signed(k, iat=_NOW() + 3600, exp=_NOW() + 4000), "unauthorized"),
    ForgedToken(
        "lifetime one second over the cap",
        lambda k: signed(k, iat=_NOW(), exp=_NOW() + MAX_LIFETIME + 1),
        "unauthorized",
    ),
    ForgedToken(
        "lifetime over the cap, backdated iat",
        lambda k: signed(k, iat=_NOW() - MAX_LIFETIME - 100, exp=_NOW() + 100),
        "unauthorized",
    ),
    ForgedToken("ten-year lifetime", lambda k: signed(k, exp=_NOW() + 10 * 365 * 86400), "unauthorized"),
    ForgedToken("no exp", lambda k: signed(k, exp=DROP), "unauthorized"),
    ForgedToken("no iat", lambda k: signed(k, iat=DROP), "unauthorized"),
    ForgedToken("no sub", lambda k: signed(k, sub=DROP), "unauthorized"),
    ForgedToken("iat a string", lambda k: signed(k, iat=str(_NOW())), "unauthorized"),
    ForgedToken("iat a float", lambda k: signed(k, iat=_NOW() + 0.5), "unauthorized"),
    ForgedToken("exp a string", lambda k: signed(k, exp=str(_NOW() + 900)), "unauthorized"),
    ForgedToken("nbf in the future", lambda k: signed(k, nbf=_NOW() + 3600), "unauthorized"),
    ForgedToken("sub not a valid user id", lambda k: signed(k, sub="alice smith"), "unauthorized"),
    ForgedToken("sub empty", lambda k: signed(k, sub=""), "unauthorized"),
    ForgedToken("sub an integer", lambda k: signed(k, sub=42), "unauthorized"),
    ForgedToken("sub 201 characters", lambda k: signed(k, sub="a" * 201), "unauthorized"),
    ForgedToken("topics a string", lambda k: signed(k, topics="news"), "unauthorized"),
    ForgedToken("topics with an invalid key", lambda k: signed(k, topics=["../news"]), "unauthorized"),
    # Tampering and garbage.
    ForgedToken("payload swapped after signing", _tampered, "unauthorized"),
    ForgedToken("signature stripped", _stripped, "unauthorized"),
    ForgedToken("garbage", lambda k: "not-a-token", "unauthorized"),
    ForgedToken("three empty parts", lambda k: "..", "unauthorized"),
    ForgedToken("header not JSON", lambda k: f"{b64url(b'{not json')}.{b64url(b'{}')}.sig", "unauthorized"),
    ForgedToken("an API key where a token belongs", lambda k: "hk_0123456789_" + "a" * 43, "unauthorized"),
    ForgedToken("8,193 characters", lambda k: (token := signed(k)) + "a" * (8193 - len(token)), "too_long"),
]

REST_EXPECTATION = {
    "valid": (200, None),
    "unauthorized": (401, "unauthorized"),
    "token_expired": (401, "token_expired"),
    "too_long": (401, "unauthorized"),
}
WS_EXPECTATION = {"valid": None, "unauthorized": 4001, "token_expired": 4004, "too_long": 4000}


@dataclass(frozen=True)
class ForgedKey:
    name: str
    build: Callable[[str, str, str], str]  # (A's key, B's key, A's revoked key) -> credential


def _splice(a_key: str, b_key: str) -> str:
    """B's prefix with A's secret."""
    return "_".join([*b_key.split("_", 2)[:2], a_key.split("_", 2)[2]])


FORGED_KEYS: list[ForgedKey] = [
    ForgedKey("unknown key", lambda a, b, r: "hk_0123456789_" + secrets.token_urlsafe(32)),
    ForgedKey("A's prefix, wrong secret", lambda a, b, r: a.rsplit("_", 1)[0] + "_" + secrets.token_urlsafe(32)),
    ForgedKey("B's prefix with A's secret", lambda a, b, r: _splice(a, b)),
    ForgedKey("A's key with a character dropped", lambda a, b, r: a[:-1]),
    ForgedKey("A's key with a character added", lambda a, b, r: a + "x"),
    ForgedKey("A's key upper-cased", lambda a, b, r: a.upper()),
    ForgedKey("revoked key of A", lambda a, b, r: r),
    ForgedKey("prefix only", lambda a, b, r: "hk_"),
    ForgedKey("empty secret", lambda a, b, r: a.rsplit("_", 1)[0] + "_"),
    ForgedKey("250-character key", lambda a, b, r: a + "x" * (250 - len(a))),
    ForgedKey("SQL in the prefix", lambda a, b, r: "hk_' OR '1'='1_" + "a" * 43),
    ForgedKey("wildcards in the prefix", lambda a, b, r: "hk_%_" + "a" * 43),
]
