"""Live delivery: the one module that builds channel-layer group names and sends to the channel
layer. Services and the fan-out call it; only the hub (notifications/hub.py) receives.

The channel layer is at-most-once: whatever it drops, a client recovers from the database when it
resumes from its cursor. So a failed send is logged and never fails the caller."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from config.herald import herald_settings

logger = logging.getLogger("herald.delivery")

# Every node receives all its live traffic on one channel named with this prefix (see hub.py).
NODE_CHANNEL_PREFIX = "herald-node"
# Fan-out processes wait for wake-ups on this channel (see fanout.py).
FANOUT_CHANNEL = "herald-fanout"
# Up to this many users, inbox frames go to each user's own group (only nodes holding that user
# get them); above it, one message to the tenant group carries the list of user ids, which costs
# one layer round trip instead of one per user. 16 keeps the common single-recipient case exact.
PER_USER_SEND_LIMIT = 16
# Message type the hub handles.
MESSAGE_TYPE = "herald.frame"


def group_for_tenant(tenant_id: int) -> str:
    return f"herald.t{tenant_id}"


def group_for_user(tenant_id: int, user_pk: int) -> str:
    return f"herald.t{tenant_id}.u{user_pk}"


def group_for_topic(tenant_id: int, topic_id: int) -> str:
    return f"herald.t{tenant_id}.k{topic_id}"


# A run of frames goes to a group in messages of at most this many bytes of (UTF-8) text, and
# at most a quarter of HERALD_MAX_OUTBOUND_BYTES, so that one write never makes a healthy client
# look slow (a message always holds at least one frame): bounds the layer message and each
# socket's write.
LIVE_MESSAGE_MAX_BYTES = 256 * 1024
# Events per run (fanout._same_audience): a socket in two of a run's groups gets the run's frames
# twice, and drops the second copies only while their ids are still in its seen-id window, which
# keeps the newest consumers.SEEN_IDS_KEPT (256) ids (asserted there).
RUN_MAX_EVENTS = 128


@dataclass(frozen=True, slots=True)
class LiveFrame:
    """One encoded frame for the hub: its text, the event's public id (None for a frame that is
    not an event, e.g. `unread`) and when the event was accepted (epoch seconds, for the
    publish-to-socket latency metric)."""

    text: str
    event_id: int | None = None
    published_at: float | None = None


def _group_send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the layer is best-effort: the database holds the truth
        logger.warning("live send failed", extra={"group": group}, exc_info=True)


def _chunks(frames: list[LiveFrame]) -> list[list[list[Any]]]:
    """The frames, in order, as the `frames` of as few messages as LIVE_MESSAGE_MAX_BYTES allows
    (built once per publish, however many groups they go to)."""
    limit = min(LIVE_MESSAGE_MAX_BYTES, herald_settings.MAX_OUTBOUND_BYTES // 4)
    chunks: list[list[list[Any]]] = []
    size = 0
    for frame in frames:
        length = len(frame.text.encode())
        if not chunks or size + length > limit:  # a chunk always takes its first frame
            chunks.append([])
            size = 0
        chunks[-1].append([frame.text, frame.event_id, frame.published_at])
        size += length
    return chunks


def _send_chunks(group: str, chunks: list[list[list[Any]]], fields: dict[str, Any]) -> None:
    for chunk in chunks:
        _group_send(group, {**fields, "group": group, "frames": chunk})


def push_to_users(
    *,
    tenant_id: int,
    user_pks: list[int],
    frames: list[LiveFrame],
    inbox: bool = True,
    topics: list[str] | None = None,
    once: bool = False,
) -> None:
    """Send encoded frames, in order, to every connection of these users (on the direct-write
    path, each message's frames in one write). `topics`: the events' topic keys, for the nodes' per-topic figures.
    `once`: the fan-out sends these events to no other group, so no connection can get them
    twice live, and connections skip remembering their ids (a replay's copy is still
    recognised): less work and memory per delivery."""
    if not user_pks or not frames:
        return
    fields: dict[str, Any] = {"type": MESSAGE_TYPE, "inbox": inbox, "topics": topics}
    if once:
        fields["once"] = True
    chunks = _chunks(frames)
    if len(user_pks) <= PER_USER_SEND_LIMIT:
        for user_pk in user_pks:
            _send_chunks(group_for_user(tenant_id, user_pk), chunks, fields)
    else:
        _send_chunks(group_for_tenant(tenant_id), chunks, {**fields, "users": user_pks})


def push_to_topic(
    *,
    tenant_id: int,
    topic_id: int,
    frames: list[LiveFrame],
    topics: list[str] | None = None,
    once: bool = False,
) -> None:
    """Send encoded frames, in order, to every connection listening live to a topic (`topics`,
    `once`: as in push_to_users)."""
    fields: dict[str, Any] = {"type": MESSAGE_TYPE, "inbox": False, "topics": topics}
    if once:
        fields["once"] = True
    _send_chunks(group_for_topic(tenant_id, topic_id), _chunks(frames), fields)


OPS_GROUP_PREFIX = "herald.ops."


def group_for_ops(tenant_id: int) -> str:
    """The operations dashboard's live figures of one tenant."""
    return f"{OPS_GROUP_PREFIX}t{tenant_id}"


async def publish_stats(tenant_id: int, text: str) -> None:
    """From a node's hub, once per second: its figures for one tenant (best effort)."""
    layer = get_channel_layer()
    if layer is None:
        return
    group = group_for_ops(tenant_id)
    try:
        await layer.group_send(group, {"type": MESSAGE_TYPE, "group": group, "frames": [[text, None, None]]})
    except Exception:
        logger.debug("stats send failed", exc_info=True)


def push_to_users_on_commit(*, tenant_id: int, user_pks: list[int], text: str) -> None:
    """Like push_to_users for a frame that is not a notification (e.g. `unread`), sent only if and
    when the current transaction commits."""
    transaction.on_commit(lambda: push_to_users(tenant_id=tenant_id, user_pks=user_pks, frames=[LiveFrame(text)]))


def close_connections_on_commit(
    *, tenant_id: int, reason: str, user_pk: int | None = None, signing_kid: str | None = None
) -> None:
    """After commit, close (4003) on every node the open sockets of a tenant, of one of its
    users, or of those authenticated with one signing key."""
    from notifications.protocol import CloseCode

    group = group_for_user(tenant_id, user_pk) if user_pk is not None else group_for_tenant(tenant_id)
    message = {
        "type": MESSAGE_TYPE,
        "group": group,
        "close": int(CloseCode.FORBIDDEN),
        "reason": reason,
        "kid": signing_kid,
    }
    transaction.on_commit(lambda: _group_send(group, message))


def wake_fanout() -> None:
    """Tell fan-out processes there is work (best effort: they also sweep the outbox)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.send)(FANOUT_CHANNEL, {"type": "fanout.wake"})
    except Exception:
        logger.warning("fan-out wake-up failed; the next sweep will pick the job up", exc_info=True)
