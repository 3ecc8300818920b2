"""When this process's full garbage collections run, and how long every collection paused it.

A full collection walks every object the collector tracks (~100 per open connection) while
holding the interpreter, so it stalls the event loop and every socket's delivery with it: ~40-70
ms at 1,000 connections on our machines, ~2 s at 25,000 (docs/performance.md, "Garbage
collection"). CPython starts one when the objects that survived since the last one exceed a
quarter of those that survived it, which a node taking on many connections quickly reaches; the
last one of a burst of connections then falls a few seconds later, in whatever traffic follows.

The hub (notifications/hub.py) runs that collection in the first quiet moment instead: once at
least a quarter as many connections have opened since the last full collection as are open now
(CPython's own threshold, counted in connections rather than objects: about as often as CPython
would collect anyway), and neither a connection nor a delivery arrived for QUIET_SECONDS. A node
that is never quiet keeps CPython's schedule. Every collection's pause is recorded in the
`herald_gc_pause_seconds` histogram (by generation)."""

from __future__ import annotations

import gc
import threading
import time
from collections import deque
from typing import Any

from notifications import metrics

# A full collection is due once this many connections per open connection opened since the last.
GROWTH_SHARE = 0.25
# ... and at least this many (below it a full collection is short anyway).
MIN_NEW_CONNECTIONS = 50
# No connection and no delivery for this long: the node is quiet.
QUIET_SECONDS = 0.25
# Pauses waiting for record_pauses() at most (a process without a hub drops the oldest).
PAUSES_KEPT = 10_000


class CollectionSchedule:
    """The process's one schedule (see `schedule()`): counts connections opened since the last
    full collection and times every collection, whoever started it."""

    def __init__(self) -> None:
        self.opened_since_full = 0
        self.full_collections = 0
        self._started: float | None = None
        # (generation, seconds) of collections not yet in the metrics: the collector's callback
        # only appends here (no lock, nothing that could wait), record_pauses() moves them on.
        self._pauses: deque[tuple[int, float]] = deque(maxlen=PAUSES_KEPT)

    def connection_opened(self) -> None:
        self.opened_since_full += 1

    def due(self, open_connections: int) -> bool:
        """True when the connections opened since the last full collection make one due."""
        return self.opened_since_full >= max(MIN_NEW_CONNECTIONS, GROWTH_SHARE * open_connections)

    def collect(self) -> None:
        """A full collection now (on_collection counts it and resets the count)."""
        gc.collect()

    def on_collection(self, phase: str, info: dict[str, Any]) -> None:
        """gc.callbacks hook: runs in whichever thread the collection happens, with the collector
        busy (so it cannot start another collection). Takes no lock: the thread may hold one that
        the metrics also take (a scrape copying a metric's children, say)."""
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._started is None:  # hooked in mid-collection
            return
        generation = info["generation"]
        if generation == 2:
            self.full_collections += 1
            self.opened_since_full = 0
        self._pauses.append((generation, time.perf_counter() - self._started))
        self._started = None

    def record_pauses(self) -> None:
        """Move the pauses measured so far into the `herald_gc_pause_seconds` histogram (the hub
        does every QUIET_SECONDS; the /metrics view before each scrape)."""
        while self._pauses:
            generation, seconds = self._pauses.popleft()
            metrics.gc_paused(generation, seconds)


_schedule: CollectionSchedule | None = None
_schedule_guard = threading.Lock()


def schedule() -> CollectionSchedule:
    """The process's schedule, hooked into the collector the first time it is asked for (the
    hub asks on every connect: once it exists, no lock)."""
    global _schedule
    if _schedule is not None:
        return _schedule
    with _schedule_guard:
        if _schedule is None:
            _schedule = CollectionSchedule()
            gc.callbacks.append(_schedule.on_collection)
        return _schedule
