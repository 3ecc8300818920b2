"""REST views: parse with a serializer, authorise with a permission, call one service or selector,
render the answer. Errors are rendered by config/exception_handler.py."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.exceptions import ValidationFailed
from accounts.models import EXTERNAL_ID_PATTERN
from accounts.permissions import ApiKeyScope, IsEndUser
from accounts.principals import ApiKeyPrincipal, EndUserPrincipal
from notifications import selectors, services
from notifications.api import serializers as s
from notifications.models import TOPIC_KEY_PATTERN

ERRORS = {code: s.ErrorSerializer for code in (400, 401, 403, 404, 409, 413, 429, 503)}
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Retries with the same key and body return the first answer; another body is a 409.",
)
_IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")


def _api_key(request: Request) -> ApiKeyPrincipal:
    principal = request.user
    assert isinstance(principal, ApiKeyPrincipal)  # guaranteed by ApiKeyScope
    return principal


def _end_user(request: Request) -> EndUserPrincipal:
    principal = request.user
    assert isinstance(principal, EndUserPrincipal)  # guaranteed by IsEndUser
    return principal


def _publish(request: Request, items: list[services.EventInput]) -> services.PublishResult:
    principal = _api_key(request)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY_PATTERN.match(key):
        raise ValidationFailed(fields={"Idempotency-Key": ["1-255 printable ASCII characters."]})
    request_hash = ""
    if key is not None:
        canonical = orjson.dumps({"path": request.path, "body": request.data}, option=orjson.OPT_SORT_KEYS)
        request_hash = hashlib.sha256(canonical).hexdigest()
    return services.events_publish(
        tenant=principal.tenant,
        api_key=principal.api_key,
        items=items,
        idempotency_key=key,
        request_hash=request_hash,
    )


def _replay_headers(result: services.PublishResult) -> dict[str, str]:
    return {"Idempotent-Replayed": "true"} if result.replayed else {}


class EventPublishView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"POST": "publish"}

    @extend_schema(
        operation_id="events_publish",
        request=s.EventInSerializer,
        responses={202: s.EventAcceptedSerializer, **ERRORS},
        parameters=[IDEMPOTENCY_KEY],
        summary="Publish one event",
    )
    def post(self, request: Request) -> Response:
        serializer = s.EventInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = _publish(request, [s.event_input(serializer.validated_data)])
        return Response({"id": result.event_ids[0]}, status=202, headers=_replay_headers(result))


class EventBatchView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"POST": "publish"}

    @extend_schema(
        operation_id="events_publish_batch",
        request=s.BatchInSerializer,
        responses={202: s.BatchAcceptedSerializer, **ERRORS},
        parameters=[IDEMPOTENCY_KEY],
        summary="Publish up to 100 events, all or nothing",
    )
    def post(self, request: Request) -> Response:
        serializer = s.BatchInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        result = _publish(request, [s.event_input(item) for item in serializer.validated_data["events"]])
        results = [{"index": index, "id": event_id} for index, event_id in enumerate(result.event_ids)]
        return Response({"results": results}, status=202, headers=_replay_headers(result))


class EventDetailView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"GET": "read"}

    @extend_schema(
        operation_id="events_get",
        responses={200: s.EventOutSerializer, **ERRORS},
        summary="An event and its fan-out status",
    )
    def get(self, request: Request, event_id: int) -> Response:
        event = selectors.event_get(tenant=_api_key(request).tenant, event_id=event_id)
        return Response(s.EventOutSerializer(event).data)


def _page_cursor(request: Request, pattern: re.Pattern[str]) -> str | None:
    """The `cursor` query parameter: a key or id from a previous page, or None."""
    value = request.query_params.get("cursor")
    if value is not None and not pattern.match(value):
        raise ValidationFailed(fields={"cursor": ["Not a cursor from a previous page."]})
    return value or None


def _user_id(value: str) -> str:
    if not EXTERNAL_ID_PATTERN.match(value):
        raise ValidationFailed(fields={"user_id": ["Not a valid user id."]})
    return value


def _page_limit(request: Request) -> int:
    raw = request.query_params.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 200:
        raise ValidationFailed(fields={"limit": ["An integer from 1 to 200."]})
    return int(raw)


class TopicListView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"GET": "read", "POST": "admin"}

    @extend_schema(
        operation_id="topics_list",
        parameters=[OpenApiParameter("cursor", str), OpenApiParameter("limit", int)],
        responses={200: s.TopicPageSerializer, **ERRORS},
        summary="List topics (by key)",
    )
    def get(self, request: Request) -> Response:
        limit = _page_limit(request)
        topics = selectors.topic_list(tenant=_api_key(request).tenant)
        after = _page_cursor(request, TOPIC_KEY_PATTERN)
        if after:
            topics = topics.filter(key__gt=after)
        page = list(topics[: limit + 1])
        next_cursor = page[limit - 1].key if len(page) > limit else None
        return Response({"results": s.TopicSerializer(page[:limit], many=True).data, "next_cursor": next_cursor})

    @extend_schema(
        operation_id="topics_create",
        request=s.TopicSerializer,
        responses={201: s.TopicSerializer, **ERRORS},
        summary="Create a topic",
    )
    def post(self, request: Request) -> Response:
        serializer = s.TopicSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        topic = services.topic_create(tenant=_api_key(request).tenant, **serializer.validated_data)
        return Response(s.TopicSerializer(topic).data, status=201)


class TopicDetailView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"GET": "read", "PATCH": "admin", "DELETE": "admin"}

    @extend_schema(operation_id="topics_get", responses={200: s.TopicSerializer, **ERRORS}, summary="A topic")
    def get(self, request: Request, key: str) -> Response:
        return Response(s.TopicSerializer(selectors.topic_get(tenant=_api_key(request).tenant, key=key)).data)

    @extend_schema(
        operation_id="topics_update",
        request=s.TopicPatchSerializer,
        responses={200: s.TopicSerializer, **ERRORS},
        summary="Change a topic",
    )
    def patch(self, request: Request, key: str) -> Response:
        serializer = s.TopicPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        topic = services.topic_update(tenant=_api_key(request).tenant, key=key, changes=serializer.validated_data)
        return Response(s.TopicSerializer(topic).data)

    @extend_schema(
        operation_id="topics_delete", responses={204: None, **ERRORS}, summary="Delete a topic and its subscriptions"
    )
    def delete(self, request: Request, key: str) -> Response:
        services.topic_delete(tenant=_api_key(request).tenant, key=key)
        return Response(status=204)


class TopicSubscribersView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"GET": "read"}

    @extend_schema(
        operation_id="topics_subscribers",
        parameters=[OpenApiParameter("cursor", str), OpenApiParameter("limit", int)],
        responses={200: s.SubscriberPageSerializer, **ERRORS},
        summary="Users subscribed to a topic",
    )
    def get(self, request: Request, key: str) -> Response:
        limit = _page_limit(request)
        rows = selectors.topic_subscriber_ids(tenant=_api_key(request).tenant, key=key).order_by("user__external_id")
        after = _page_cursor(request, EXTERNAL_ID_PATTERN)
        if after:
            rows = rows.filter(user__external_id__gt=after)
        user_ids = list(rows.values_list("user__external_id", flat=True)[: limit + 1])
        next_cursor = user_ids[limit - 1] if len(user_ids) > limit else None
        return Response({"results": user_ids[:limit], "next_cursor": next_cursor})


class UserSubscriptionsView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"GET": "read", "POST": "admin"}

    @extend_schema(
        operation_id="subscriptions_list",
        responses={200: s.SubscriptionsSerializer, **ERRORS},
        summary="A user's topic subscriptions",
    )
    def get(self, request: Request, user_id: str) -> Response:
        keys = selectors.subscription_keys(tenant=_api_key(request).tenant, user_id=_user_id(user_id))
        return Response({"user_id": user_id, "topics": keys})

    @extend_schema(
        operation_id="subscriptions_add",
        request=s.SubscribeInSerializer,
        responses={200: s.SubscriptionsSerializer, **ERRORS},
        summary="Subscribe a user to topics (their events land in the user's inbox)",
    )
    def post(self, request: Request, user_id: str) -> Response:
        serializer = s.SubscribeInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        keys = services.subscriptions_add(
            tenant=_api_key(request).tenant, user_id=_user_id(user_id), topic_keys=serializer.validated_data["topics"]
        )
        return Response({"user_id": user_id, "topics": keys})


class UserSubscriptionDetailView(APIView):
    permission_classes = [ApiKeyScope]
    scopes = {"DELETE": "admin"}

    @extend_schema(
        operation_id="subscriptions_remove", responses={204: None, **ERRORS}, summary="Unsubscribe a user from a topic"
    )
    def delete(self, request: Request, user_id: str, key: str) -> Response:
        services.subscription_remove(tenant=_api_key(request).tenant, user_id=_user_id(user_id), topic_key=key)
        return Response(status=204)


# --- The end user's inbox (connection token as bearer) -------------------------------------------


class InboxView(APIView):
    permission_classes = [IsEndUser]

    @extend_schema(
        operation_id="inbox_list",
        parameters=[s.InboxQuerySerializer],
        responses={200: s.InboxPageSerializer, **ERRORS},
        summary="My notifications, newest first",
    )
    def get(self, request: Request) -> Response:
        query = s.InboxQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        user = _end_user(request).end_user
        page = selectors.inbox_list(
            user=user,
            unread_only=query.validated_data["unread"],
            archived=query.validated_data["archived"],
            before=query.validated_data.get("cursor"),
            limit=query.validated_data["limit"],
        )
        return Response(
            {
                "results": page.items,
                "next_cursor": page.next_cursor,
                "unread": selectors.unread_count(user=user),
                "stream_cursor": str(page.stream_cursor),
            }
        )


class UnreadCountView(APIView):
    permission_classes = [IsEndUser]

    @extend_schema(
        operation_id="inbox_unread_count", responses={200: s.CountSerializer, **ERRORS}, summary="My unread count"
    )
    def get(self, request: Request) -> Response:
        return Response({"count": selectors.unread_count(user=_end_user(request).end_user)})


def _inbox_change(change: services.InboxChange) -> Response:
    return Response({"updated": change.updated, "not_found": change.not_found, "unread": change.unread})


def _ids(request: Request) -> list[int]:
    serializer = s.IdsInSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return list(serializer.validated_data["ids"])


_IDS_SCHEMA: dict[str, Any] = {"request": s.IdsInSerializer, "responses": {200: s.InboxChangeSerializer, **ERRORS}}


class InboxReadView(APIView):
    permission_classes = [IsEndUser]

    @extend_schema(operation_id="inbox_read", summary="Mark notifications read", **_IDS_SCHEMA)
    def post(self, request: Request) -> Response:
        return _inbox_change(services.inbox_mark_read(user=_end_user(request).end_user, ids=_ids(request)))


class InboxUnreadView(APIView):
    permission_classes = [IsEndUser]

    @extend_schema(operation_id="inbox_unread", summary="Mark notifications unread", **_IDS_SCHEMA)
    def post(self, request: Request) -> Response:
        return _inbox_change(services.inbox_mark_unread(user=_end_user(request).end_user, ids=_ids(request)))


class InboxArchiveView(APIView):
    permission_classes = [IsEndUser]

    @extend_schema(operation_id="inbox_archive", summary="Archive notifications", **_IDS_SCHEMA)
    def post(self, request: Request) -> Response:
        return _inbox_change(services.inbox_archive(user=_end_user(request).end_user, ids=_ids(request)))


class InboxUnarchiveView(APIView):
    permission_classes = [IsEndUser]

    @extend_schema(operation_id="inbox_unarchive", summary="Take notifications out of the archive", **_IDS_SCHEMA)
    def post(self, request: Request) -> Response:
        return _inbox_change(services.inbox_unarchive(user=_end_user(request).end_user, ids=_ids(request)))


class InboxReadAllView(APIView):
    permission_classes = [IsEndUser]

    @extend_schema(
        operation_id="inbox_read_all",
        request=None,
        responses={200: s.InboxChangeSerializer, **ERRORS},
        summary="Mark all my notifications read",
    )
    def post(self, request: Request) -> Response:
        return _inbox_change(services.inbox_mark_all_read(user=_end_user(request).end_user))
