"""Fault-injection helpers for integration tests: a private Redis that can be restarted, a TCP
proxy that can cut a service off, a WebSocket client that reconnects and resumes like a real
one, and the figures each fault test records."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from tests.integration.conftest import free_port, wait_until

# Figures of every fault test in this session, printed in the terminal summary.
REPORT: list[str] = []


def record(name: str, **figures: Any) -> str:
    line = f"{name}: " + ", ".join(f"{key}={value}" for key, value in figures.items())
    REPORT.append(line)
    print(line)
    return line


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port (never the shared one)."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="herald-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(self._answers, 10, "private redis start")

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class TcpProxy:
    """Forwards a loopback port to a target; `cut()` drops every connection and refuses new ones
    until `restore()`, as if the target became unreachable."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.open = True
        self._running = True
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while self._running:
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            if not self.open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open = False
        with self._lock:
            connections, self._connections = self._connections, []
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self._running = False
        self.cut()
        self._server.close()


@dataclass
class ResumingClient:
    """A real `websockets` client that behaves like a good Herald client: on any close it
    reconnects (to the next URL, round-robin), resumes from the highest cursor it processed and
    drops duplicate ids; it records duplicates, reconnects and close codes."""

    urls: list[str]
    token: str
    name: str = "client"
    received: dict[int, dict[str, Any]] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    duplicates: int = 0
    reconnects: int = 0
    close_codes: list[int] = field(default_factory=list)
    not_recovered: int = 0
    cursor: str | None = None
    _task: asyncio.Task[None] | None = None
    _stop: bool = False
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    last_welcome_at: float = 0.0
    ssl: Any = None  # an SSLContext for wss:// URLs
    # What happened to the connection, for the message of a failed wait: (time, what, detail).
    history: list[tuple[float, str, Any]] = field(default_factory=list)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=5)

    async def _run(self) -> None:
        attempt = 0
        while not self._stop:
            url = self.urls[attempt % len(self.urls)] if attempt else self.urls[0]
            try:
                async with connect(url, open_timeout=5, close_timeout=1, ssl=self.ssl) as ws:
                    auth: dict[str, Any] = {"type": "auth", "token": self.token}
                    if self.cursor is not None:
                        auth["since"] = self.cursor
                    self._note("auth", (url.rsplit(":", 1)[-1], self.cursor))
                    await ws.send(json.dumps(auth))
                    async for raw in ws:
                        self._handle(json.loads(raw))
                        if self.connected.is_set() is False and self.last_welcome_at:
                            self.connected.set()
                    self.close_codes.append(ws.close_code or 1006)
                    self._note("closed", ws.close_code)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # refused, reset, handshake failure: retry
                code = getattr(getattr(error, "rcvd", None), "code", None)
                self.close_codes.append(code or 1006)
                self._note("failed", code or type(error).__name__)
            self.connected.clear()
            attempt += 1
            self.reconnects += 1
            # Short backoff: these tests bound recovery time, and servers are on loopback.
            await asyncio.sleep(min(1.0, 0.05 * 2 ** min(attempt, 5)))

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "welcome":
            self.last_welcome_at = time.monotonic()
            self._note("welcome", frame["cursor"])
            self._advance(frame["cursor"])
        elif kind == "notification":
            if frame["id"] in self.received:
                self.duplicates += 1
            else:
                self.received[frame["id"]] = frame
                self.order.append(frame["id"])
            self._advance(frame["cursor"])
        elif kind == "resumed":
            if not frame["recovered"]:
                self.not_recovered += 1
            self._note("resumed", (frame["cursor"], frame["replayed"], frame["recovered"]))
            self._advance(frame["cursor"])

    def _note(self, what: str, detail: Any) -> None:
        self.history.append((round(time.monotonic(), 3), what, detail))

    def _advance(self, cursor: str) -> None:
        if self.cursor is None or int(cursor) > int(self.cursor):
            self.cursor = cursor

    async def wait_for(self, ids: set[int], timeout: float) -> float:
        """Wait until every id has arrived; return how long it took."""
        started = time.monotonic()
        while not ids <= set(self.received):
            if time.monotonic() - started > timeout:
                missing = sorted(ids - set(self.received))
                cursors = [(event_id, self.received[event_id]["cursor"]) for event_id in self.order[-8:]]
                raise TimeoutError(
                    f"{self.name}: {len(missing)} of {len(ids)} missing, e.g. {missing[:5]}; cursor {self.cursor}; "
                    f"last received (id, cursor) {cursors}; history {self.history[-20:]}"
                )
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    def in_order(self) -> bool:
        cursors = [int(self.received[event_id]["cursor"]) for event_id in self.order]
        return cursors == sorted(cursors)
