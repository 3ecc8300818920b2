"""Channel-layer benchmark: channels-redis `RedisChannelLayer` ("core") against
`RedisPubSubChannelLayer` ("pubsub"): what a group_send costs, how fast deliveries arrive, and
how many messages are lost, duplicated or reordered.

Scenarios (each run in fresh processes, against loopback Redis, under a unique key prefix that
is deleted afterwards; never FLUSHDB):

  members-1000 / members-10000   Channels' default shape: one channel per WebSocket consumer.
      A group of 1,000 or 10,000 channels spread over 2 reader processes (two "nodes"), each
      channel read by its own coroutine, as Channels' consumers do. Layer defaults (capacity 100).
  herald-burst-<N>nodes          Herald's shape: a group's members are NODES, one channel per
      process (the hub, notifications/hub.py). 1 group with N node channels, a burst of 10,000
      messages as fast as one sender can go (a fan-out worker draining a backlog), with the
      layer settings Herald configures in config/settings.py.
  herald-burst-2nodes-capacity100   the same burst on the core layer with channels-redis'
      default capacity (100) instead of Herald's 20,000 for node channels.

    .venv/bin/python bench/layers.py                       # all scenarios, 3 runs, medians
    .venv/bin/python bench/layers.py --runs 1 --only herald-burst-2nodes
    .venv/bin/python bench/layers.py --redis-url redis://127.0.0.1:6379/14 --json out.json

The core layer's hosts get `socket_timeout: 10`: redis-py 8 defaults to a 5 s socket timeout,
which fails RedisChannelLayer.receive()'s 5 s BZPOPMIN on every idle reader (reported as a
Herald bug; the readers here would otherwise die while waiting for the sender to start).

Every wait is bounded (a scenario stops after --deadline seconds, default 120, or after 5 s
without progress once everything was sent); anything not received by then counts as lost.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from multiprocessing.sharedctypes import SynchronizedArray
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
NODE_CHANNEL_PREFIX = "herald-node"  # notifications/delivery.py NODE_CHANNEL_PREFIX
READY_TIMEOUT_SECONDS = 120.0  # 10,000 subscriptions/group_adds on a busy two-core machine
QUIET_SECONDS = 5.0  # after the last send: no new delivery for this long means the rest is lost
REPORT_INTERVAL_SECONDS = 0.1
STATS = 5  # shared floats per reader: received, last delivery time, reordered, duplicates, errors
STOP_TIMEOUT_SECONDS = 15.0
# A notification frame as Herald sends it: ~450 bytes of JSON text.
FRAME_TEXT = json.dumps(
    {
        "type": "notification",
        "id": 123456,
        "cursor": "123456",
        "kind": "order.shipped",
        "topics": [],
        "title": "Your order shipped",
        "body": "Order 4711 left our warehouse and will arrive on Thursday. " * 3,
        "url": "https://shop.example.com/orders/4711",
        "data": {"order": 4711, "carrier": "DHL"},
        "created_at": "2026-11-26T10:00:00.000000Z",
        "inbox": True,
        "read": False,
    }
)


@dataclass(frozen=True)
class Scenario:
    name: str
    members: int  # channels in the group
    readers: int  # processes holding them
    messages: int  # group_sends
    herald_settings: bool  # the layer CONFIG of config/settings.py (else channels-redis defaults)
    node_capacity: int | None = None  # override Herald's node-channel capacity


SCENARIOS = [
    Scenario("members-1000", members=1000, readers=2, messages=200, herald_settings=False),
    Scenario("members-10000", members=10000, readers=2, messages=50, herald_settings=False),
    Scenario("herald-burst-2nodes", members=2, readers=2, messages=10000, herald_settings=True),
    Scenario("herald-burst-4nodes", members=4, readers=4, messages=10000, herald_settings=True),
    Scenario(
        "herald-burst-2nodes-capacity100",
        members=2,
        readers=2,
        messages=10000,
        herald_settings=True,
        node_capacity=100,
    ),
]


@dataclass
class Result:
    scenario: str
    layer: str
    members: int
    messages: int
    expected: int
    received: int
    lost: int
    duplicates: int
    reordered: int
    receive_errors: int  # receive() calls that raised (the reader keeps going)
    refused_at_send: int  # (group_send, member key) pairs the core layer dropped: key over capacity
    send_seconds: float
    group_send_ms: float  # mean time of one group_send, as the sender sees it
    group_send_p99_ms: float
    deliveries_per_second: float  # received / (last delivery - first send)
    drain_seconds: float  # last delivery - last send


# Longer than channels-redis' 5 s BZPOPMIN (RedisChannelLayer.brpop_timeout), so an idle receive()
# returns empty-handed instead of failing with redis-py's default 5 s socket timeout.
CORE_SOCKET_TIMEOUT_SECONDS = 10


def layer_config(kind: str, redis_url: str, prefix: str, scenario: Scenario) -> tuple[str, dict[str, Any]]:
    """(backend path, CONFIG) for the scenario: Herald's own settings, or the layer's defaults."""
    backend, config = _layer_config(kind, redis_url, prefix, scenario)
    if kind == "core":
        config["hosts"] = [{"address": redis_url, "socket_timeout": CORE_SOCKET_TIMEOUT_SECONDS}]
    return backend, config


def _layer_config(kind: str, redis_url: str, prefix: str, scenario: Scenario) -> tuple[str, dict[str, Any]]:
    if scenario.herald_settings:
        os.environ.update({"REDIS_URL": redis_url, "HERALD_CHANNEL_LAYER": kind, "HERALD_REDIS_PREFIX": prefix})
        os.environ.setdefault("DEBUG", "1")  # config.settings wants a SECRET_KEY otherwise
        settings = importlib.reload(importlib.import_module("config.settings"))
        layer = settings.CHANNEL_LAYERS["default"]
        config = dict(layer["CONFIG"])
        if scenario.node_capacity is not None and kind == "core":
            config["channel_capacity"] = {
                **config["channel_capacity"],
                f"{NODE_CHANNEL_PREFIX}*": scenario.node_capacity,
            }
        return layer["BACKEND"], config
    backend = (
        "channels_redis.pubsub.RedisPubSubChannelLayer" if kind == "pubsub" else "channels_redis.core.RedisChannelLayer"
    )
    return backend, {"hosts": [redis_url], "prefix": prefix}


def make_layer(backend: str, config: dict[str, Any]) -> Any:
    module, _, name = backend.rpartition(".")
    return getattr(importlib.import_module(module), name)(**config)


# --- reader processes ------------------------------------------------------------------------------


def reader_process(
    backend: str,
    config: dict[str, Any],
    group: str,
    channels: int,
    channel_prefix: str,
    slot: int,
    stats: SynchronizedArray,  # per slot: received, last delivery time, reordered, duplicates, errors
    ready: MpEvent,
    stop: MpEvent,
) -> None:
    asyncio.run(_read(backend, config, group, channels, channel_prefix, slot, stats, ready, stop))


async def _read(
    backend: str,
    config: dict[str, Any],
    group: str,
    channels: int,
    channel_prefix: str,
    slot: int,
    stats: SynchronizedArray,
    ready: MpEvent,
    stop: MpEvent,
) -> None:
    layer = make_layer(backend, config)
    names = [await layer.new_channel(channel_prefix) for _ in range(channels)]
    for name in names:
        await layer.group_add(group, name)
    counters = {"received": 0, "last": 0.0, "reordered": 0, "duplicates": 0}

    errors: list[str] = []

    async def consume(name: str) -> None:
        highest = -1
        seen: set[int] = set()
        while True:
            try:
                message = await layer.receive(name)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # report it, keep reading (as Herald's hub does)
                if len(errors) < 3:
                    print(f"\n[layers] reader {slot}: receive failed: {error!r}", file=sys.stderr, flush=True)
                errors.append(repr(error))
                await asyncio.sleep(0.1)
                continue
            seq = message["seq"]
            if seq in seen:
                counters["duplicates"] += 1
                continue
            seen.add(seq)
            if seq < highest:
                counters["reordered"] += 1
            highest = max(highest, seq)
            counters["received"] += 1
            counters["last"] = time.time()

    tasks = [asyncio.create_task(consume(name)) for name in names]
    await asyncio.sleep(0.5)  # let every receive() start waiting before the sender begins
    ready.set()
    while True:
        base = slot * STATS
        stats[base], stats[base + 1] = counters["received"], counters["last"]
        stats[base + 2], stats[base + 3] = counters["reordered"], counters["duplicates"]
        stats[base + 4] = len(errors)
        if stop.is_set():
            break
        await asyncio.sleep(REPORT_INTERVAL_SECONDS)
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=5)


# --- one scenario ----------------------------------------------------------------------------------


class OverCapacityCounter(logging.Handler):
    """Counts what RedisChannelLayer.group_send drops silently: it only logs (at INFO) how many
    member keys were over capacity."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "over capacity" in record.msg and record.args:
            self.count += int(record.args[0])  # type: ignore[index]


async def _send(backend: str, config: dict[str, Any], group: str, messages: int) -> tuple[float, list[float], float]:
    layer = make_layer(backend, config)
    durations = []
    started = time.time()
    for seq in range(messages):
        before = time.perf_counter()
        await layer.group_send(
            group, {"type": "herald.frame", "group": group, "seq": seq, "frames": [[FRAME_TEXT, None, None]]}
        )
        durations.append(time.perf_counter() - before)
    finished = time.time()
    if hasattr(layer, "flush") and backend.endswith("PubSubChannelLayer"):
        await layer.flush()  # close its connections
    return started, durations, finished


def run_scenario(scenario: Scenario, kind: str, redis_url: str, deadline: float) -> Result:
    prefix = f"herald-bench-{uuid.uuid4().hex[:8]}"
    backend, config = layer_config(kind, redis_url, prefix, scenario)
    group = "herald.t1"
    channel_prefix = NODE_CHANNEL_PREFIX if scenario.herald_settings else "specific"
    context = multiprocessing.get_context("spawn")
    stats = context.Array("d", STATS * scenario.readers, lock=False)
    stop = context.Event()
    readies = [context.Event() for _ in range(scenario.readers)]
    per_reader = [scenario.members // scenario.readers] * scenario.readers
    per_reader[0] += scenario.members - sum(per_reader)
    processes = [
        context.Process(
            target=reader_process,
            args=(backend, config, group, count, channel_prefix, slot, stats, readies[slot], stop),
            daemon=True,
        )
        for slot, count in enumerate(per_reader)
    ]
    try:
        for process in processes:
            process.start()
        ready_by = time.monotonic() + READY_TIMEOUT_SECONDS
        for event in readies:
            if not event.wait(max(0.0, ready_by - time.monotonic())):
                raise TimeoutError(f"readers not ready within {READY_TIMEOUT_SECONDS:.0f}s")
        over_capacity = OverCapacityCounter()
        layer_logger = logging.getLogger("channels_redis.core")
        layer_logger.setLevel(logging.INFO)
        layer_logger.addHandler(over_capacity)
        try:
            started, durations, finished = asyncio.run(_send(backend, config, group, scenario.messages))
        finally:
            layer_logger.removeHandler(over_capacity)
        expected = scenario.members * scenario.messages
        give_up = time.monotonic() + deadline
        progress, progress_at = -1.0, time.monotonic()
        while time.monotonic() < give_up:
            received = sum(stats[slot * STATS] for slot in range(scenario.readers))
            if received >= expected:
                break
            if received != progress:
                progress, progress_at = received, time.monotonic()
            elif time.monotonic() - progress_at > QUIET_SECONDS:
                break
            time.sleep(REPORT_INTERVAL_SECONDS)
        time.sleep(2 * REPORT_INTERVAL_SECONDS)  # the readers' last report
    finally:
        stop.set()
        for process in processes:
            process.join(STOP_TIMEOUT_SECONDS)
            if process.is_alive():
                process.kill()
        _delete_keys(redis_url, prefix)
    received = int(sum(stats[slot * STATS] for slot in range(scenario.readers)))
    last = max(stats[slot * STATS + 1] for slot in range(scenario.readers))
    ordered = sorted(durations)
    return Result(
        scenario=scenario.name,
        layer=kind,
        members=scenario.members,
        messages=scenario.messages,
        expected=expected,
        received=received,
        lost=expected - received,
        duplicates=int(sum(stats[slot * STATS + 3] for slot in range(scenario.readers))),
        reordered=int(sum(stats[slot * STATS + 2] for slot in range(scenario.readers))),
        receive_errors=int(sum(stats[slot * STATS + 4] for slot in range(scenario.readers))),
        refused_at_send=over_capacity.count,
        send_seconds=finished - started,
        group_send_ms=1000 * statistics.fmean(durations),
        group_send_p99_ms=1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        deliveries_per_second=received / (last - started) if received and last > started else 0.0,
        drain_seconds=max(0.0, last - finished) if received else 0.0,
    )


def _delete_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for index in range(0, len(keys), 500):
            client.delete(*keys[index : index + 500])
    finally:
        client.close()


# --- reporting -------------------------------------------------------------------------------------


def summary(results: list[Result]) -> list[dict[str, Any]]:
    rows = []
    keys = sorted(
        {(r.scenario, r.layer) for r in results}, key=lambda k: ([s.name for s in SCENARIOS].index(k[0]), k[1])
    )
    for scenario, layer in keys:
        runs = [r for r in results if (r.scenario, r.layer) == (scenario, layer)]

        def spread(field: str, runs: list[Result] = runs) -> tuple[float, float, float]:
            values = [float(getattr(r, field)) for r in runs]
            return statistics.median(values), min(values), max(values)

        rows.append(
            {
                "scenario": scenario,
                "layer": layer,
                "runs": len(runs),
                "members": runs[0].members,
                "messages": runs[0].messages,
                "expected": runs[0].expected,
                **{
                    field: spread(field)
                    for field in (
                        "group_send_ms",
                        "group_send_p99_ms",
                        "deliveries_per_second",
                        "lost",
                        "duplicates",
                        "reordered",
                        "drain_seconds",
                        "refused_at_send",
                        "receive_errors",
                    )
                },
            }
        )
    return rows


def _fmt(value: tuple[float, float, float], digits: int = 2) -> str:
    median, low, high = value
    if low == high:
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} ({low:,.{digits}f}-{high:,.{digits}f})"


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\nmedian (min-max) over the runs")
    header = (
        "| scenario | layer | members x messages | group_send ms (mean) | p99 ms | deliveries/s | lost "
        "| refused at send | reordered | receive errors | drain s |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for row in rows:
        print(
            f"| {row['scenario']} | {row['layer']} | {row['members']:,} x {row['messages']:,} | "
            f"{_fmt(row['group_send_ms'], 3)} | {_fmt(row['group_send_p99_ms'], 2)} | "
            f"{_fmt(row['deliveries_per_second'], 0)} | {_fmt(row['lost'], 0)} of {row['expected']:,} | "
            f"{_fmt(row['refused_at_send'], 0)} | {_fmt(row['reordered'], 0)} | {_fmt(row['receive_errors'], 0)} | "
            f"{_fmt(row['drain_seconds'], 2)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", action="append", help="scenario name (repeat); default: all")
    parser.add_argument("--layer", action="append", choices=["core", "pubsub"], help="default: both")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per scenario after the sends")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    layers = args.layer or ["core", "pubsub"]
    print(f"[layers] Redis {args.redis_url}, {args.runs} run(s), {len(scenarios)} scenario(s), layers {layers}")
    print(f"[layers] machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}")
    results: list[Result] = []
    for run in range(1, args.runs + 1):
        for scenario in scenarios:
            for kind in layers:
                began = time.monotonic()
                print(f"[layers] run {run}/{args.runs}: {scenario.name} on {kind} ...", end=" ", flush=True)
                result = run_scenario(scenario, kind, args.redis_url, args.deadline)
                results.append(result)
                print(
                    f"{result.group_send_ms:.3f} ms/group_send, {result.deliveries_per_second:,.0f} deliveries/s, "
                    f"lost {result.lost:,}/{result.expected:,} (refused at send: {result.refused_at_send:,} "
                    f"keyxmessage), reordered {result.reordered:,}, duplicates {result.duplicates:,}, "
                    f"receive errors {result.receive_errors:,} ({time.monotonic() - began:.1f}s)",
                    flush=True,
                )
    rows = summary(results)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"runs": [asdict(r) for r in results], "summary": rows}, indent=2))
        print(f"[layers] figures written to {args.json}")


if __name__ == "__main__":
    main()
