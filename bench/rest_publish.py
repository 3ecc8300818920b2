"""REST publish load: POST /api/v1/events as fast as a fixed number of keep-alive clients can,
for a bounded time, then requests/s and latency percentiles. Used by bench/rest_publish.sh (which
starts and pins the server); works against any Herald URL.

    python bench/rest_publish.py --url http://127.0.0.1:8140 --api-key hk_... --kind topic \
        --concurrency 16 --duration 15

Kinds: `single` (one recipient, u0..u999 in turn: one inbox row per event), `topic` (the `bench`
topic, live listeners only: no inbox rows), `batch` (POST /events/batch with 10 single-recipient
events: requests/s x 10 events). Standard library only; progress on stderr every second; one JSON
line with the figures on stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from urllib.parse import urlsplit

PAYLOAD = {"text": "x" * 80}  # ~100 bytes of data, as the WebSocket benchmark's messages


def body_for(kind: str, index: int) -> tuple[str, bytes]:
    if kind == "single":
        event = {"kind": "bench", "recipients": [f"u{index % 1000}"], "data": PAYLOAD}
        return "/api/v1/events", json.dumps(event).encode()
    if kind == "topic":
        return "/api/v1/events", json.dumps({"kind": "bench", "topics": ["bench"], "data": PAYLOAD}).encode()
    events = [{"kind": "bench", "recipients": [f"u{(index * 10 + k) % 1000}"], "data": PAYLOAD} for k in range(10)]
    return "/api/v1/events/batch", json.dumps({"events": events}).encode()


class Worker(threading.Thread):
    def __init__(self, number: int, args: argparse.Namespace, stop_at: float, measure_from: float) -> None:
        super().__init__(daemon=True)
        self.number, self.args, self.stop_at, self.measure_from = number, args, stop_at, measure_from
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def run(self) -> None:
        target = urlsplit(self.args.url)
        connection_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
        connection = connection_class(target.hostname or "127.0.0.1", target.port, timeout=10)
        headers = {"Authorization": f"Bearer {self.args.api_key}", "Content-Type": "application/json"}
        index = self.number
        while (now := time.monotonic()) < self.stop_at:
            path, body = body_for(self.args.kind, index)
            index += self.args.concurrency
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as error:
                status = type(error).__name__
                connection.close()
                connection = connection_class(target.hostname or "127.0.0.1", target.port, timeout=10)
            if now < self.measure_from:
                continue
            if status == 202:
                self.latencies.append(time.monotonic() - now)
            else:
                self.errors[str(status)] = self.errors.get(str(status), 0) + 1
        connection.close()


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", default=os.environ.get("HERALD_BENCH_API_KEY", ""))
    parser.add_argument("--kind", choices=["single", "topic", "batch"], default="single")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds (max 300)")
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    if not args.api_key:
        parser.error("--api-key or HERALD_BENCH_API_KEY is required")
    args.concurrency = max(1, min(args.concurrency, 256))
    args.duration = max(1.0, min(args.duration, 300.0))

    started = time.monotonic()
    measure_from = started + args.warmup
    stop_at = measure_from + args.duration
    workers = [Worker(number, args, stop_at, measure_from) for number in range(args.concurrency)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers) and time.monotonic() < stop_at + 15:
        time.sleep(1.0)
        done = sum(len(worker.latencies) for worker in workers)
        elapsed = max(0.0, time.monotonic() - measure_from)
        print(f"[rest_publish {args.kind}] {elapsed:5.1f}s accepted {done:,}", file=sys.stderr, flush=True)
    for worker in workers:
        worker.join(timeout=15)
    latencies = [latency for worker in workers for latency in worker.latencies]
    errors: dict[str, int] = {}
    for worker in workers:
        for status, count in worker.errors.items():
            errors[status] = errors.get(status, 0) + count
    events_per_request = 10 if args.kind == "batch" else 1
    result = {
        "kind": args.kind,
        "concurrency": args.concurrency,
        "seconds": args.duration,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / args.duration, 1),
        "events_per_s": round(len(latencies) * events_per_request / args.duration, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "errors": errors,
    }
    print(json.dumps(result))
    return 0 if latencies and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
