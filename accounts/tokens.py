"""Connection tokens: short-lived JWTs (HS256) signed with a per-tenant SigningKey, naming it in
the `kid` header. `token_encode` signs; `token_verify` checks everything a token must satisfy."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from accounts.exceptions import TokenExpired, Unauthorized
from accounts.models import EXTERNAL_ID_PATTERN, SigningKey
from config.db import fetch_one
from config.herald import herald_settings

ALGORITHM = "HS256"
# Clock skew tolerated between the machine that minted a token and the one checking it.
LEEWAY_SECONDS = 10
_KID_PATTERN = re.compile(r"^[a-f0-9]{8,32}$")
# Same shape as notifications.models.TOPIC_KEY_PATTERN (kept here to avoid an import cycle).
_TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_INVALID = "The connection token is not valid."


@dataclass(frozen=True)
class VerifiedToken:
    signing_key: SigningKey
    user_id: str
    topics: tuple[str, ...] | None
    expires_at: datetime
    issued_at: int


def new_signing_secret() -> str:
    # 48 random bytes: well above the 32 bytes HS256 needs to resist brute force.
    return secrets.token_urlsafe(48)


def new_kid() -> str:
    return secrets.token_hex(8)


def token_encode(
    *, signing_key: SigningKey, user_id: str, lifetime: timedelta, topics: list[str] | None
) -> tuple[str, datetime]:
    now = datetime.now(tz=UTC).replace(microsecond=0)
    expires_at = now + lifetime
    claims: dict[str, object] = {
        "sub": user_id,
        "aud": herald_settings.TOKEN_AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": secrets.token_urlsafe(12),
    }
    if topics is not None:
        claims["topics"] = topics
    token = jwt.encode(claims, signing_key.secret, algorithm=ALGORITHM, headers={"kid": signing_key.kid})
    return token, expires_at


def token_verify(token: str) -> VerifiedToken:
    """Return the verified token or raise Unauthorized/TokenExpired. Every failure that could tell
    an attacker something (unknown key, other tenant's key, bad signature) has the same message."""
    if not isinstance(token, str) or len(token) > 8192 or token.count(".") != 2:
        raise Unauthorized(_INVALID)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise Unauthorized(_INVALID) from None
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not _KID_PATTERN.match(kid):
        raise Unauthorized(_INVALID)
    # On every connect: a lookup without the ORM's compile.
    signing_key = fetch_one(SigningKey, "m.kid = %s AND m.revoked_at IS NULL", [kid], related="tenant")
    if signing_key is None:
        raise Unauthorized(_INVALID)
    try:
        claims = jwt.decode(
            token,
            signing_key.secret,
            algorithms=[ALGORITHM],
            audience=herald_settings.TOKEN_AUDIENCE,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except jwt.InvalidTokenError:
        raise Unauthorized(_INVALID) from None

    issued_at, expires = claims["iat"], claims["exp"]
    now = datetime.now(tz=UTC).timestamp()
    max_lifetime = herald_settings.TOKEN_MAX_LIFETIME_SECONDS
    if (
        not isinstance(issued_at, int)
        or not isinstance(expires, int)
        or issued_at > now + LEEWAY_SECONDS
        or expires - issued_at > max_lifetime
    ):
        raise Unauthorized(_INVALID)
    user_id = claims["sub"]
    if not isinstance(user_id, str) or not EXTERNAL_ID_PATTERN.match(user_id):
        raise Unauthorized(_INVALID)
    topics = claims.get("topics")
    if topics is not None:
        if not isinstance(topics, list) or not all(
            isinstance(topic, str) and _TOPIC_PATTERN.match(topic) for topic in topics
        ):
            raise Unauthorized(_INVALID)
        topics = tuple(topics)
    return VerifiedToken(
        signing_key=signing_key,
        user_id=user_id,
        topics=topics,
        expires_at=datetime.fromtimestamp(expires, tz=UTC),
        issued_at=issued_at,
    )
