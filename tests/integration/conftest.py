"""Real processes for integration tests: Herald on Daphne bound to a free loopback port, pointed
at the test database (and at Redis when REDIS_URL is set), stopped by PID after each test."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 30.0


def _ports_below_the_ephemeral_range() -> range:
    """Ports the kernel never hands to outgoing connections: a port of its ephemeral range
    (net.ipv4.ip_local_port_range, 32768-60999 by default) that is free now can become a test
    client's local port before the server binds it ("Address already in use", seen for nginx while
    thousands of client sockets came and went)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(max(1024, low - 12000), low)


def free_port() -> int:
    """A loopback port that is free now, outside the ephemeral range (see above)."""
    ports = _ports_below_the_ephemeral_range()
    for _ in range(200):
        port = random.choice(ports)  # a port number, not a secret
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # in use, or in TIME_WAIT
                continue
            return port
    raise RuntimeError(f"no free port in {ports}")


@dataclass
class ManagedProcess:
    """A process a test started (a server or a worker), with its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(repr=False)

    # How long stop() waits after `sig` before it sends SIGKILL.
    STOP_TIMEOUT: ClassVar[float] = 10.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int | None:
        """Send `sig` and wait (SIGKILL after `timeout`); the exit code (negative: killed by a signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(self.STOP_TIMEOUT if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: no cleanup at all, as in a crash."""
        self.stop(signal.SIGKILL)


@dataclass
class HeraldProcess(ManagedProcess):
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/v1/"


def database_url_for_tests() -> str:
    """The URL of the database pytest-django created, for processes the test starts."""
    settings = connection.settings_dict
    if settings["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings['NAME']}"
    return (
        f"postgres://{settings['USER']}:{settings['PASSWORD']}@{settings['HOST'] or '127.0.0.1'}:"
        f"{settings['PORT'] or 5432}/{settings['NAME']}"
    )


def base_env(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HERALD_", "DJANGO_", "PYTEST_")) and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": "integration-test-secret-key-not-used-anywhere-else-0123456789",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "HERALD_FANOUT_SWEEP_SECONDS": "0.2",
            "DATABASE_URL": database_url_for_tests(),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
        env["HERALD_REDIS_PREFIX"] = os.environ.get("HERALD_REDIS_PREFIX", "herald-test")
    env.update(overrides)
    return env


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout}s")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_herald(
    name: str,
    *,
    port: int | None = None,
    serve_args: tuple[str, ...] = (),
    access_log: bool = True,
    **env_overrides: str,
) -> HeraldProcess:
    port = port or free_port()
    log_path = Path(tempfile.mkstemp(prefix=f"herald-{name}-", suffix=".log")[1])
    env = base_env(**env_overrides)
    command = [sys.executable, "manage.py", "serve", "--port", str(port), *serve_args]
    if access_log:
        command.append("--access-log")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = HeraldProcess(name=name, port=port, proc=proc, log_path=log_path, env=env)
    try:
        wait_until(lambda: not server.alive() or _answers(f"{server.url}/healthz"), STARTUP_TIMEOUT, f"{name} start")
    except TimeoutError:
        server.kill()
        raise
    if not server.alive():
        raise RuntimeError(f"{name} exited at start:\n{server.log()}")
    return server


@pytest.fixture
def herald_processes(transactional_db: Any, request: pytest.FixtureRequest) -> Iterator[Callable[..., HeraldProcess]]:
    """Start Herald processes with `start(name, **env)`; all are stopped after the test, and their
    logs are printed if the test failed."""
    started: list[HeraldProcess] = []

    def start(name: str = "herald", *, access_log: bool = True, **env: str) -> HeraldProcess:
        server = start_herald(name, access_log=access_log, **env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for server in started:
            print(f"\n----- log of {server.name} (port {server.port}) -----\n{server.log()[-20000:]}")
    for server in started:
        server.log_path.unlink(missing_ok=True)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs a real Redis: run with REDIS_URL set (scripts/test does)")
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.integration.faults import REPORT

    if REPORT:
        terminalreporter.section("fault test figures")
        for line in REPORT:
            terminalreporter.write_line(line)


# The nginx + nodes + workers harness (tests/integration/cluster.py): fixtures `cluster` and
# `cluster_factory`. Imported last: it builds on the helpers above.
from tests.integration.cluster import cluster, cluster_factory  # noqa: E402, F401
