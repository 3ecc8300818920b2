"""The arena of the flood tests: one real Herald process (Daphne), the bystander of tenant B
connected to it the whole time (bystander.py, a process of its own), and the attacker's tools:
HTTP and WebSocket clients that connect from a loopback address of the attacker's choosing (each
address is a different client IP to Herald's per-IP limits), and phase measurements."""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.integration.conftest import ROOT, HeraldProcess
from tests.security.figures import FIGURES, Phase

# Loopback addresses, one per role: Herald sees each as a different client IP.
BYSTANDER_IP = "127.0.0.2"
SETTLE_SECONDS = 20.0  # how long a phase may take to deliver what was published during it


@dataclass
class Measured:
    result: Phase | None = None


@dataclass
class Bystander:
    proc: subprocess.Popen[str]
    phases: list[Phase] = field(default_factory=list)

    @classmethod
    def start(cls, server: HeraldProcess, *, token: str, key: str, user: str) -> Bystander:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.security.bystander",
                *("--ws-url", server.ws_url, "--base-url", server.url, "--token", token, "--key", key),
                *("--user", user, "--source", BYSTANDER_IP, "--interval", "0.1"),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        bystander = cls(proc)
        ready = bystander._line(30)
        if ready != {"ready": True}:
            bystander.stop()
            raise RuntimeError(f"the bystander did not start: {ready}")
        return bystander

    def _line(self, timeout: float) -> Any:
        assert self.proc.stdout is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not readable:
            raise TimeoutError("the bystander did not answer")
        return json.loads(self.proc.stdout.readline() or "null")

    def report(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("report\n")
        self.proc.stdin.flush()
        return dict(self._line(10))

    def measure(self, name: str, started: float, ended: float) -> Phase:
        """What the bystander saw of the notifications it published between `started` and `ended`,
        once they have all arrived (or SETTLE_SECONDS have passed: the rest are lost)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            report = self.report()
            published = [item for item in report["published"] if started <= item["sent"] <= ended]
            # A publish still in flight when the phase ended is waited for too.
            pending = [item for item in published if item["status"] is None]
            ids = [item["id"] for item in published if item["status"] == 202]
            missing = [event_id for event_id in ids if str(event_id) not in report["received"]]
            if (not missing and not pending) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        phase = Phase(
            name=name,
            latencies=[
                report["received"][str(item["id"])] - item["sent"]
                for item in published
                if item["status"] == 202 and str(item["id"]) in report["received"]
            ],
            published=len(published),
            lost=len(missing),
            failed_publishes=sum(1 for item in published if item["status"] != 202),
            disconnects=sum(1 for at, _ in report["disconnects"] if started <= at <= ended + SETTLE_SECONDS),
        )
        FIGURES.phase(phase)
        self.phases.append(phase)
        return phase

    @contextlib.contextmanager
    def phase(self, name: str, *, minimum_seconds: float = 1.0) -> Iterator[Measured]:
        """Measure the bystander while the body runs (at least `minimum_seconds`, so that a fast
        flood still has a few samples), then assert it lost nothing and kept its connection. The
        figures are in the yielded object's `result` afterwards."""
        measured = Measured()
        started = time.time()
        yield measured
        time.sleep(max(0.0, started + minimum_seconds - time.time()))
        phase = measured.result = self.measure(name, started, time.time())
        assert phase.published > 0, "the bystander published nothing during the phase"
        assert (phase.lost, phase.failed_publishes, phase.disconnects) == (0, 0, 0), phase.line()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def http(
    server: HeraldProcess,
    method: str,
    path: str,
    body: Any = None,
    *,
    credential: str | None = None,
    source: str = "127.0.0.1",
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request from `source`; returns (status, headers, JSON body or raw bytes)."""
    connection = HTTPConnection("127.0.0.1", server.port, timeout=15, source_address=(source, 0))
    try:
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if credential is not None:
            all_headers["Authorization"] = f"Bearer {credential}"
        connection.request(method, path, body=payload, headers=all_headers)
        response = connection.getresponse()
        content = response.read()
        try:
            parsed: Any = json.loads(content) if content else None
        except ValueError:
            parsed = content
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        connection.close()


async def ws_connect(server: HeraldProcess, *, source: str = "127.0.0.1", **options: Any) -> ClientConnection:
    return await connect(
        server.ws_url,
        local_addr=(source, 0),
        open_timeout=15,
        close_timeout=2,
        ping_interval=None,
        max_size=2**22,
        **options,
    )


async def auth_outcome(socket: ClientConnection, token: str, timeout: float = 15) -> int:
    """Send `auth`; return 0 once welcomed (at `resumed`: the replay is over, so the next frame
    is an answer), else the close code (1006: closed without one)."""
    import asyncio

    from websockets.exceptions import ConnectionClosed

    await socket.send(json.dumps({"type": "auth", "token": token}))
    try:
        async with asyncio.timeout(timeout):
            while True:
                if json.loads(await socket.recv())["type"] == "resumed":
                    return 0
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006


def close_code(error: BaseException) -> int:
    rcvd = getattr(error, "rcvd", None)
    return int(rcvd.code) if rcvd is not None else 1006
