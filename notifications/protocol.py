"""The WebSocket protocol of /ws/v1/, defined once: every frame type, error code and close code,
the parser for client frames and the builders of server frames. docs/protocol.md documents exactly
this module (tests/notifications/test_protocol_doc.py keeps them in step)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

import orjson

from notifications.exceptions import ProtocolError
from notifications.models import TOPIC_KEY_PATTERN

PROTOCOL_VERSION = 1
PATH = "/ws/v1/"
# Request ids are echoed back verbatim; they are the client's, so keep them short.
MAX_REQUEST_ID_LENGTH = 64
MAX_IDS_PER_FRAME = 100
MAX_TOKEN_LENGTH = 8192
# ASCII digits only: str.isdigit() would accept '²', which int() then refuses.
_CURSOR_PATTERN = re.compile(r"^[0-9]{1,18}\Z")


class ClientFrameType(StrEnum):
    AUTH = "auth"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    MARK_READ = "mark_read"
    MARK_UNREAD = "mark_unread"
    MARK_ALL_READ = "mark_all_read"
    ARCHIVE = "archive"
    UNARCHIVE = "unarchive"
    PING = "ping"
    PONG = "pong"


class ServerFrameType(StrEnum):
    WELCOME = "welcome"
    NOTIFICATION = "notification"
    RESUMED = "resumed"
    UNREAD = "unread"
    ACK = "ack"
    ERROR = "error"
    PING = "ping"
    PONG = "pong"


class ErrorCode(StrEnum):
    """Codes of `error` frames (and of REST error bodies, which share them)."""

    BAD_FRAME = "bad_frame"  # not JSON, not an object, binary, or missing `type`
    UNKNOWN_TYPE = "unknown_type"  # `type` is not a client frame type
    INVALID = "invalid"  # a field is missing or has the wrong type or value
    ALREADY_AUTHENTICATED = "already_authenticated"  # a second `auth` frame
    FORBIDDEN = "forbidden"  # e.g. a topic this connection may not subscribe to
    NOT_FOUND = "not_found"  # e.g. a notification id that is not in this user's inbox
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 (an error code, not a secret)
    TENANT_INACTIVE = "tenant_inactive"
    UNAVAILABLE = "unavailable"  # the database is unreachable; retry
    INTERNAL = "internal"  # a bug; logged on the server with the connection id


class CloseCode(IntEnum):
    """Close codes Herald sends. Except 1009 (sent by the WebSocket server itself), they are in the
    application range 4000-4999: Daphne (autobahn) refuses to send 1011-1013 from an application,
    so 4011-4013 carry those standard meanings instead."""

    MESSAGE_TOO_BIG = 1009  # a client frame over the size limit
    BAD_REQUEST = 4000  # first frame was not a valid `auth` frame
    UNAUTHORIZED = 4001  # token missing, forged, for another audience, or unknown key
    AUTH_TIMEOUT = 4002  # no `auth` frame within the auth timeout
    FORBIDDEN = 4003  # tenant deactivated, or credentials revoked while connected
    TOKEN_EXPIRED = 4004  # token expired: fetch a new one, then reconnect
    HEARTBEAT_TIMEOUT = 4008  # nothing received from the client for 2.5 heartbeat intervals
    CONNECTION_LIMIT = 4009  # too many concurrent connections for this tenant or user
    SLOW_CONSUMER = 4010  # the client did not read its frames fast enough: reconnect and resume
    INTERNAL_ERROR = 4011  # a bug: reconnect with backoff
    SERVICE_RESTART = 4012  # this node is shutting down: reconnect (to another node) and resume
    TRY_AGAIN_LATER = 4013  # a dependency is down, or live delivery was interrupted: back off, resume
    RATE_LIMITED = 4029  # frames sent far over the rate limit, or too many failed auths from this IP


# Close codes after which a client should not reconnect automatically with the same credentials.
TERMINAL_CLOSE_CODES = frozenset({CloseCode.UNAUTHORIZED, CloseCode.FORBIDDEN, CloseCode.BAD_REQUEST})


@dataclass(frozen=True)
class ClientFrame:
    type: ClientFrameType
    request_id: str | int | None = None
    token: str | None = None
    since: int | None = None
    topics: tuple[str, ...] = ()
    ids: tuple[int, ...] = ()


def parse_client_frame(text: str | None, data: bytes | None = None) -> ClientFrame:
    """Parse one client frame; raise ProtocolError (with the request id, when there is one)."""
    if text is None:
        raise ProtocolError("Binary frames are not supported; send JSON text frames.")
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError("The frame is not valid JSON.") from None
    if not isinstance(raw, dict):
        raise ProtocolError("A frame must be a JSON object.")
    request_id = _request_id(raw.get("id"))
    frame_type = raw.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError("A frame needs a string `type`.", request_id=request_id)
    try:
        kind = ClientFrameType(frame_type)
    except ValueError:
        raise ProtocolError(
            f"Unknown frame type {frame_type[:40]!r}.", code=ErrorCode.UNKNOWN_TYPE, request_id=request_id
        ) from None
    fields: dict[str, Any] = {"type": kind, "request_id": request_id}
    try:
        if kind is ClientFrameType.AUTH:
            fields["token"] = _optional_token(raw.get("token"))
            fields["since"] = _optional_cursor(raw.get("since"))
            fields["topics"] = _topics(raw.get("topics"), required=False)
        elif kind is ClientFrameType.SUBSCRIBE:
            fields["topics"] = _topics(raw.get("topics"), required=True)
            fields["since"] = _optional_cursor(raw.get("since"))
        elif kind is ClientFrameType.UNSUBSCRIBE:
            fields["topics"] = _topics(raw.get("topics"), required=True)
        elif kind in (
            ClientFrameType.MARK_READ,
            ClientFrameType.MARK_UNREAD,
            ClientFrameType.ARCHIVE,
            ClientFrameType.UNARCHIVE,
        ):
            fields["ids"] = _ids(raw.get("ids"))
    except _FieldError as error:
        raise ProtocolError(
            f"Invalid `{error.field}`: {error.message}",
            code=ErrorCode.INVALID,
            request_id=request_id,
            fields={error.field: [error.message]},
        ) from None
    return ClientFrame(**fields)


class _FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message


def _request_id(value: object) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ProtocolError("`id` must be a string or an integer.")
    if isinstance(value, int) and abs(value) < 2**53:
        return value
    if isinstance(value, str) and len(value) <= MAX_REQUEST_ID_LENGTH:
        return value
    raise ProtocolError(f"`id` must be an integer or a string of at most {MAX_REQUEST_ID_LENGTH} characters.")


def _optional_token(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TOKEN_LENGTH:
        raise _FieldError("token", "must be a non-empty string")
    return value


def parse_cursor(value: object) -> int | None:
    """Cursors are the decimal stream positions Herald sends; None when absent or malformed."""
    if isinstance(value, str) and _CURSOR_PATTERN.match(value):
        return int(value)
    return None


def _optional_cursor(value: object) -> int | None:
    if value is None:
        return None
    cursor = parse_cursor(value)
    if cursor is None:
        raise _FieldError("since", "must be a cursor string from a previous frame")
    return cursor


def _topics(value: object, *, required: bool) -> tuple[str, ...]:
    from config.herald import herald_settings

    if value is None and not required:
        return ()
    limit = herald_settings.MAX_SUBSCRIPTIONS_PER_CONNECTION
    if not isinstance(value, list) or (required and not value) or len(value) > limit:
        raise _FieldError("topics", f"must be a list of 1-{limit} topic keys")
    for topic in value:
        if not isinstance(topic, str) or not TOPIC_KEY_PATTERN.match(topic):
            raise _FieldError("topics", "each topic must be a topic key string")
    return tuple(dict.fromkeys(value))


def _ids(value: object) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_IDS_PER_FRAME
        or not all(isinstance(item, int) and not isinstance(item, bool) and 0 < item < 2**63 for item in value)
    ):
        raise _FieldError("ids", f"must be a list of 1-{MAX_IDS_PER_FRAME} notification ids")
    return tuple(dict.fromkeys(value))


# --- Server frames -------------------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def cursor_text(seq: int) -> str:
    return str(seq)


def timestamp(moment: datetime) -> str:
    """Every timestamp Herald sends, over WebSocket and REST: UTC, microseconds, `Z`
    (the same as REST_FRAMEWORK["DATETIME_FORMAT"])."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def welcome_frame(
    *, connection_id: str, user_id: str, tenant: str, heartbeat: float, unread: int, cursor: int
) -> dict[str, Any]:
    return {
        "type": ServerFrameType.WELCOME,
        "protocol": PROTOCOL_VERSION,
        "connection_id": connection_id,
        "user": user_id,
        "tenant": tenant,
        "heartbeat": heartbeat,
        "unread": unread,
        "cursor": cursor_text(cursor),
    }


def notification_frame(
    *,
    event_id: int,
    seq: int,
    kind: str,
    topics: list[str],
    data: Any,
    title: str,
    body: str,
    url: str,
    created_at: datetime,
    inbox: bool,
    read: bool = False,
    archived: bool = False,
) -> dict[str, Any]:
    return {
        "type": ServerFrameType.NOTIFICATION,
        "id": event_id,
        "cursor": cursor_text(seq),
        "kind": kind,
        "topics": topics,
        "data": data,
        "title": title,
        "body": body,
        "url": url,
        "created_at": timestamp(created_at),
        "inbox": inbox,
        "read": read,
        "archived": archived,
    }


def resumed_frame(*, recovered: bool, replayed: int, cursor: int, reason: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": ServerFrameType.RESUMED,
        "recovered": recovered,
        "replayed": replayed,
        "cursor": cursor_text(cursor),
    }
    if reason:
        frame["reason"] = reason
    return frame


def unread_frame(*, count: int) -> dict[str, Any]:
    return {"type": ServerFrameType.UNREAD, "count": count}


def ack_frame(*, request_id: str | int | None, **result: Any) -> dict[str, Any]:
    return {"type": ServerFrameType.ACK, "id": request_id, **result}


def error_frame(
    *,
    code: str,
    message: str,
    request_id: str | int | None = None,
    fields: dict[str, Any] | None = None,
    retry_after: int | None = None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": ServerFrameType.ERROR, "id": request_id, "code": code, "message": message}
    if fields:
        frame["fields"] = fields
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return frame


PING_TEXT = encode({"type": ServerFrameType.PING})
