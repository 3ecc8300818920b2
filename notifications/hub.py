"""The node's live hub: one per server process. It holds the process's live connections by
channel-layer group, receives ALL of the process's live traffic on a single channel-layer channel,
and hands each message's already-encoded frames straight to the local sockets in the group.

Why not one channel per consumer, as Channels does by default? Then every delivery costs a
channel-layer receive and a consumer dispatch per connection; here a publish to 5,000 local
listeners costs one layer message and 5,000 socket writes (and so do 15 events to that topic
that wait for the same fan-out round: the round sends consecutive events with the same audience
as one message, see fanout._same_audience). Group membership is joined once per process (when the
first local connection needs a group) and refreshed periodically, because the Redis layer expires
memberships (`group_expiry`) so that a crashed node's groups go away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import weakref
from typing import Any, Protocol

from channels.layers import BaseChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.herald import herald_settings
from notifications import collection, delivery, metrics, presence, protocol
from notifications.transport import Outgoing

logger = logging.getLogger("herald.hub")

# Re-add every joined group this often: well inside the Redis layer's 900 s group_expiry, so a
# live node's memberships never lapse; groups left empty are discarded at the same time.
GROUP_REFRESH_SECONDS = 300.0
# Groups re-added per Redis round trip by the refresh.
REFRESH_BATCH = 1000
# Wait between attempts while the channel layer (Redis) is unreachable: short enough to recover
# within a second or two after it returns, long enough not to spin.
LAYER_RETRY_SECONDS = 0.5
HEARTBEAT_TIMEOUT_INTERVALS = 2.5
# The operations dashboard's figures are per second.
STATS_SECONDS = 1.0
# Sockets written per turn of the event loop in a dispatch (~14 µs each on our 2-core machines).
# A dispatch to 1,000 sockets held the loop for ~14 ms; a publish request arriving meanwhile, the
# fan-out's wake-up and its layer send each waited for the whole of it before their own part of
# the next event could start. The next message still waits for this dispatch (the receive loop
# awaits it), so every socket gets the events in order; a socket that joins the group between
# slices reads the event from its backlog, as one that joins just after the dispatch does.
DISPATCH_SLICE = 200
# The heartbeat frame, framed once for the life of the process.
PING = Outgoing.one(protocol.PING_TEXT)
STOP_TIMEOUT_SECONDS = 5.0


class LiveConnection(Protocol):
    """What the hub needs from a connection (implemented by the WebSocket consumer)."""

    tenant_id: int
    user_pk: int
    last_received: float
    signing_kid: str | None

    def push(self, frames: Outgoing, inbox: bool, once: bool = False) -> None: ...

    async def close_for(self, code: int, reason: str) -> None: ...


class Hub:
    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        self.channel_name = ""
        self.members: dict[str, set[LiveConnection]] = {}
        self.by_user: dict[tuple[int, int], set[LiveConnection]] = {}
        # group -> True once the layer confirmed group_add, or the Future of the add in flight
        self._joined: dict[str, bool | asyncio.Future[bool]] = {}
        self._joins_wanted: list[tuple[str, asyncio.Future[bool]]] = []
        self._joiner: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.layer_healthy = True
        self.frames_out = 0
        self.connections_opened = 0
        self._stopping = False
        self.presence = presence.counter_for_settings()
        # Authenticated connections per tenant on this node (metrics, operations dashboard).
        self.tenant_connections: dict[int, int] = {}
        # A short readable name for this node in the dashboard: host:pid.
        self.node_name = f"{socket.gethostname()}:{os.getpid()}"

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.channel_name = await self.layer.new_channel(delivery.NODE_CHANNEL_PREFIX)
        await self.presence.start(self.channel_name)
        self._tasks = [
            asyncio.create_task(self._receive_loop(), name="herald-hub-receive"),
            asyncio.create_task(self._refresh_loop(), name="herald-hub-refresh"),
            asyncio.create_task(self._heartbeat_loop(), name="herald-hub-heartbeat"),
            asyncio.create_task(self._stats_loop(), name="herald-hub-stats"),
            asyncio.create_task(self._collect_loop(), name="herald-hub-collect"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a layer client that swallows the cancellation must not hang shutdown.
            await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_SECONDS)
        self._tasks = []
        await self.presence.stop()

    async def close_all(self, code: int, reason: str) -> int:
        """Close every local connection (graceful shutdown), operations sockets included; return
        how many."""
        everyone = {c for group_set in self.by_user.values() for c in group_set}
        everyone.update(c for group_set in self.members.values() for c in group_set)
        for connection in everyone:
            await connection.close_for(code, reason)
        return len(everyone)

    @property
    def connection_count(self) -> int:
        return sum(len(connections) for connections in self.by_user.values())

    # --- membership ------------------------------------------------------------------------------

    async def register(self, connection: LiveConnection) -> None:
        """Make the connection reachable by its user and tenant groups (joined before returning)."""
        self.by_user.setdefault((connection.tenant_id, connection.user_pk), set()).add(connection)
        self.connections_opened += 1
        collection.schedule().connection_opened()
        self.tenant_connections[connection.tenant_id] = self.tenant_connections.get(connection.tenant_id, 0) + 1
        await asyncio.gather(
            self.join(connection, delivery.group_for_user(connection.tenant_id, connection.user_pk)),
            self.join(connection, delivery.group_for_tenant(connection.tenant_id)),
        )

    async def unregister(self, connection: LiveConnection, groups: list[str]) -> None:
        key = (connection.tenant_id, connection.user_pk)
        connections = self.by_user.get(key)
        if connections is not None and connection in connections:
            connections.discard(connection)
            if not connections:
                del self.by_user[key]
            self.tenant_connections[connection.tenant_id] -= 1
        for group in groups:
            self.leave(connection, group)

    async def join(self, connection: LiveConnection, group: str) -> None:
        self.members.setdefault(group, set()).add(connection)
        await self._ensure_joined(group)

    def leave(self, connection: LiveConnection, group: str) -> None:
        connections = self.members.get(group)
        if connections is not None:
            connections.discard(connection)
        # Empty groups are discarded from the layer by the refresh loop, not here: a user who
        # reconnects a moment later (a page reload) then needs no layer round trip at all.

    async def _ensure_joined(self, group: str) -> None:
        """Join the group on the layer once per process. Joins asked for while another batch is
        on its way to Redis wait and go together in the next batch (see `_join_batches`)."""
        state = self._joined.get(group)
        if state is True:
            return
        if isinstance(state, asyncio.Future) and await asyncio.shield(state):
            return
        assert self.loop is not None
        future: asyncio.Future[bool] = self.loop.create_future()
        self._joined[group] = future
        self._joins_wanted.append((group, future))
        if self._joiner is None or self._joiner.done():
            self._joiner = self.loop.create_task(self._join_batches(), name="herald-hub-join")
        if not await asyncio.shield(future):
            raise ConnectionError(f"could not join {group} on the channel layer")

    async def _join_batches(self) -> None:
        """Send the wanted group joins to the layer, all that are waiting at once, one batch at a
        time. At a burst of connects this is one Redis round trip per batch on one connection,
        where a join per connection opened a Redis connection for every concurrent handshake."""
        while self._joins_wanted:
            wanted, self._joins_wanted = self._joins_wanted, []
            groups = list(dict.fromkeys(group for group, _ in wanted))
            try:
                await group_add_many(self.layer, groups, self.channel_name)
                ok = True
            except Exception:
                logger.warning("group join failed", extra={"groups": len(groups)}, exc_info=True)
                ok = False
            for group, future in wanted:
                # The state is this join's to settle only if it is still this join's: a recovery
                # may have forgotten it meanwhile (a newer join of the group may be on its way),
                # or the refresh discarded the group. Its waiters get the answer either way.
                if self._joined.get(group) is future:
                    if ok:
                        self._joined[group] = True
                    else:
                        del self._joined[group]
                if not future.done():
                    future.set_result(ok)

    # --- receiving -------------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while not self._stopping:
            try:
                message = await self.layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, RedisTimeoutError):
                # A read that timed out on a quiet node is not an outage: a dead Redis shows as a
                # connection error, which the next attempt gets at once.
                continue
            except Exception:
                if self._stopping:  # the layer client turned our cancellation into an error
                    return
                await self._layer_failed()
                continue
            if not self.layer_healthy:
                await self._layer_recovered()
            try:
                await self.dispatch(message)
            except Exception:
                logger.exception("hub dispatch failed")

    async def dispatch(self, message: dict[str, Any]) -> None:
        group = message.get("group")
        if not isinstance(group, str):
            return
        users = message.get("users")
        targets: list[LiveConnection]
        if users is None:
            targets = list(self.members.get(group, ()))
        else:
            tenant_id = _tenant_of(group)
            targets = [connection for user_pk in users for connection in self.by_user.get((tenant_id, user_pk), ())]
        close_code = message.get("close")
        if close_code is not None:
            kid = message.get("kid")
            for connection in targets:
                if kid is None or connection.signing_kid == kid:
                    await connection.close_for(int(close_code), str(message.get("reason", "")))
            return
        if not targets:
            return
        # [[text, event id or None, accepted-at or None], ...]: one frame, or a run of events
        # with the same audience (delivery.LiveFrame); each socket gets them in one write.
        frames = message.get("frames")
        if frames is None:  # sent by a node of the previous release (one frame per message)
            frames = [[message["text"], message.get("event"), (message.get("meta") or {}).get("at")]]
        outgoing = Outgoing([frame[0] for frame in frames], [frame[1] for frame in frames])
        inbox, once = bool(message.get("inbox")), bool(message.get("once"))  # see delivery.push_to_users
        for start in range(0, len(targets), DISPATCH_SLICE):
            if start:  # let the loop read requests and layer replies between slices
                await asyncio.sleep(0)
            for connection in targets[start : start + DISPATCH_SLICE]:
                connection.push(outgoing, inbox, once)  # a no-op for one closed meanwhile
        self.frames_out += len(targets) * len(frames)
        if group.startswith(delivery.OPS_GROUP_PREFIX):
            return  # the dashboard's own figures: not tenant activity
        tenant_id, topics = _tenant_of(group), message.get("topics")
        for _, event_id, published_at in frames:
            metrics.frames_out(
                tenant_id, len(targets), notification=event_id is not None, published_at=published_at, topics=topics
            )

    async def _layer_failed(self) -> None:
        if self.layer_healthy:
            self.layer_healthy = False
            logger.warning("channel layer unreachable; live delivery paused", extra={"node": self.channel_name})
        await asyncio.sleep(LAYER_RETRY_SECONDS)
        # Probe actively: after a restart Redis has lost our groups, so no message would ever
        # arrive to tell us it is back. The probe comes back to us through receive().
        with contextlib.suppress(Exception):
            await self.layer.send(self.channel_name, {"type": "herald.probe"})

    async def _layer_recovered(self) -> None:
        """The layer (Redis) came back. It may have lost our group memberships and any frames sent
        meanwhile, so re-join every group and ask every local client to reconnect and resume from its
        cursor: the database gives them exactly what they missed."""
        self.layer_healthy = True
        # Forget every join at once, before the first await below: Redis may have lost them, so
        # a client that connects while the others are being closed must really join before it
        # reads its backlog (a join taken as done would leave it deaf to whatever is published
        # until the re-join below, and it is not among the clients asked to resume).
        self._joined.clear()
        # Close the clients BEFORE re-joining: once the groups are joined again, a newer frame
        # could reach a client before the close, and its cursor would then skip what the outage
        # swallowed. (No frame is dispatched meanwhile: the receive loop is waiting for us.)
        everyone = [c for group_set in self.by_user.values() for c in group_set]
        logger.warning("channel layer back; asking clients to resume", extra={"connections": len(everyone)})
        for connection in everyone:
            await connection.close_for(protocol.CloseCode.TRY_AGAIN_LATER, "live delivery was interrupted; resume")
        wanted = [group for group, connections in self.members.items() if connections]
        await asyncio.gather(*(self._ensure_joined(group) for group in wanted), return_exceptions=True)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            await self.refresh_groups()

    async def refresh_groups(self) -> None:
        """Re-add every group that has local connections (in batches of REFRESH_BATCH), and leave
        the groups left empty."""
        live = [group for group, connections in self.members.items() if connections]
        for start in range(0, len(live), REFRESH_BATCH):
            try:
                await group_add_many(self.layer, live[start : start + REFRESH_BATCH], self.channel_name)
            except Exception:
                logger.warning("group refresh failed", extra={"groups": len(live)}, exc_info=True)
        for group, connections in list(self.members.items()):
            if connections:
                continue
            del self.members[group]
            self._joined.pop(group, None)
            try:
                await self.layer.group_discard(group, self.channel_name)
            except Exception:
                logger.warning("group discard failed", extra={"group": group}, exc_info=True)

    async def _stats_loop(self) -> None:
        """Once a second, this node's figures for every tenant active here, to the operations
        dashboard (one layer message per tenant, whoever watches, on whichever node)."""
        while True:
            await asyncio.sleep(STATS_SECONDS)
            seconds, activity = metrics.ACTIVITY.take()
            tenants = set(activity) | {tenant_id for tenant_id, count in self.tenant_connections.items() if count}
            for tenant_id in tenants:
                frame = metrics.stats_frame(
                    node=self.node_name,
                    tenant_id=tenant_id,
                    seconds=seconds,
                    second=activity.get(tenant_id) or metrics.TenantSecond(),
                    connections=self.tenant_connections.get(tenant_id, 0),
                )
                await delivery.publish_stats(tenant_id, protocol.encode(frame))

    async def _collect_loop(self) -> None:
        seen = self.collect_if_quiet(None)
        while True:
            await asyncio.sleep(collection.QUIET_SECONDS)
            seen = self.collect_if_quiet(seen)

    def collect_if_quiet(self, seen: tuple[int, int] | None) -> tuple[int, int]:
        """The full garbage collection that a burst of connections makes due, in the first quiet
        moment after it rather than in the traffic that follows (notifications/collection.py):
        `seen` is what this returned one QUIET_SECONDS ago (None at first); nothing changed since
        means no connection and no delivery meanwhile."""
        now = (self.connections_opened, self.frames_out)
        schedule = collection.schedule()
        if now == seen and schedule.due(self.connection_count):
            schedule.collect()
        schedule.record_pauses()
        return now

    async def _heartbeat_loop(self) -> None:
        interval = herald_settings.HEARTBEAT_SECONDS
        while True:
            await asyncio.sleep(interval)
            # A client that sent nothing (not even a pong) for 2.5 intervals missed two pings and
            # had half an interval to answer the second: it is gone (or its network is).
            deadline = time.monotonic() - HEARTBEAT_TIMEOUT_INTERVALS * interval
            for connection in [c for group_set in self.by_user.values() for c in group_set]:
                if connection.last_received < deadline:
                    await connection.close_for(protocol.CloseCode.HEARTBEAT_TIMEOUT, "no heartbeat from the client")
                else:
                    connection.push(PING, False)


async def group_add_many(layer: BaseChannelLayer, groups: list[str], channel: str) -> None:
    """Add `channel` to every group. On channels-redis's core layer that is one pipelined round
    trip per Redis shard (the same ZADD and EXPIRE its `group_add` sends one by one); on any other
    layer (in-memory, pub/sub) one `group_add` per group."""
    if not isinstance(layer, RedisChannelLayer):
        for group in groups:
            await layer.group_add(group, channel)
        return
    by_shard: dict[int, list[str]] = {}
    for group in groups:
        assert layer.require_valid_group_name(group), "Group name not valid"
        by_shard.setdefault(layer.consistent_hash(group), []).append(group)
    now = time.time()
    for index, shard_groups in by_shard.items():
        async with layer.connection(index).pipeline(transaction=False) as pipeline:
            for group in shard_groups:
                key = layer._group_key(group)
                pipeline.zadd(key, {channel: now})
                pipeline.expire(key, layer.group_expiry)
            await pipeline.execute()


def _tenant_of(group: str) -> int:
    # "herald.t<tenant>...", or "herald.ops.t<tenant>" (see delivery.group_for_*)
    part = group.split(".", 3)[2 if group.startswith("herald.ops.") else 1]
    return int(part[1:])


# One hub per event loop (a server process has one loop; tests create one per test).
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Hub, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary()
)


async def get_hub() -> Hub:
    """The hub of the running event loop, started on first use."""
    loop = asyncio.get_running_loop()
    entry = _hubs.get(loop)
    if entry is None:
        layer = get_channel_layer()
        assert layer is not None, "Herald needs a channel layer (CHANNEL_LAYERS)"
        hub = Hub(layer)
        entry = (hub, loop.create_task(hub.start(), name="herald-hub-start"))
        _hubs[loop] = entry
    hub, starting = entry
    try:
        await asyncio.shield(starting)
    except Exception:
        if _hubs.get(loop) is entry:  # let the next connection try again
            del _hubs[loop]
        raise
    return hub


def current_hub() -> Hub | None:
    """This loop's hub if it is running (for metrics and shutdown), without starting one."""
    try:
        entry = _hubs.get(asyncio.get_running_loop())
    except RuntimeError:
        return None
    return entry[0] if entry and entry[1].done() else None


async def stop_hub() -> None:
    """Stop this loop's hub (tests; graceful shutdown)."""
    entry = _hubs.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry[0].stop()
