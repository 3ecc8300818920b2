"""REST view for minting connection tokens (POST /api/v1/tokens)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.models import EXTERNAL_ID_PATTERN
from accounts.permissions import ApiKeyScope
from accounts.principals import ApiKeyPrincipal
from accounts.ratelimit import consume
from config.api_fields import StrictIntegerField, StrictRegexField
from config.herald import herald_settings
from notifications.api.views import ERRORS
from notifications.models import TOPIC_KEY_PATTERN


class TokenInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    user_id = StrictRegexField(EXTERNAL_ID_PATTERN, max_length=200, help_text="Your id for the end user.")
    ttl_seconds = StrictIntegerField(
        required=False,
        min_value=60,
        help_text="Lifetime in seconds: 60 to HERALD_TOKEN_MAX_LIFETIME_SECONDS (default 86400); default 900.",
    )
    topics = serializers.ListField(
        child=StrictRegexField(TOPIC_KEY_PATTERN, max_length=128),
        required=False,
        allow_null=True,
        max_length=100,
        help_text="If given, the only topics this connection may subscribe to live (including private ones).",
    )


class TokenOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()
    user_id = serializers.CharField()


class TokenMintView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"POST": "publish"}

    @extend_schema(
        operation_id="tokens_mint",
        request=TokenInSerializer,
        responses={201: TokenOutSerializer, **ERRORS},
        summary="Mint a connection token for an end user",
    )
    def post(self, request: Request) -> Response:
        principal = request.user
        assert isinstance(principal, ApiKeyPrincipal)
        consume(
            "tokens.ip",
            key=request.META.get("REMOTE_ADDR") or "unknown",
            limit=herald_settings.TOKENS_PER_IP_PER_MINUTE,
            period=60,
        )
        serializer = TokenInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        token, expires_at = services.connection_token_mint(
            tenant=principal.tenant,
            user_id=data["user_id"],
            lifetime_seconds=data.get("ttl_seconds"),
            topics=data.get("topics"),
        )
        return Response({"token": token, "expires_at": expires_at, "user_id": data["user_id"]}, status=201)


class UserTokensRevokeView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"POST": "admin"}

    @extend_schema(
        operation_id="users_revoke_tokens",
        request=None,
        responses={204: None, **ERRORS},
        summary="Refuse every token issued to a user so far and close their live connections",
    )
    def post(self, request: Request, user_id: str) -> Response:
        principal = request.user
        assert isinstance(principal, ApiKeyPrincipal)
        services.end_user_revoke_tokens(tenant=principal.tenant, external_id=user_id)
        return Response(status=204)
