"""The hub's group joins: batched per Redis round trip, exact on failure. Runs against the
in-memory layer on the embedded default and against real Redis when REDIS_URL is set."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from channels.layers import get_channel_layer

from notifications import hub as hub_module
from notifications.hub import Hub, group_add_many
from notifications.transport import Outgoing

pytestmark = pytest.mark.asyncio


@dataclass(eq=False)
class FakeConnection:
    tenant_id: int
    user_pk: int
    last_received: float = 0.0
    signing_kid: str | None = None
    frames: list[str] = field(default_factory=list)

    def push(self, frames: Outgoing, inbox: bool, once: bool = False) -> None:
        self.frames.extend(frames.texts)

    async def close_for(self, code: int, reason: str) -> None:  # pragma: no cover - not used here
        pass


async def _new_hub() -> Hub:
    layer = get_channel_layer()
    assert layer is not None
    node = Hub(layer)
    node.loop = asyncio.get_running_loop()
    node.channel_name = await layer.new_channel("herald-node-test")
    return node


async def test_group_add_many_reaches_the_channel_through_every_group(live_stack: Any) -> None:
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel("herald-node-test")
    groups = [f"herald.t900.u{n}" for n in range(5)]
    await group_add_many(layer, groups, channel)
    for index, group in enumerate(groups):
        await layer.group_send(group, {"type": "herald.frame", "n": index})
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in groups]
    assert sorted(message["n"] for message in received) == list(range(5))
    for group in groups:
        await layer.group_discard(group, channel)


async def test_a_burst_of_registers_joins_in_few_batches_and_every_user_is_reachable(
    live_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await _new_hub()
    batches: list[list[str]] = []
    real = hub_module.group_add_many

    async def counting(layer: Any, groups: list[str], channel: str) -> None:
        batches.append(list(groups))
        await real(layer, groups, channel)

    monkeypatch.setattr(hub_module, "group_add_many", counting)
    connections = [FakeConnection(tenant_id=901, user_pk=n) for n in range(200)]
    await asyncio.gather(*(node.register(connection) for connection in connections))

    joined = [group for batch in batches for group in batch]
    # Every user's group and the tenant group, each sent to the layer exactly once...
    assert sorted(joined) == sorted({f"herald.t901.u{n}" for n in range(200)} | {"herald.t901"})
    # ...in far fewer round trips than joins: the first batch goes alone, the rest wait for it.
    assert len(batches) <= 3
    assert all(node._joined[group] is True for group in joined)
    # A second connection of a joined user costs no layer call at all.
    await node.register(FakeConnection(tenant_id=901, user_pk=7))
    assert len([group for batch in batches for group in batch]) == len(joined)

    # And the joins are real: a message to one user's group reaches the node's channel.
    layer = node.layer
    await layer.group_send(
        "herald.t901.u42", {"type": "herald.frame", "group": "herald.t901.u42", "frames": [["hi", None, None]]}
    )
    message = await asyncio.wait_for(layer.receive(node.channel_name), 5)
    assert message["group"] == "herald.t901.u42"
    for group in joined:
        await layer.group_discard(group, node.channel_name)


async def test_a_failed_batch_fails_every_waiting_join_and_the_next_attempt_retries(
    live_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = await _new_hub()
    calls: list[list[str]] = []

    async def failing(layer: Any, groups: list[str], channel: str) -> None:
        calls.append(list(groups))
        raise ConnectionError("redis is down")

    monkeypatch.setattr(hub_module, "group_add_many", failing)
    results = await asyncio.gather(
        *(node.join(FakeConnection(tenant_id=902, user_pk=n), f"herald.t902.u{n}") for n in range(10)),
        return_exceptions=True,
    )
    assert all(isinstance(result, ConnectionError) for result in results)
    assert not any(group.startswith("herald.t902.") for group in node._joined)

    monkeypatch.setattr(hub_module, "group_add_many", group_add_many)
    await node.join(FakeConnection(tenant_id=902, user_pk=1), "herald.t902.u1")
    assert node._joined["herald.t902.u1"] is True
    await node.layer.group_discard("herald.t902.u1", node.channel_name)


async def test_refresh_re_adds_live_groups_and_leaves_empty_ones(live_stack: Any) -> None:
    node = await _new_hub()
    alice, bob = FakeConnection(tenant_id=903, user_pk=1), FakeConnection(tenant_id=903, user_pk=2)
    await node.register(alice)
    await node.register(bob)
    await node.unregister(bob, ["herald.t903.u2"])
    await node.refresh_groups()
    assert "herald.t903.u2" not in node.members and "herald.t903.u2" not in node._joined
    assert node._joined["herald.t903.u1"] is True
    layer = node.layer
    await layer.group_send(
        "herald.t903.u2", {"type": "herald.frame", "group": "herald.t903.u2", "frames": [["gone", None, None]]}
    )
    await layer.group_send(
        "herald.t903.u1", {"type": "herald.frame", "group": "herald.t903.u1", "frames": [["here", None, None]]}
    )
    message = await asyncio.wait_for(layer.receive(node.channel_name), 5)
    assert message["frames"] == [["here", None, None]]  # bob's group was left: only alice's message arrives
    for group in ("herald.t903.u1", "herald.t903"):
        await layer.group_discard(group, node.channel_name)


async def test_dispatch_hands_a_run_of_frames_to_each_member_in_order_and_counts_every_frame(
    live_stack: Any,
) -> None:
    node = await _new_hub()
    listeners = [FakeConnection(tenant_id=904, user_pk=n) for n in range(3)]
    for connection in listeners:
        node.members.setdefault("herald.t904.k1", set()).add(connection)
    frames = [[f'{{"n":{n}}}', 100 + n, None] for n in range(4)]
    await node.dispatch({"type": "herald.frame", "group": "herald.t904.k1", "frames": frames, "once": True})
    assert all(connection.frames == [frame[0] for frame in frames] for connection in listeners)
    assert node.frames_out == 12
    # Only the users named get a message to the tenant group.
    node.by_user[(904, 1)] = {listeners[1]}
    await node.dispatch({"type": "herald.frame", "group": "herald.t904", "users": [1], "frames": [["x", None, None]]})
    assert [connection.frames[-1] for connection in listeners] == ['{"n":3}', "x", '{"n":3}']


async def test_a_large_dispatch_lets_the_loop_run_between_slices_and_every_member_gets_it_once(
    live_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dispatch to many sockets gives the event loop a turn every DISPATCH_SLICE sockets (a
    publish request or the fan-out's layer send waits ~3 ms instead of the whole dispatch).
    Every member still gets the frame exactly once, and one that closed between slices is
    handed nothing more."""
    monkeypatch.setattr(hub_module, "DISPATCH_SLICE", 10)
    node = await _new_hub()
    group = "herald.t906.k1"
    writes: list[str] = []  # the order of pushes and of other work the loop ran meanwhile

    @dataclass(eq=False)
    class Recording(FakeConnection):
        closed: bool = False

        def push(self, frames: Outgoing, inbox: bool, once: bool = False) -> None:
            if not self.closed:
                writes.append(f"push {self.user_pk}")
                super().push(frames, inbox, once)

    members = [Recording(tenant_id=906, user_pk=n) for n in range(35)]
    node.members[group] = set(members)

    def meanwhile() -> None:
        writes.append("other work")
        for member in members:  # whoever has not had it yet closes now
            if not member.frames:
                member.closed = True
                break

    asyncio.get_running_loop().call_soon(meanwhile)
    await node.dispatch({"type": "herald.frame", "group": group, "frames": [["x", 1, None]]})
    assert writes.index("other work") == 10  # after the first slice, not after the 35th socket
    assert sum(member.closed for member in members) == 1
    assert all(member.frames == ([] if member.closed else ["x"]) for member in members)
    assert len(writes) == 35  # 34 pushes and the other work: no socket twice
    assert node.frames_out == 35  # counted per target, as before the slices


async def test_dispatch_takes_the_one_frame_messages_of_the_previous_release(live_stack: Any) -> None:
    """During a rolling upgrade a fan-out process of the previous release still sends one frame
    per message as {"text", "event", "meta"}."""
    node = await _new_hub()
    listener = FakeConnection(tenant_id=905, user_pk=1)
    node.members["herald.t905.k1"] = {listener}
    old = {"type": "herald.frame", "group": "herald.t905.k1", "text": "old", "event": 3, "meta": {"at": 1.0}}
    await node.dispatch(old)
    assert listener.frames == ["old"] and node.frames_out == 1


async def test_a_client_that_connects_while_the_hub_recovers_really_joins_before_its_backlog(
    live_stack: Any,
) -> None:
    """Redis came back empty: the hub closes its clients, then re-joins. A client registering while
    those closes are under way is not asked to resume, so its groups must be joined on the layer
    before register() returns (the consumer reads the backlog right after): a frame published then
    must reach the node. Before the fix, register() took the lost joins for done."""
    node = await _new_hub()
    layer = node.layer
    closing = asyncio.Event()
    release = asyncio.Event()

    class SlowToClose(FakeConnection):
        async def close_for(self, code: int, reason: str) -> None:
            closing.set()
            await release.wait()

    old = SlowToClose(tenant_id=904, user_pk=1)
    await node.register(old)
    for group in ("herald.t904.u1", "herald.t904"):  # what a restarted Redis has forgotten
        await layer.group_discard(group, node.channel_name)
    node.layer_healthy = False

    recovery = asyncio.create_task(node._layer_recovered())
    await asyncio.wait_for(closing.wait(), 5)  # recovery is closing the old client
    await asyncio.wait_for(node.register(FakeConnection(tenant_id=904, user_pk=1)), 5)
    # The newcomer has read its backlog; this event is published after that read.
    await layer.group_send(
        "herald.t904.u1", {"type": "herald.frame", "group": "herald.t904.u1", "frames": [["after", None, None]]}
    )
    release.set()
    await asyncio.wait_for(recovery, 5)
    message = await asyncio.wait_for(layer.receive(node.channel_name), 5)
    assert message["frames"] == [["after", None, None]]
    for group in ("herald.t904.u1", "herald.t904"):
        await layer.group_discard(group, node.channel_name)


async def test_a_join_in_flight_when_the_hub_forgets_its_joins_still_answers_its_waiters(
    live_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis came back while a batch of joins was on its way: the recovery forgets every join. The
    batch's waiters must still get its answer (a connection waiting for ever never handles its
    disconnect), and the late answer must not mark as joined a group that a newer join took over."""
    node = await _new_hub()
    entered, release = asyncio.Event(), asyncio.Event()

    async def held(layer: Any, groups: list[str], channel: str) -> None:
        entered.set()
        await release.wait()
        await group_add_many(layer, groups, channel)

    monkeypatch.setattr(hub_module, "group_add_many", held)
    waiting = asyncio.create_task(node.join(FakeConnection(tenant_id=905, user_pk=1), "herald.t905.u1"))
    await asyncio.wait_for(entered.wait(), 5)
    node._joined.clear()  # what _layer_recovered does first
    newer = asyncio.get_running_loop().create_future()
    node._joined["herald.t905.u1"] = newer  # a newer join of the group, on its way
    release.set()
    await asyncio.wait_for(waiting, 5)  # answered, and joined (the batch succeeded)
    assert node._joined["herald.t905.u1"] is newer  # left to the newer join to settle
    await node.layer.group_discard("herald.t905.u1", node.channel_name)
