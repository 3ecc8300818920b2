"""The bystander of the flood tests, in a process of its own (so the attacker's client-side work
cannot slow down its measurements): one end user of tenant B, connected to the server under attack
the whole time from its own loopback address, publishing to itself every INTERVAL seconds over
REST and recording when each notification arrives.

Driven over stdin/stdout, one JSON object per line: it prints {"ready": ...} once welcomed; on
"report" it prints everything recorded so far; on "stop" (or end of input) it exits. Times are
time.time() so the test process can cut them into phases. Standard library + websockets only."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

# Each HTTP request and each wait for the socket is bounded: a stuck server shows up as failures
# in the report, never as a hung test.
HTTP_TIMEOUT = 10.0


class State:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []  # {"id", "sent", "acked", "status"}
        self.received: dict[int, float] = {}
        self.duplicates = 0
        self.disconnects: list[list[Any]] = []  # [when, close code or error]
        self.errors: list[str] = []
        self.cursor: str | None = None

    def report(self) -> dict[str, Any]:
        return {
            "published": self.published,
            "received": {str(event_id): at for event_id, at in self.received.items()},
            "duplicates": self.duplicates,
            "disconnects": self.disconnects,
            "errors": self.errors[-20:],
        }


async def http_post(url: str, path: str, body: dict[str, Any], key: str, source: str) -> tuple[int, Any]:
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(parts.hostname, parts.port, local_addr=(source, 0)), HTTP_TIMEOUT
    )
    try:
        writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            ).encode()
            + payload
        )
        raw = await asyncio.wait_for(reader.read(), HTTP_TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    head, _, content = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(content) if content else None
    except ValueError:
        return status, content[:200].decode(errors="replace")


async def listen(args: argparse.Namespace, state: State, ready: asyncio.Event) -> None:
    while True:
        try:
            async with connect(
                args.ws_url, local_addr=(args.source, 0), open_timeout=10, max_size=2**22, ping_interval=None
            ) as socket:
                auth: dict[str, Any] = {"type": "auth", "token": args.token}
                if state.cursor is not None:
                    auth["since"] = state.cursor
                await socket.send(json.dumps(auth))
                async for raw in socket:
                    frame = json.loads(raw)
                    kind = frame.get("type")
                    if kind == "welcome":
                        state.cursor = state.cursor or frame["cursor"]
                        ready.set()
                    elif kind == "notification":
                        if frame["id"] in state.received:
                            state.duplicates += 1
                        else:
                            state.received[frame["id"]] = time.time()
                        state.cursor = frame["cursor"]
                    elif kind == "ping":
                        await socket.send('{"type": "pong"}')
                    elif kind == "error":
                        state.errors.append(json.dumps(frame))
                state.disconnects.append([time.time(), socket.close_code])
        except (ConnectionClosed, OSError, TimeoutError) as error:
            state.disconnects.append([time.time(), repr(error)[:200]])
        await asyncio.sleep(0.2)  # then resume from the cursor: losses stay measurable


async def publish(args: argparse.Namespace, state: State) -> None:
    number = 0
    while True:
        number += 1
        started = time.time()
        record: dict[str, Any] = {"id": None, "sent": started, "acked": None, "status": None}
        state.published.append(record)
        try:
            status, body = await http_post(
                args.base_url,
                "/api/v1/events",
                {"kind": "bystander.tick", "recipients": [args.user], "data": {"n": number}},
                args.key,
                args.source,
            )
            record.update(status=status, acked=time.time())
            if status == 202:
                record["id"] = body["id"]
            else:
                state.errors.append(f"publish {number}: {status} {body}")
        except Exception as error:  # refused, reset, timed out: a failed publish, reported
            record["status"] = repr(error)[:200]
        await asyncio.sleep(max(0.0, args.interval - (time.time() - started)))


async def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--ws-url", "--base-url", "--token", "--key", "--user", "--source"):
        parser.add_argument(name, required=True)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    state, ready = State(), asyncio.Event()
    listener = asyncio.create_task(listen(args, state, ready))
    await asyncio.wait_for(ready.wait(), 30)
    publisher = asyncio.create_task(publish(args, state))
    print(json.dumps({"ready": True}), flush=True)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        command = line.strip()
        if command == "report":
            print(json.dumps(state.report()), flush=True)
        elif command in ("stop", ""):
            break
    for task in (listener, publisher):
        task.cancel()


if __name__ == "__main__":
    asyncio.run(main())
