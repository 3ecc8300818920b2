#!/usr/bin/env python3
"""Where a Herald server's CPU goes, from py-spy "raw" (folded) samples recorded with --threads.

    pyspy_components.py PROFILE.folded [--top 25]

Each sample is first given a ROLE by what its stack runs (the event-loop thread; a sync thread
running the fan-out; a sync thread serving a REST request; other sync_to_async work such as WebSocket
auth), then a COMPONENT: the innermost frame (walking from the leaf towards the root) that belongs
to a known component, so asyncio/stdlib helpers are charged to the library that called them, as the
shared harness's tools/pyspy_summary.py does. Also printed: inclusive shares of the functions on
Herald's delivery path, and the hottest leaf frames."""

from __future__ import annotations

import argparse
import collections
import re

ROLES = [  # (role, substrings; the first role whose substring occurs anywhere in the stack wins)
    ("fan-out thread (notifications/fanout.py)", ["notifications/fanout.py"]),
    ("REST request thread (Django/DRF views)", ["django/core/handlers/", "rest_framework/"]),
    ("psycopg pool maintenance threads", ["psycopg_pool/"]),
    ("other sync_to_async work (WebSocket auth, selectors)", ["concurrent/futures/thread.py"]),
]
EVENT_LOOP = "event-loop thread"
OTHER_THREAD = "other threads"

COMPONENTS = [  # (component, substrings of "function (file:line)"), checked per frame from the leaf
    ("logging (JSON log lines)", ["logging/", "config/logging.py"]),
    ("json / orjson", ["json/", "orjson"]),
    ("autobahn (WebSocket framing)", ["autobahn/", "txaio/"]),
    ("twisted (reactor, TCP transport)", ["twisted/"]),
    ("daphne (ASGI server glue)", ["daphne/"]),
    ("uvicorn + websockets (ASGI server, WebSocket framing)", ["uvicorn/", "websockets/"]),
    ("channels_redis + redis-py + msgpack (layer)", ["channels_redis/", "redis/", "msgpack"]),
    ("channels (consumer send path, routing, db helpers)", ["channels/"]),
    ("asgiref (sync_to_async / async_to_sync)", ["asgiref/"]),
    ("psycopg (PostgreSQL driver, pool)", ["psycopg"]),
    ("django ORM (django/db)", ["django/db/"]),
    ("DRF (rest_framework)", ["rest_framework/"]),
    ("django (handlers, middleware, other)", ["django/"]),
    ("jwt (token verify)", ["jwt/"]),
    ("herald hub (notifications/hub.py)", ["notifications/hub.py"]),
    ("herald consumer (notifications/consumers.py)", ["notifications/consumers.py"]),
    ("herald fan-out (notifications/fanout.py)", ["notifications/fanout.py"]),
    ("herald delivery (notifications/delivery.py)", ["notifications/delivery.py"]),
    ("herald protocol (notifications/protocol.py)", ["notifications/protocol.py"]),
    ("herald other (accounts, notifications, config)", ["notifications/", "accounts/", "config/"]),
    ("threading / executor plumbing", ["concurrent/futures/", "threading.py", "queue.py"]),
]
OTHER = "asyncio event loop / other"

# py-spy's idle detection misses threads blocked in C (it was checked on this machine: executor workers
# waiting on their queue and psycopg waiting for the server are sampled as if running). A sample whose
# LEAF frame is one of these is a wait, not CPU: it is reported apart and left out of the CPU shares.
WAITS = [
    ("idle: event loop waiting in select/epoll", ["select (selectors.py"]),
    ("idle: executor thread waiting for work", ["_worker (concurrent/futures/thread.py"]),
    ("idle: waiting on a lock/condition", ["wait (threading.py", "acquire (threading.py"]),
    ("waiting for PostgreSQL (psycopg)", ["wait (psycopg/", "wait_conn (psycopg/"]),
    ("waiting for Redis (redis-py socket read/connect)", ["_read_from_socket (redis/", "_connect (redis/"]),
]

# Functions on the delivery path whose inclusive share (self + callees) is worth seeing.
INCLUSIVE = [
    ("hub.dispatch (all pushes of one layer message)", r"\bdispatch \(notifications/hub\.py"),
    ("consumer.push", r"\bpush \(notifications/consumers\.py"),
    ("channels session wrapper send (per frame)", r"InstanceSessionWrapper\.send \("),
    ("daphne handle_reply (ASGI send -> autobahn)", r"Server\.handle_reply \(daphne/"),
    ("autobahn sendMessage (framing)", r"\bsendMessage \(autobahn/"),
    ("twisted startWriting (epoll add_writer per frame)", r"\bstartWriting \(twisted/"),
    ("twisted doWrite (socket.send + remove_writer)", r"\bdoWrite \(twisted/"),
    ("uvicorn asgi_send (ASGI send -> websockets)", r"\basgi_send \(uvicorn/"),
    ("websockets write_frame (framing + transport.write)", r"\bwrite_frame(_sync)? \(websockets/"),
    ("channels_redis receive", r"\breceive \(channels_redis/core\.py"),
    ("fanout_event (one event's fan-out)", r"\bfanout_event \(notifications/fanout\.py"),
    ("delivery._group_send (async_to_sync group_send)", r"\b_group_send \(notifications/delivery\.py"),
    ("events_publish service", r"\bevents_publish \(notifications/services\.py"),
    ("rate limit consume (Django Redis cache)", r"\bconsume \(accounts/ratelimit\.py"),
    ("API key lookup", r"\b_api_key_principal \(accounts/credentials\.py"),
    ("consumer.receive (client frames)", r"\breceive \(notifications/consumers\.py"),
    ("consumer._authenticate", r"\b_authenticate \(notifications/consumers\.py"),
    ("token verify", r"\btoken_verify \(accounts/tokens\.py"),
    ("selectors.socket_start (welcome/replay queries)", r"\bsocket_start \(notifications/selectors\.py"),
    ("hub.register (group_add)", r"\bregister \(notifications/hub\.py"),
    ("logging (JSON log lines)", r"config/logging\.py"),
]


def wait_of(frames: list[str]) -> str | None:
    leaf = frames[-1]
    for name, keys in WAITS:
        if any(key in leaf for key in keys):
            return name
    return None


def role_of(frames: list[str], thread: str = "") -> str:
    """thread: py-spy's "thread (tid): name" root frame when recorded with --threads."""
    text = ";".join(frames)
    for role, keys in ROLES:
        if any(key in text for key in keys):
            return role
    if thread and not thread.endswith(("MainThread", ")")):
        return OTHER_THREAD
    return EVENT_LOOP


def component_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, keys in COMPONENTS:
            if any(key in frame for key in keys):
                return name
    return OTHER


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    total = 0
    by_role: collections.Counter[str] = collections.Counter()
    by_component: collections.Counter[str] = collections.Counter()
    by_role_component: collections.Counter[tuple[str, str]] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    waits: collections.Counter[tuple[str, str]] = collections.Counter()
    all_samples = 0
    patterns = [(name, re.compile(pattern)) for name, pattern in INCLUSIVE]
    with open(args.profile) as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line or " " not in line:
                continue
            stack, count_text = line.rsplit(" ", 1)
            count = int(count_text)
            parts = stack.split(";")
            thread = next((part for part in parts if part.startswith("thread (")), "")
            frames = [frame for frame in parts if frame and not frame.startswith(("thread (", "process "))]
            if not frames:
                continue
            all_samples += count
            role = role_of(frames, thread)
            wait = wait_of(frames)
            if wait is not None:
                waits[(role, wait)] += count
                continue
            total += count
            component = component_of(frames)
            by_role[role] += count
            by_component[component] += count
            by_role_component[(role, component)] += count
            leaves[frames[-1]] += count
            for name, pattern in patterns:
                if any(pattern.search(frame) for frame in frames):
                    inclusive[name] += count
    if not total:
        raise SystemExit(f"no samples in {args.profile}")

    def share(count: int) -> str:
        return f"{100 * count / total:5.1f} %"

    print(f"samples: {all_samples:,} ({args.profile}); {total:,} on CPU, {all_samples - total:,} waiting\n")
    print("#### Waiting samples (left out of the CPU shares below)\n\n| thread role | wait | share of all samples |")
    print("|---|---|---|")
    for (role, wait), count in waits.most_common():
        print(f"| {role} | {wait} | {100 * count / all_samples:5.1f} % |")
    print("\nCPU shares below are of the on-CPU samples.\n")
    print("#### By thread role\n\n| role | share of samples |\n|---|---|")
    for role, count in by_role.most_common():
        print(f"| {role} | {share(count)} |")
    print("\n#### By component (all threads)\n\n| component | share | of which event-loop thread |\n|---|---|---|")
    for component, count in by_component.most_common():
        print(f"| {component} | {share(count)} | {share(by_role_component[(EVENT_LOOP, component)])} |")
    print("\n#### Role x component (top entries)\n\n| role | component | share |\n|---|---|---|")
    for (role, component), count in by_role_component.most_common(args.top):
        print(f"| {role} | {component} | {share(count)} |")
    print("\n#### Inclusive share of delivery-path functions\n\n| function | inclusive share |\n|---|---|")
    for name, _ in INCLUSIVE:
        if inclusive[name]:
            print(f"| {name} | {share(inclusive[name])} |")
    print(f"\n#### Hottest leaf frames (self time, top {args.top})\n\n| frame | share |\n|---|---|")
    for frame, count in leaves.most_common(args.top):
        print(f"| `{frame[:110]}` | {share(count)} |")


if __name__ == "__main__":
    main()
