"""Prometheus metrics of this process (served at /metrics) and the per-second figures the
operations dashboard receives over /ws/v1/ops/. Both are fed from the same few calls, made once
per message or per request, never once per socket."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # RSS, CPU and open files of this process

CONNECTIONS = Gauge(
    "herald_connections", "Open authenticated WebSocket connections on this node", ["tenant"], registry=REGISTRY
)
FRAMES_IN = Counter("herald_frames_in_total", "Frames received from WebSocket clients", ["tenant"], registry=REGISTRY)
FRAMES_OUT = Counter(
    "herald_frames_out_total", "Frames written to WebSocket clients (all types)", ["tenant"], registry=REGISTRY
)
DELIVERIES = Counter(
    "herald_deliveries_total", "Notification frames written to WebSocket clients", ["tenant"], registry=REGISTRY
)
PUBLISHES = Counter(
    "herald_events_published_total",
    "Events accepted for delivery (REST and the dashboard)",
    ["tenant"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "herald_publish_to_deliver_seconds",
    "From an event's acceptance to its frame being written to this node's sockets",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "herald_rate_limited_total", "Requests and frames refused by a rate limit", ["action"], registry=REGISTRY
)
ERRORS = Counter("herald_errors_total", "Error answers by code", ["transport", "code"], registry=REGISTRY)
GC_PAUSE = Histogram(
    "herald_gc_pause_seconds",
    "How long each garbage collection paused this process (generation 2: a full collection)",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
FANOUT_QUEUE = Gauge("herald_fanout_queue_depth", "Events waiting for fan-out (the outbox)", registry=REGISTRY)

# Tenant ids seen on this node -> slug, for labels (the hub knows ids, people read slugs).
_slugs: dict[int, str] = {}
# Latency samples kept per tenant per second for the dashboard's p50/p99 (a bounded reservoir).
LATENCY_SAMPLES_PER_SECOND = 2000


def tenant_seen(tenant_id: int, slug: str) -> None:
    _slugs[tenant_id] = slug


def slug_of(tenant_id: int) -> str:
    return _slugs.get(tenant_id, str(tenant_id))


@dataclass
class TenantSecond:
    """One tenant's activity on this node during the current second."""

    events_in: int = 0
    frames_in: int = 0
    frames_out: int = 0
    deliveries: int = 0
    rate_limited: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    topics: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class Activity:
    """Per-second counters for the operations dashboard, swapped out every second. Updated from
    the event loop and from request threads, hence the lock (held for a few dict operations)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.current: dict[int, TenantSecond] = defaultdict(TenantSecond)
        self.started = time.time()

    def take(self) -> tuple[float, dict[int, TenantSecond]]:
        with self.lock:
            taken, self.current = self.current, defaultdict(TenantSecond)
            started, self.started = self.started, time.time()
        return self.started - started, taken


ACTIVITY = Activity()


def frames_out(
    tenant_id: int, count: int, *, notification: bool, published_at: float | None, topics: list[str] | None = None
) -> None:
    slug = slug_of(tenant_id)
    FRAMES_OUT.labels(slug).inc(count)
    if notification:
        DELIVERIES.labels(slug).inc(count)
    latency = None if published_at is None else max(0.0, time.time() - published_at)
    if latency is not None:
        LATENCY.observe(latency)
    with ACTIVITY.lock:
        second = ACTIVITY.current[tenant_id]
        second.frames_out += count
        if notification:
            second.deliveries += count
            for key in topics or ():
                second.topics[key] += count
        if latency is not None and len(second.latencies) < LATENCY_SAMPLES_PER_SECOND:
            second.latencies.append(latency)


def frame_in(tenant_id: int) -> None:
    FRAMES_IN.labels(slug_of(tenant_id)).inc()
    with ACTIVITY.lock:
        ACTIVITY.current[tenant_id].frames_in += 1


def events_published(tenant_id: int, slug: str, count: int) -> None:
    tenant_seen(tenant_id, slug)
    PUBLISHES.labels(slug).inc(count)
    with ACTIVITY.lock:
        ACTIVITY.current[tenant_id].events_in += count


def connection_opened(tenant_id: int, slug: str) -> None:
    tenant_seen(tenant_id, slug)
    CONNECTIONS.labels(slug).inc()


def connection_closed(tenant_id: int) -> None:
    CONNECTIONS.labels(slug_of(tenant_id)).dec()


def gc_paused(generation: int, seconds: float) -> None:
    GC_PAUSE.labels(str(generation)).observe(seconds)


def rate_limited(action: str, tenant_id: int | None = None) -> None:
    RATE_LIMITED.labels(action).inc()
    if tenant_id is not None:
        with ACTIVITY.lock:
            ACTIVITY.current[tenant_id].rate_limited += 1


def error(transport: str, code: str, tenant_id: int | None = None) -> None:
    ERRORS.labels(transport, code).inc()
    if tenant_id is not None:
        with ACTIVITY.lock:
            ACTIVITY.current[tenant_id].errors += 1


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def stats_frame(*, node: str, tenant_id: int, seconds: float, second: TenantSecond, connections: int) -> dict[str, Any]:
    """The `stats` frame of one tenant for one second on this node (docs/operations.md)."""
    per = 1 / seconds if seconds > 0 else 1.0
    p50, p99 = percentile(second.latencies, 0.5), percentile(second.latencies, 0.99)
    return {
        "type": "stats",
        "node": node,
        "tenant": slug_of(tenant_id),
        "at": time.time(),
        "connections": connections,
        "events_in_per_s": round(second.events_in * per, 2),
        "frames_in_per_s": round(second.frames_in * per, 2),
        "frames_out_per_s": round(second.frames_out * per, 2),
        "deliveries_per_s": round(second.deliveries * per, 2),
        "latency_ms": {
            "p50": None if p50 is None else round(p50 * 1000, 2),
            "p99": None if p99 is None else round(p99 * 1000, 2),
        },
        "rate_limited": second.rate_limited,
        "errors": second.errors,
        "topics": dict(sorted(second.topics.items(), key=lambda item: -item[1])[:10]),
    }
