"""The WebSocket endpoint /ws/v1/: a thin consumer that parses frames (protocol.py), authorises,
and calls selectors/services. Live frames reach it from the node's hub (hub.py), not from a
channel-layer channel of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import DatabaseError

from accounts import credentials
from accounts.exceptions import (
    Forbidden,
    HeraldError,
    RateLimited,
    ServiceUnavailable,
    TenantInactive,
    TokenExpired,
    Unauthorized,
    ValidationFailed,
)
from accounts.principals import EndUserPrincipal
from accounts.ratelimit import auth_failure_record, auth_failures_check
from config.db import in_thread
from config.herald import herald_settings
from notifications import delivery, metrics, presence, protocol, selectors, services
from notifications.exceptions import ProtocolError
from notifications.hub import Hub, get_hub
from notifications.protocol import ClientFrame, ClientFrameType, CloseCode, ErrorCode
from notifications.transport import Outgoing, direct_socket

logger = logging.getLogger("herald.ws")

# Event ids remembered per connection to drop duplicates: a topic frame arriving both live-only
# and as an inbox row, an event on two topics, and the seam of a resume (an event both replayed
# and arriving live). While a replay and the live frames buffered during it are sent, every id is
# kept. After that, an event's frames to one tenant's sockets come together: fan-out is serial per
# tenant, and a round pushes at most fanout.JOBS_PER_TENANT_ROUND (200) events that a replay may
# already have read. So the newest SEEN_IDS_KEPT ids are enough, trimmed back to that once
# SEEN_IDS_SLACK more have come (deleting the oldest id on every frame made each delete scan the
# dict's freed slots). A busy socket's window: ~9 KB (512 ids took 18.5 KB). Events the fan-out
# sends in one message only (`once`: one topic, or only direct recipients) are not remembered at
# all: only a replay can have sent them before, and a replay's ids are remembered.
SEEN_IDS_KEPT = 256
SEEN_IDS_SLACK = 64
# A run's second copy (a socket in two of its groups) must find every id of the run still here.
assert delivery.RUN_MAX_EVENTS <= SEEN_IDS_KEPT
# After closing a slow client (4010), how long it has to read up to the close frame before its
# TCP connection is dropped and its buffered frames discarded.
SLOW_CLIENT_ABORT_SECONDS = 2.0


_AUTH_CLOSE_CODES: dict[type[HeraldError], CloseCode] = {
    TokenExpired: CloseCode.TOKEN_EXPIRED,
    TenantInactive: CloseCode.FORBIDDEN,
    Unauthorized: CloseCode.UNAUTHORIZED,
    RateLimited: CloseCode.RATE_LIMITED,
}


class NotificationConsumer(AsyncWebsocketConsumer):
    # No channel-layer channel per consumer: the hub receives for the whole process (hub.py).
    channel_layer_alias = "herald-none"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """AsyncConsumer.__call__ without a channel layer, awaiting the client's next message
        directly. Channels' await_many_dispatch wraps every receive in a new Task and an
        asyncio.wait, even for a single source: a Task, a future and their frames held by every
        idle connection, and a Task per client frame."""
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            with contextlib.suppress(StopConsumer):  # raised by websocket_disconnect: exit cleanly
                while True:
                    await self.dispatch(await receive())
        finally:
            # A handler that raised (the server then closes with 1011) or a cancelled task never
            # gets websocket.disconnect: leave the hub and free the presence slot all the same.
            if getattr(self, "auth_timer", None) is not None:
                await self.disconnect(1011)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' dispatch() runs close_old_connections() in a worker thread before EVERY
        # handler. Our handlers touch the database only through config.db.in_thread, which
        # does that itself, so the extra thread hop per frame is skipped.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- connection lifecycle ------------------------------------------------------------------

    async def connect(self) -> None:
        self.connection_id = secrets.token_hex(8)
        self.principal: EndUserPrincipal | None = None
        self.hub: Hub | None = None
        self.tenant_id = 0
        self.user_pk = 0
        self.signing_kid: str | None = None
        self.groups_joined: list[str] = []
        self.live_topics: dict[str, int] = {}
        self.seen: dict[int, bool] = {}
        self.replaying = False
        self.buffered: list[tuple[Outgoing, bool, bool]] = []
        self.closing = False
        self.last_received = time.monotonic()
        self.counted = False
        # Token bucket for client frames: refilled at the tenant's rate, holding two seconds' worth.
        self.bucket_rate = 0.0
        self.bucket = 0.0
        self.bucket_at = 0.0
        self.refused_frames = 0
        # uvicorn, Daphne: live frames go straight to the socket's transport; elsewhere through a queue.
        # The server's own send: the one this consumer was given, unless the session middleware
        # wrapped it (accounts.middleware.SessionOriginMiddleware then keeps the server's).
        self.direct = direct_socket(self.scope.get("herald_server_send", self.base_send))
        if self.direct is not None:
            self.direct.limit_kernel_buffer(herald_settings.SOCKET_SEND_BUFFER_BYTES)
        self.outbox: deque[str] | None = None  # created on first use: most servers take the fast path
        self.writer: asyncio.Task[None] | None = None
        self.closer: asyncio.Future[None] | None = None
        self.max_outbound_bytes = herald_settings.MAX_OUTBOUND_BYTES
        self.max_outbound_frames = herald_settings.MAX_OUTBOUND_FRAMES
        await self.accept()
        if self.direct is not None:
            self.direct.accepted()
        loop = asyncio.get_running_loop()
        self.auth_timer: asyncio.TimerHandle | None = loop.call_later(
            herald_settings.AUTH_TIMEOUT_SECONDS, lambda: loop.create_task(self._auth_timeout())
        )

    async def _auth_timeout(self) -> None:
        if self.principal is None and not self.closing:
            await self.close_for(CloseCode.AUTH_TIMEOUT, "no auth frame in time")

    async def disconnect(self, code: int) -> None:
        self.closing = True
        # The auth timer exists from the end of connect() until the first disconnect(): no timer,
        # nothing to release. (Not a flag of its own: a 30th attribute makes CPython give every
        # consumer an unshared instance dict, measured at +1.3 KB of RSS per connection.)
        timer, self.auth_timer = getattr(self, "auth_timer", None), None
        if timer is None:
            return
        timer.cancel()
        if self.hub is not None:
            await self.hub.unregister(self, self.groups_joined)
            if self.counted:
                metrics.connection_closed(self.tenant_id)
                await self.hub.presence.release(self.tenant_id, self.user_pk)

    async def close_for(self, code: int, reason: str) -> None:
        """Close with a documented code (protocol.CloseCode); safe to call more than once."""
        if self.closing:
            return
        self.closing = True
        logger.info("closing connection", extra={"connection": self.connection_id, "code": int(code), "reason": reason})
        try:
            await self.close(code=int(code), reason=reason[:120])
        except Exception:  # a server that refuses this code (autobahn refuses 1009 from the app)
            await self.close(code=int(CloseCode.BAD_REQUEST))

    # --- frames from the client ----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        self.last_received = time.monotonic()
        if self.closing:
            return
        limit = herald_settings.MAX_CLIENT_FRAME_BYTES
        # A character is at most 4 bytes in UTF-8: only encode when the length alone can't decide.
        size = len(bytes_data or b"") if text_data is None else len(text_data)
        if text_data is not None and limit // 4 < size <= limit:
            size = len(text_data.encode("utf-8", "surrogatepass"))
        if size > limit:
            await self.close_for(CloseCode.MESSAGE_TOO_BIG, "frame too large")
            return
        if self.principal is not None:
            metrics.frame_in(self.tenant_id)
            if not self._take_token():
                metrics.rate_limited("ws.frames", self.tenant_id)
                return
        try:
            frame = protocol.parse_client_frame(text_data, bytes_data)
        except ProtocolError as error:
            if self.principal is None:
                await self.close_for(CloseCode.BAD_REQUEST, error.message)
            else:
                await self._send_error(error, error.request_id)
            return
        if self.principal is None:
            if frame.type is not ClientFrameType.AUTH:
                await self.close_for(CloseCode.BAD_REQUEST, "the first frame must be auth")
                return
            # The client was on time; checking its credentials may take a while under load.
            if self.auth_timer is not None:
                self.auth_timer.cancel()
            await self._authenticate(frame)
            return
        try:
            await self._handle(frame)
        except HeraldError as error:
            await self._send_error(error, frame.request_id)
        except DatabaseError:
            logger.warning("database error on a client frame", extra={"connection": self.connection_id}, exc_info=True)
            await self._send_frame(
                protocol.error_frame(
                    code=ErrorCode.UNAVAILABLE, message="Storage is unavailable; retry.", request_id=frame.request_id
                )
            )
        except Exception:
            logger.exception("client frame failed", extra={"connection": self.connection_id})
            await self._send_frame(
                protocol.error_frame(code=ErrorCode.INTERNAL, message="Internal error.", request_id=frame.request_id)
            )

    def _take_token(self) -> bool:
        """Spend one token of the frame budget; refuse the frame (and, if the client keeps going
        far past the limit, the connection) when the bucket is empty."""
        now = time.monotonic()
        self.bucket = min(2 * self.bucket_rate, self.bucket + (now - self.bucket_at) * self.bucket_rate)
        self.bucket_at = now
        if self.bucket >= 1:
            self.bucket -= 1
            self.refused_frames = max(0, self.refused_frames - 1)
            return True
        self.refused_frames += 1
        retry_after = max(1, int((1 - self.bucket) / self.bucket_rate + 0.999))
        if self.refused_frames > 5 * self.bucket_rate:  # five seconds' worth of frames ignored the errors
            self.closer = asyncio.ensure_future(self.close_for(CloseCode.RATE_LIMITED, "too many frames; slow down"))
        elif self.refused_frames == 1 or self.refused_frames % 10 == 0:  # don't answer a flood frame by frame
            self.closer = asyncio.ensure_future(
                self._send_frame(
                    protocol.error_frame(
                        code=ErrorCode.RATE_LIMITED,
                        message=f"At most {self.bucket_rate:g} frames per second; frames are being dropped.",
                        retry_after=retry_after,
                    )
                )
            )
        return False

    async def _authenticate(self, frame: ClientFrame) -> None:
        try:
            principal, (topic_ids, refused) = await in_thread(self._check_auth)(frame)
        except HeraldError as error:
            code = next((c for kind, c in _AUTH_CLOSE_CODES.items() if isinstance(error, kind)), CloseCode.FORBIDDEN)
            await self.close_for(code, error.message)
            return
        except DatabaseError:
            logger.warning("database error during auth", extra={"connection": self.connection_id}, exc_info=True)
            await self.close_for(CloseCode.TRY_AGAIN_LATER, "storage unavailable")
            return
        if self.auth_timer is not None:
            self.auth_timer.cancel()
        self.tenant_id, self.user_pk = principal.tenant.pk, principal.end_user.pk
        self.hub = await get_hub()
        tenant = principal.tenant
        full = await self.hub.presence.acquire(
            self.tenant_id,
            self.user_pk,
            tenant_limit=tenant.max_connections,
            user_limit=tenant.max_connections_per_user,
        )
        if full:
            who = "tenant" if full == presence.TENANT_FULL else "user"
            await self.close_for(CloseCode.CONNECTION_LIMIT, f"too many connections for this {who}")
            return
        self.counted = True
        metrics.connection_opened(self.tenant_id, tenant.slug)
        self.principal = principal
        self.signing_kid = principal.signing_kid
        self.bucket_rate = float(tenant.client_messages_per_second)
        self.bucket, self.bucket_at = 2 * self.bucket_rate, time.monotonic()
        # Join the live groups BEFORE reading the backlog: anything committed after the read
        # arrives live, and is buffered until the backlog has been sent.
        self.replaying = True
        self.groups_joined += [
            delivery.group_for_user(self.tenant_id, self.user_pk),
            delivery.group_for_tenant(self.tenant_id),
        ]
        try:
            await self.hub.register(self)
            await self._join_topics(topic_ids)
        except (ConnectionError, ServiceUnavailable):  # the channel layer (Redis) is unreachable
            await self.close_for(CloseCode.TRY_AGAIN_LATER, "live delivery unavailable")
            return
        try:
            start = await in_thread(selectors.socket_start)(
                user=principal.end_user, since=frame.since, topic_ids=list(topic_ids.values())
            )
        except DatabaseError:
            await self.close_for(CloseCode.TRY_AGAIN_LATER, "storage unavailable")
            return
        logger.info(
            "connected",
            extra={"connection": self.connection_id, "tenant": principal.tenant.slug, "via": principal.via},
        )
        await self._send_frame(
            protocol.welcome_frame(
                connection_id=self.connection_id,
                user_id=principal.user_id,
                tenant=principal.tenant.slug,
                heartbeat=herald_settings.HEARTBEAT_SECONDS,
                unread=start.unread,
                cursor=start.backlog.start,
            )
        )
        if refused:  # the allowed topics are joined; say which were not
            await self._send_error(selectors.topics_refused_error(refused), frame.request_id)
        replayed = await self._replay(start.backlog)
        await self._send_frame(
            protocol.resumed_frame(
                recovered=start.backlog.recovered,
                replayed=replayed,
                cursor=start.backlog.cursor,
                reason=start.backlog.reason,
            )
        )
        await self._end_replay()

    def _check_auth(self, frame: ClientFrame) -> tuple[EndUserPrincipal, tuple[dict[str, int], list[str]]]:
        principal = self._principal_for(frame.token)
        return principal, selectors.topics_partition(principal=principal, keys=frame.topics)

    def _principal_for(self, token: str | None) -> EndUserPrincipal:
        ip = (self.scope.get("client") or ["unknown"])[0]
        auth_failures_check(ip=ip)
        try:
            principal = self._principal_lookup(token)
        except Unauthorized as error:
            if not isinstance(error, TokenExpired):
                auth_failure_record(ip=ip)
            raise
        if principal.via == "token" and not principal.tenant.origin_allowed(self._origin()):
            raise Forbidden("This tenant does not accept connections from this site.")
        return principal

    def _origin(self) -> str | None:
        for name, value in self.scope.get("headers", []):
            if name == b"origin":
                return value.decode("latin-1")
        return None

    def _principal_lookup(self, token: str | None) -> EndUserPrincipal:
        if token is not None:
            return credentials.end_user_principal_from_token(token)
        if self.scope.get("herald_session_allowed"):
            principal_from_session = credentials.end_user_principal_from_session(
                credentials.session_user(self.scope.get("session"))
            )
            if principal_from_session is not None:
                return principal_from_session
        raise Unauthorized("Send a connection token in the auth frame.")

    async def _replay(self, backlog: selectors.Backlog) -> int:
        """Send the backlog (live frames stay buffered until _end_replay)."""
        sent = 0
        for frame in backlog.frames:
            if self._first_sight(frame["id"], frame["inbox"]):
                await self.send(text_data=protocol.encode(frame))
                sent += 1
        return sent

    async def _end_replay(self) -> None:
        """Release the live frames that arrived during a replay, dropping those already sent.
        Called after the frame that ends the replay (`resumed`, or the subscribe `ack`), so the
        client counts them as new."""
        buffered, self.buffered = self.buffered, []
        for frames, inbox, once in buffered:  # still replaying: no seen id is forgotten yet
            if not self.closing:
                self._write(frames, inbox, once)
        self.replaying = False
        self._trim_seen()  # the newest replayed ids stay: their live frames may still be on the way

    async def _handle(self, frame: ClientFrame) -> None:
        assert self.principal is not None
        user = self.principal.end_user
        kind = frame.type
        if kind is ClientFrameType.PING:
            await self._send_frame({"type": protocol.ServerFrameType.PONG, "id": frame.request_id})
        elif kind is ClientFrameType.PONG:
            return
        elif kind is ClientFrameType.AUTH:
            raise ProtocolError("Already authenticated.", code=ErrorCode.ALREADY_AUTHENTICATED)
        elif kind is ClientFrameType.SUBSCRIBE:
            await self._subscribe(frame)
        elif kind is ClientFrameType.UNSUBSCRIBE:
            assert self.hub is not None
            for key in frame.topics:
                topic_id = self.live_topics.pop(key, None)
                if topic_id is not None:
                    group = delivery.group_for_topic(self.tenant_id, topic_id)
                    self.hub.leave(self, group)
                    self.groups_joined.remove(group)
            await self._ack(frame, topics=sorted(self.live_topics))
        else:
            change = await in_thread(_INBOX_ACTIONS[kind])(user=user, ids=frame.ids)
            await self._ack(frame, updated=change.updated, not_found=change.not_found, unread=change.unread)

    async def _subscribe(self, frame: ClientFrame) -> None:
        assert self.principal is not None
        limit = min(
            herald_settings.MAX_SUBSCRIPTIONS_PER_CONNECTION, self.principal.tenant.max_subscriptions_per_connection
        )
        new_keys = tuple(key for key in frame.topics if key not in self.live_topics)
        if len(self.live_topics) + len(new_keys) > limit:
            raise ValidationFailed(f"At most {limit} topics per connection.", fields={"topics": ["Too many topics."]})
        topic_ids = await in_thread(selectors.topics_for_listening)(principal=self.principal, keys=new_keys)
        if frame.since is None:
            await self._join_topics(topic_ids)
            await self._ack(frame, topics=sorted(self.live_topics))
            return
        self.replaying = True
        try:
            await self._join_topics(topic_ids)
            backlog = await in_thread(selectors.backlog_since)(
                user=self.principal.end_user, since=frame.since, topic_ids=list(topic_ids.values()), inbox=False
            )
            result: dict[str, Any] = {
                "recovered": backlog.recovered,
                "replayed": await self._replay(backlog),
                "cursor": protocol.cursor_text(backlog.cursor),
            }
            if backlog.reason:
                result["reason"] = backlog.reason
            await self._ack(frame, topics=sorted(self.live_topics), **result)
        finally:
            await self._end_replay()

    async def _join_topics(self, topic_ids: dict[str, int]) -> None:
        """Listen to these topics (none of which this connection listens to yet): all of them, or,
        if the channel layer (Redis) cannot be reached, none (ServiceUnavailable)."""
        assert self.hub is not None
        groups = {key: delivery.group_for_topic(self.tenant_id, topic_id) for key, topic_id in topic_ids.items()}
        try:
            for group in groups.values():
                await self.hub.join(self, group)
        except ConnectionError as error:
            for group in groups.values():
                self.hub.leave(self, group)
            raise ServiceUnavailable("Live delivery is unavailable; retry.") from error
        self.groups_joined += groups.values()
        self.live_topics.update(topic_ids)

    # --- frames to the client ------------------------------------------------------------------

    def push(self, frames: Outgoing, inbox: bool, once: bool = False) -> None:
        """Called by the hub with already-encoded frames. Never waits: a slow client is closed
        instead of delaying the hub (and every other client). `once`: these events come in no
        other live message (delivery.push_to_users), so only a replay can have sent them already."""
        if self.closing:
            return
        if self.replaying:
            self.buffered.append((frames, inbox, once))
            return
        self._write(frames, inbox, once)

    def _write(self, frames: Outgoing, inbox: bool, once: bool) -> None:
        seen, event_ids = self.seen, frames.event_ids
        if once:
            if seen and any(event_id in seen for event_id in event_ids):  # replayed already
                left = frames.only([event_id not in seen for event_id in event_ids])
                if left is None:
                    return
                frames = left
        else:
            fresh = [event_id is None or self._first_sight(event_id, inbox) for event_id in event_ids]
            if not all(fresh):
                left = frames.only(fresh)
                if left is None:
                    return
                frames = left
        direct = self.direct
        if direct is not None:
            if direct.write(frames) > self.max_outbound_bytes:
                self.closer = asyncio.ensure_future(self._close_slow())
            return
        if self.outbox is None:
            self.outbox = deque()
        if len(self.outbox) + len(frames.texts) > self.max_outbound_frames:
            self.closer = asyncio.ensure_future(self._close_slow())
            return
        self.outbox.extend(frames.texts)
        if self.writer is None or self.writer.done():
            self.writer = asyncio.ensure_future(self._drain_outbox())

    async def _drain_outbox(self) -> None:
        outbox = self.outbox
        while outbox and not self.closing:
            await self.send(text_data=outbox.popleft())

    async def _close_slow(self) -> None:
        if self.closing:
            return
        await self.close_for(CloseCode.SLOW_CONSUMER, "too slow: frames were not read in time; reconnect and resume")
        if self.outbox is not None:
            self.outbox.clear()  # the writer may still hold it for the send in flight
            self.outbox = None
        if self.direct is not None:
            # The close frame waits behind everything unread; a client that stopped reading never
            # gets it, so its connection (and buffer) is dropped soon after.
            asyncio.get_running_loop().call_later(SLOW_CLIENT_ABORT_SECONDS, self.direct.abort)

    def _first_sight(self, event_id: int, inbox: bool) -> bool:
        """True if this event should be sent: never sent, or sent only as a live-only frame and
        now arriving as an inbox row."""
        seen = self.seen
        earlier = seen.get(event_id)
        if earlier is not None and (earlier or not inbox):
            return False
        seen[event_id] = inbox
        if len(seen) > SEEN_IDS_KEPT + SEEN_IDS_SLACK and not self.replaying:
            self._trim_seen()
        return True

    def _trim_seen(self) -> None:
        if len(self.seen) > SEEN_IDS_KEPT:
            self.seen = dict(list(self.seen.items())[-SEEN_IDS_KEPT:])  # the oldest go, in one go

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        if not self.closing:
            await self.send(text_data=protocol.encode(frame))

    async def _ack(self, frame: ClientFrame, **result: Any) -> None:
        await self._send_frame(protocol.ack_frame(request_id=frame.request_id, **result))

    async def _send_error(self, error: HeraldError, request_id: str | int | None) -> None:
        metrics.error("ws", error.code, self.tenant_id or None)
        await self._send_frame(
            protocol.error_frame(
                code=error.code,
                message=error.message,
                request_id=request_id,
                fields=error.fields,
                retry_after=error.retry_after,
            )
        )


def _mark_all_read(*, user: Any, ids: tuple[int, ...]) -> services.InboxChange:
    return services.inbox_mark_all_read(user=user)


_INBOX_ACTIONS = {
    ClientFrameType.MARK_READ: services.inbox_mark_read,
    ClientFrameType.MARK_UNREAD: services.inbox_mark_unread,
    ClientFrameType.MARK_ALL_READ: _mark_all_read,
    ClientFrameType.ARCHIVE: services.inbox_archive,
    ClientFrameType.UNARCHIVE: services.inbox_unarchive,
}
