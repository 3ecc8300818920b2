"""A Herald cluster for integration tests: nginx with TLS in front of N Herald nodes
(`manage.py serve --proxy-headers`) and M fan-out workers (`manage.py herald_worker`), on free
loopback ports, pointed at the pytest database and at Redis, the same layout `make cluster` runs
(deploy/: the same nginx.conf, renderer and certificates).

Fault tests build on it: every process can be killed (-9), stopped (SIGTERM) and restarted by PID;
nodes can be added (nginx reloads its upstream). Use the fixtures:

    async def test_something(cluster):                 # 2 nodes, 1 worker, rate limits on
        token = cluster.mint(key, "alice")
        client = await cluster.live_client(token)       # wss://, certificate verified with the CA
        cluster.kill_node(0)                            # kill -9
        cluster.restart_node(0)                         # same port, back in nginx's upstream

    async def test_bigger(cluster_factory):
        cluster = cluster_factory(nodes=3, workers=2, rate_limits=False, HERALD_HEARTBEAT_SECONDS="2")

Keyword arguments in CAPITALS are environment variables for every Herald process. With
`rate_limits=False`, loopback is exempt from nginx's per-address limits (a load or reconnect-storm
test from 127.0.0.1 would otherwise meet them: 100 handshakes at once, then 10 per second).
Every wait is bounded; all processes are stopped after the test, and their logs (nginx's too)
are printed when it failed."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from deploy import nginx, tls
from tests.integration.client import LiveClient, rest
from tests.integration.conftest import (
    ROOT,
    HeraldProcess,
    ManagedProcess,
    base_env,
    free_port,
    start_herald,
    wait_until,
)

NGINX_START_TIMEOUT = 30.0
WORKER_START_TIMEOUT = 30.0
COLLECTSTATIC_TIMEOUT = 120.0


@dataclass
class WorkerProcess(ManagedProcess):
    """A `manage.py herald_worker` process (it finishes its batch on SIGTERM: give it longer)."""

    STOP_TIMEOUT: ClassVar[float] = 40.0


def start_worker(name: str, env: dict[str, str]) -> WorkerProcess:
    log_path = Path(tempfile.mkstemp(prefix=f"herald-{name}-", suffix=".log")[1])
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "herald_worker"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(name=name, proc=proc, log_path=log_path, env=env)
    try:
        wait_until(
            lambda: not worker.alive() or "fan-out worker started" in worker.log(),
            WORKER_START_TIMEOUT,
            f"{name} start",
        )
    except TimeoutError:
        worker.kill()
        raise
    if not worker.alive():
        raise RuntimeError(f"{name} exited at start:\n{worker.log()}")
    return worker


_static_root: Path | None = None


def collected_static_root() -> Path:
    """`manage.py collectstatic` once per test session, into a directory nginx's workers can read."""
    global _static_root
    if _static_root is None:
        directory = Path(tempfile.mkdtemp(prefix="herald-static-"))
        directory.chmod(0o755)
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=base_env(STATIC_ROOT=str(directory)),
            check=True,
            timeout=COLLECTSTATIC_TIMEOUT,
        )
        _static_root = directory
    return _static_root


class Cluster:
    """nginx (TLS) + Herald nodes + fan-out workers. Build with `Cluster(...).start()` or the fixtures."""

    def __init__(
        self,
        *,
        nodes: int = 2,
        workers: int = 1,
        rate_limits: bool = True,
        directory: Path | None = None,
        **env: str,
    ) -> None:
        self.node_count, self.worker_count, self.rate_limits = nodes, workers, rate_limits
        self.directory = directory or Path(tempfile.mkdtemp(prefix="herald-cluster-"))
        # nginx's workers (not root) write temporary files below it.
        self.directory.chmod(0o755)
        self.https_port, self.http_port = free_port(), free_port()
        self.extra_env = env
        self.nodes: list[HeraldProcess] = []
        self.workers: list[WorkerProcess] = []
        self.nginx_process: subprocess.Popen[bytes] | None = None
        self.nginx_binary = nginx.find_nginx()
        self.certificates: tls.TlsFiles | None = None
        self._stopped_logs: list[tuple[str, str]] = []  # logs of processes replaced by a restart

    # --- addresses ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def ws_url(self) -> str:
        return f"wss://localhost:{self.https_port}/ws/v1/"

    @property
    def http_url(self) -> str:
        """The plain-HTTP port: it only redirects to HTTPS."""
        return f"http://localhost:{self.http_port}"

    @property
    def ca_path(self) -> Path:
        assert self.certificates is not None, "start() the cluster first"
        return self.certificates.ca_certificate

    @property
    def origin(self) -> str:
        return self.base_url

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the cluster's certificate (hostname included)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    @property
    def access_log_path(self) -> Path:
        return self.directory / "logs" / "access.log"

    def access_log(self) -> str:
        return self.access_log_path.read_text(errors="replace") if self.access_log_path.exists() else ""

    def error_log(self) -> str:
        path = self.directory / "logs" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- REST and WebSocket through nginx ------------------------------------------------------------

    def rest(self, method: str, path: str, body: Any = None, credential: str | None = None, **kwargs: Any) -> Any:
        """A JSON request over https:// through nginx: (status, body)."""
        return rest(self.base_url, method, path, body, credential, context=self.ssl_context(), **kwargs)

    def mint(self, api_key: str, user_id: str, **claims: Any) -> str:
        status, body = self.rest("POST", "/api/v1/tokens", {"user_id": user_id, **claims}, api_key)
        assert status == 201, body
        return str(body["token"])

    async def live_client(self, token: str, **auth: Any) -> LiveClient:
        """A real WebSocket client over wss:// through nginx, authenticated and past `resumed`."""
        return await LiveClient.open(self.ws_url, token, ssl_context=self.ssl_context(), **auth)

    def node_for_connection(self, connection_id: str) -> int | None:
        """Which node holds a connection (by the `connected` line in its log), by index."""
        for index, node in enumerate(self.nodes):
            if f'"connection":"{connection_id}"' in node.log():
                return index
        return None

    # --- lifecycle -----------------------------------------------------------------------------------

    def herald_env(self) -> dict[str, str]:
        """Environment overrides of every Herald process: production settings behind nginx."""
        return {
            "HERALD_FANOUT_MODE": "worker",
            "SECURE_SSL_REDIRECT": "1",  # as in production: only nginx's X-Forwarded-Proto lets requests in
            "HERALD_SERVE_STATIC": "0",
            "STATIC_ROOT": str(collected_static_root()),
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "CSRF_TRUSTED_ORIGINS": f"{self.base_url},https://127.0.0.1:{self.https_port}",
            **self.extra_env,
        }

    def start(self) -> Cluster:
        if self.nginx_binary is None:
            raise RuntimeError("nginx is not installed (scripts/system-packages installs it)")
        self.certificates = tls.ensure_certificates(self.directory / "tls")
        try:
            for _ in range(self.node_count):
                self.add_node(reload=False)
            for _ in range(self.worker_count):
                self.add_worker()
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything (nginx first, then nodes, then workers); safe to call twice."""
        if self.nginx_process is not None and self.nginx_process.poll() is None:
            self.nginx_process.terminate()
            try:
                self.nginx_process.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx_process.kill()
                self.nginx_process.wait(5)
        for node in self.nodes:
            node.stop()
        for worker in self.workers:
            worker.stop()

    def _nginx_conf(self) -> Path:
        assert self.certificates is not None
        layout = nginx.NginxLayout(
            nodes=[f"127.0.0.1:{node.port}" for node in self.nodes],
            https_port=self.https_port,
            http_port=self.http_port,
            server_names=("localhost", "127.0.0.1"),
            certificate=self.certificates.certificate,
            certificate_key=self.certificates.key,
            static_root=collected_static_root(),
            runtime_dir=self.directory / "nginx",
            log_dir=self.directory / "logs",
            limit_exempt=() if self.rate_limits else ("127.0.0.0/8", "::1"),
        )
        conf = nginx.write(layout, self.directory / "nginx.conf")
        assert self.nginx_binary is not None
        nginx.check(self.nginx_binary, conf, self.directory / "nginx")
        return conf

    def _start_nginx(self) -> None:
        assert self.nginx_binary is not None
        conf = self._nginx_conf()
        argv = nginx.command(self.nginx_binary, conf, self.directory / "nginx", "-g", "daemon off;")
        with (self.directory / "nginx-stderr.log").open("wb") as log_file:
            self.nginx_process = subprocess.Popen(
                argv, cwd=self.directory, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.wait_ready(NGINX_START_TIMEOUT)

    def reload_nginx(self) -> None:
        """Re-render nginx.conf (e.g. after add_node) and reload it: new workers, no dropped traffic."""
        assert self.nginx_process is not None and self.nginx_process.poll() is None
        self._nginx_conf()
        self.nginx_process.send_signal(signal.SIGHUP)
        time.sleep(0.5)  # the master starts new workers, the old ones finish their requests

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until https://localhost:<port>/readyz answers 200 through nginx."""
        context = self.ssl_context()

        def ready() -> bool:
            if self.nginx_process is not None and self.nginx_process.poll() is not None:
                raise RuntimeError(f"nginx exited:\n{self.error_log()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2, context=context) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_until(ready, timeout, "the cluster answering /readyz through nginx", interval=0.1)

    # --- nodes ---------------------------------------------------------------------------------------

    def add_node(self, *, reload: bool = True) -> HeraldProcess:
        """Start one more node; with `reload`, nginx's upstream gets it at once."""
        name = f"node-{len(self.nodes)}"
        node = start_herald(name, serve_args=("--proxy-headers",), **self.herald_env())
        self.nodes.append(node)
        if reload and self.nginx_process is not None:
            self.reload_nginx()
        return node

    def kill_node(self, index: int) -> None:
        """kill -9 the node: its sockets drop without a close frame, nothing is cleaned up."""
        self.nodes[index].kill()

    def terminate_node(self, index: int, timeout: float = 30.0) -> tuple[int | None, float]:
        """SIGTERM (graceful shutdown); returns (exit code, seconds it took to exit)."""
        node = self.nodes[index]
        started = time.monotonic()
        node.stop(signal.SIGTERM, timeout)
        return node.proc.returncode, time.monotonic() - started

    def restart_node(self, index: int) -> HeraldProcess:
        """Start the node again on its port (stopping it first if it still runs); nginx sends it
        traffic again once its fail_timeout (5 s) has passed since the last refused connection."""
        old = self.nodes[index]
        old.stop()
        self._stopped_logs.append((f"{old.name} (before restart)", old.log()))
        node = start_herald(old.name, port=old.port, serve_args=("--proxy-headers",), **self.herald_env())
        self.nodes[index] = node
        return node

    # --- workers -------------------------------------------------------------------------------------

    def add_worker(self) -> WorkerProcess:
        worker = start_worker(f"worker-{len(self.workers)}", base_env(**self.herald_env()))
        self.workers.append(worker)
        return worker

    def kill_worker(self, index: int) -> None:
        self.workers[index].kill()

    def terminate_worker(self, index: int, timeout: float = 40.0) -> int | None:
        return self.workers[index].stop(signal.SIGTERM, timeout)

    def restart_worker(self, index: int) -> WorkerProcess:
        old = self.workers[index]
        old.stop()
        self._stopped_logs.append((f"{old.name} (before restart)", old.log()))
        worker = start_worker(old.name, old.env)
        self.workers[index] = worker
        return worker

    # --- diagnostics ---------------------------------------------------------------------------------

    def logs(self, tail: int = 20000) -> str:
        parts = [f"----- {name} -----\n{text[-tail:]}" for name, text in self._stopped_logs]
        parts += [f"----- {node.name} (port {node.port}) -----\n{node.log()[-tail:]}" for node in self.nodes]
        parts += [f"----- {worker.name} -----\n{worker.log()[-tail:]}" for worker in self.workers]
        parts.append(f"----- nginx error.log -----\n{self.error_log()[-tail:]}")
        parts.append(f"----- nginx access.log -----\n{self.access_log()[-tail:]}")
        return "\n".join(parts)

    def cleanup(self) -> None:
        for process in [*self.nodes, *self.workers]:
            process.log_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            subprocess.run(["rm", "-rf", str(self.directory)], check=False, timeout=30)


def cluster_unavailable_reason() -> str | None:
    if not os.environ.get("REDIS_URL"):
        return "needs a real Redis for several nodes: run with REDIS_URL set (scripts/test does)"
    if nginx.find_nginx() is None:
        return "needs nginx: scripts/system-packages installs it"
    return None


@pytest.fixture
def cluster_factory(
    transactional_db: Any, redis_url: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Cluster]]:
    """`cluster_factory(nodes=2, workers=1, rate_limits=True, **ENV)` starts a Cluster; every
    cluster is stopped after the test, and its logs are printed if the test failed."""
    reason = cluster_unavailable_reason()
    if reason:
        pytest.skip(reason)
    started: list[Cluster] = []

    def start(**options: Any) -> Cluster:
        cluster = Cluster(**options)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.stop()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for cluster in started:
            print(f"\n===== cluster on https port {cluster.https_port} =====\n{cluster.logs()}")
    for cluster in started:
        cluster.cleanup()


@pytest.fixture
def cluster(cluster_factory: Callable[..., Cluster]) -> Cluster:
    """Two nodes and one fan-out worker behind nginx with TLS, rate limits as in production."""
    return cluster_factory()
