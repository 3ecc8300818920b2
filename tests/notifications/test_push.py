"""A connection's push(): the per-delivery path the hub calls for every socket of a group. Unit
tests on a consumer with a fake direct socket (the end-to-end behaviour is covered through real
servers in test_consumer.py, tests/integration and the security suite)."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from notifications import transport
from notifications.consumers import SEEN_IDS_KEPT, SEEN_IDS_SLACK, NotificationConsumer
from notifications.transport import Outgoing


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


class FakeProtocol:
    close_sent = False

    def __init__(self) -> None:
        self.transport = FakeTransport()


def _consumer() -> tuple[NotificationConsumer, FakeProtocol]:
    consumer = NotificationConsumer.__new__(NotificationConsumer)
    protocol = FakeProtocol()
    consumer.closing, consumer.replaying, consumer.seen, consumer.buffered = False, False, {}, []
    consumer.outbox, consumer.writer, consumer.closer = deque(), None, None
    consumer.direct = transport.UvicornSocket(protocol)
    consumer.max_outbound_bytes = 1000
    return consumer, protocol


def test_each_event_is_written_once_and_an_inbox_row_wins_over_a_live_only_frame() -> None:
    consumer, protocol = _consumer()
    frame = Outgoing('{"type":"notification"}')
    consumer.push(frame, 1, False)
    consumer.push(frame, 1, False)  # the same event through a second topic
    consumer.push(frame, 1, True)  # ... and as an inbox row: sent again, marked as inbox
    consumer.push(frame, 1, True)
    consumer.push(frame, None, False)  # not an event (a ping): never deduplicated
    consumer.push(frame, None, False)
    assert protocol.transport.written == [frame.wire] * 4
    assert frame.wire.endswith(b'{"type":"notification"}') and frame.wire[0] == 0x81  # one final text frame


def test_the_newest_ids_are_remembered_across_the_trim() -> None:
    consumer, protocol = _consumer()
    frame = Outgoing("{}")
    total = SEEN_IDS_KEPT * 3 + 7
    sizes = set()
    for event_id in range(total):
        consumer.push(frame, event_id, False)
        sizes.add(len(consumer.seen))
    assert max(sizes) == SEEN_IDS_KEPT + SEEN_IDS_SLACK and min(sizes - set(range(SEEN_IDS_KEPT))) == SEEN_IDS_KEPT
    written = len(protocol.transport.written)
    for event_id in range(total - SEEN_IDS_KEPT, total):  # every one of the newest is still known
        consumer.push(frame, event_id, False)
    assert len(protocol.transport.written) == written == total
    assert list(consumer.seen)[-1] == total - 1  # insertion order kept: the oldest go first


def test_a_replay_and_its_buffered_live_frames_forget_no_id() -> None:
    consumer, protocol = _consumer()
    frame = Outgoing("{}")
    replayed = SEEN_IDS_KEPT * 4  # a replay longer than the window (REPLAY_MAX is 1,000)
    consumer.replaying = True
    for event_id in range(replayed):  # what _replay does for each backlog frame
        assert consumer._first_sight(event_id, False)
    for event_id in range(replayed):  # the same events, arriving live during the replay
        consumer.push(frame, event_id, False)
    consumer.push(frame, replayed, False)  # and one that is new
    assert protocol.transport.written == []  # buffered until the replay ends
    asyncio.run(consumer._end_replay())
    assert protocol.transport.written == [frame.wire]  # only the new one: no duplicate
    assert consumer.replaying is False


def test_a_socket_over_its_outbound_limit_is_closed_and_a_closed_one_gets_nothing() -> None:
    consumer, protocol = _consumer()
    closed: list[Any] = []

    async def close_slow() -> None:
        closed.append(True)

    consumer._close_slow = close_slow  # type: ignore[method-assign]
    protocol.transport.buffered = 1001
    frame = Outgoing("{}")

    async def run() -> None:
        consumer.push(frame, 1, False)
        await asyncio.sleep(0)

    asyncio.run(run())
    assert closed == [True] and len(protocol.transport.written) == 1
    protocol.transport.closing = True
    consumer.push(frame, 2, False)
    assert len(protocol.transport.written) == 1


def test_a_once_frame_is_not_remembered_but_a_replayed_copy_still_stops_it() -> None:
    consumer, protocol = _consumer()
    frame = Outgoing("{}")
    for event_id in range(1000):
        consumer.push(frame, event_id, False, True)
    assert len(protocol.transport.written) == 1000 and consumer.seen == {}  # no per-socket memory
    consumer.replaying = True
    assert consumer._first_sight(5000, True)  # replayed (as an inbox row)
    consumer.push(frame, 5000, True, True)  # and arriving live during the replay
    consumer.push(frame, 5001, True, True)
    asyncio.run(consumer._end_replay())
    assert len(protocol.transport.written) == 1001  # only 5001
    consumer.push(frame, 5000, True, True)  # in flight when the replay ended: still dropped
    assert len(protocol.transport.written) == 1001
