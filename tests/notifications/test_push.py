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


def _frame(text: str, event_id: int | None) -> Outgoing:
    return Outgoing.one(text, event_id)


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
    text = '{"type":"notification"}'
    consumer.push(_frame(text, 1), False)
    consumer.push(_frame(text, 1), False)  # the same event through a second topic
    consumer.push(_frame(text, 1), True)  # ... and as an inbox row: sent again, marked as inbox
    consumer.push(_frame(text, 1), True)
    consumer.push(_frame(text, None), False)  # not an event (a ping): never deduplicated
    consumer.push(_frame(text, None), False)
    wire = _frame(text, None).wire
    assert protocol.transport.written == [wire] * 4
    assert wire.endswith(b'{"type":"notification"}') and wire[0] == 0x81  # one final text frame


def test_the_newest_ids_are_remembered_across_the_trim() -> None:
    consumer, protocol = _consumer()
    text = "{}"
    total = SEEN_IDS_KEPT * 3 + 7
    sizes = set()
    for event_id in range(total):
        consumer.push(_frame(text, event_id), False)
        sizes.add(len(consumer.seen))
    assert max(sizes) == SEEN_IDS_KEPT + SEEN_IDS_SLACK and min(sizes - set(range(SEEN_IDS_KEPT))) == SEEN_IDS_KEPT
    written = len(protocol.transport.written)
    for event_id in range(total - SEEN_IDS_KEPT, total):  # every one of the newest is still known
        consumer.push(_frame(text, event_id), False)
    assert len(protocol.transport.written) == written == total
    assert list(consumer.seen)[-1] == total - 1  # insertion order kept: the oldest go first


def test_a_replay_and_its_buffered_live_frames_forget_no_id() -> None:
    consumer, protocol = _consumer()
    text = "{}"
    replayed = SEEN_IDS_KEPT * 4  # a replay longer than the window (REPLAY_MAX is 1,000)
    consumer.replaying = True
    for event_id in range(replayed):  # what _replay does for each backlog frame
        assert consumer._first_sight(event_id, False)
    for event_id in range(replayed):  # the same events, arriving live during the replay
        consumer.push(_frame(text, event_id), False)
    consumer.push(_frame(text, replayed), False)  # and one that is new
    assert protocol.transport.written == []  # buffered until the replay ends
    asyncio.run(consumer._end_replay())
    assert protocol.transport.written == [_frame(text, replayed).wire]  # only the new one: no duplicate
    assert consumer.replaying is False


def test_a_socket_over_its_outbound_limit_is_closed_and_a_closed_one_gets_nothing() -> None:
    consumer, protocol = _consumer()
    closed: list[Any] = []

    async def close_slow() -> None:
        closed.append(True)

    consumer._close_slow = close_slow  # type: ignore[method-assign]
    protocol.transport.buffered = 1001
    text = "{}"

    async def run() -> None:
        consumer.push(_frame(text, 1), False)
        await asyncio.sleep(0)

    asyncio.run(run())
    assert closed == [True] and len(protocol.transport.written) == 1
    protocol.transport.closing = True
    consumer.push(_frame(text, 2), False)
    assert len(protocol.transport.written) == 1


def test_a_once_frame_is_not_remembered_but_a_replayed_copy_still_stops_it() -> None:
    consumer, protocol = _consumer()
    text = "{}"
    for event_id in range(1000):
        consumer.push(_frame(text, event_id), False, True)
    assert len(protocol.transport.written) == 1000 and consumer.seen == {}  # no per-socket memory
    consumer.replaying = True
    assert consumer._first_sight(5000, True)  # replayed (as an inbox row)
    consumer.push(_frame(text, 5000), True, True)  # and arriving live during the replay
    consumer.push(_frame(text, 5001), True, True)
    asyncio.run(consumer._end_replay())
    assert len(protocol.transport.written) == 1001  # only 5001
    consumer.push(_frame(text, 5000), True, True)  # in flight when the replay ended: still dropped
    assert len(protocol.transport.written) == 1001


def test_a_run_of_frames_goes_to_a_socket_in_one_write_in_order() -> None:
    consumer, protocol = _consumer()
    consumer.max_outbound_bytes = 10_000
    texts = [f'{{"n":{n}}}' for n in range(5)]
    run = Outgoing(texts, [10, 11, 12, 13, 14])
    assert run.wire == b"".join(_frame(text, None).wire for text in texts)  # complete frames, back to back
    consumer.push(run, False, True)
    assert protocol.transport.written == [run.wire]
    consumer.push(run, False)  # not `once`: the ids are remembered ...
    consumer.push(run, False)  # ... so a copy through a second topic is dropped whole
    assert protocol.transport.written == [run.wire, run.wire]


def test_only_the_frames_a_socket_has_not_seen_are_written_from_a_run() -> None:
    consumer, protocol = _consumer()
    consumer.max_outbound_bytes = 10_000
    texts = [f'{{"n":{n}}}' for n in range(4)]
    consumer.replaying = True
    assert consumer._first_sight(21, True)  # a replay sent event 21 ...
    consumer.push(Outgoing(texts, [20, 21, 22, 23]), True, True)  # ... which also arrives live in a run
    asyncio.run(consumer._end_replay())
    assert protocol.transport.written == [Outgoing([texts[0], texts[2], texts[3]]).wire]
    # Without `once`: each id is checked and remembered; a run already seen whole writes nothing.
    consumer.push(Outgoing(texts[:2], [30, 31]), False)
    consumer.push(Outgoing(texts, [30, 31, 32, None]), False)  # None: not an event, always sent
    consumer.push(Outgoing(texts[:2], [30, 31]), False)
    assert protocol.transport.written[1:] == [Outgoing(texts[:2]).wire, Outgoing(texts[2:]).wire]


def test_without_a_direct_socket_a_run_is_queued_frame_by_frame_within_the_frame_limit() -> None:
    consumer, _ = _consumer()
    consumer.direct = None
    consumer.max_outbound_frames = 5
    closed: list[bool] = []

    async def close_slow() -> None:
        closed.append(True)

    async def drain() -> None:  # the writer task: leave the queue as it is
        return None

    consumer._close_slow = close_slow  # type: ignore[method-assign]
    consumer._drain_outbox = drain  # type: ignore[method-assign]

    async def run() -> None:
        consumer.push(Outgoing(["a", "b", "c"], [1, 2, 3]), False, True)
        consumer.push(Outgoing(["d", "e", "f"], [4, 5, 6]), False, True)  # 6 > 5 frames: too slow
        await asyncio.sleep(0)

    asyncio.run(run())
    assert list(consumer.outbox) == ["a", "b", "c"] and closed == [True]
