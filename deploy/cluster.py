"""The production layout on one machine: nginx (TLS) in front of several Herald nodes, fan-out
workers, PostgreSQL and Redis. Run through `scripts/cluster` (or `make cluster`):

    python -m deploy.cluster start    # certificates, migrate, collectstatic, processes, health
    python -m deploy.cluster stop     # SIGTERM each process, SIGKILL after a bounded wait
    python -m deploy.cluster status   # which processes run, and whether nginx answers
    python -m deploy.cluster demo     # seed the demo tenant and print its API key

Everything lives under var/cluster/: PID files (run/), logs (logs/), the TLS CA and certificate
(tls/), static files (static/), nginx's rendered config, and the SECRET_KEY made on first start.
Settings come from the environment (see `Settings.from_environment`)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from deploy import nginx, tls

ROOT = Path(__file__).resolve().parent.parent
# A node answers /healthz within a few seconds of starting (Django setup); 60 s allows for a busy
# two-core machine. Every wait below is bounded like this one.
STARTUP_TIMEOUT_SECONDS = 60.0
# SIGTERM, then this long before SIGKILL. Workers get longer: a fan-out round in progress finishes
# its current batch first (fanout.stop_local_runner allows 30 s for the same reason).
STOP_TIMEOUT_SECONDS = {"nginx": 10.0, "node": 15.0, "worker": 35.0}
COMMAND_TIMEOUT_SECONDS = 300.0  # migrate / collectstatic on a fresh database


def log(message: str) -> None:
    print(f"[cluster] {message}", flush=True)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    directory: Path
    nodes: int
    workers: int
    https_port: int
    http_port: int
    first_node_port: int
    database_url: str
    redis_url: str
    redis_prefix: str

    @classmethod
    def from_environment(cls) -> Settings:
        return cls(
            directory=Path(os.environ.get("HERALD_CLUSTER_DIR") or ROOT / "var" / "cluster").resolve(),
            nodes=max(1, _env_int("HERALD_CLUSTER_NODES", 2)),
            workers=max(0, _env_int("HERALD_CLUSTER_WORKERS", 1)),
            https_port=_env_int("HERALD_CLUSTER_HTTPS_PORT", 8443),
            http_port=_env_int("HERALD_CLUSTER_HTTP_PORT", 8080),
            # Nodes listen on consecutive loopback ports from here: 8101, 8102, ...
            first_node_port=_env_int("HERALD_CLUSTER_NODE_PORT", 8101),
            database_url=os.environ.get("DATABASE_URL") or "postgres://herald:herald@127.0.0.1:5432/herald",
            redis_url=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
            redis_prefix=os.environ.get("HERALD_REDIS_PREFIX") or "herald",
        )

    @property
    def node_ports(self) -> list[int]:
        return [self.first_node_port + index for index in range(self.nodes)]

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.https_port}"

    def path(self, *parts: str) -> Path:
        return self.directory.joinpath(*parts)


# --- processes -------------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a process: with the PID it identifies the process for sure (a
    PID alone may have been reused by another program since we wrote it down)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _read_pid(pid_file: Path) -> int | None:
    """The PID in the file if that very process is still running."""
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def _spawn(name: str, argv: list[str], env: dict[str, str], settings: Settings) -> int:
    log_path = settings.path("logs", f"{name}.log")
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not killed by a Ctrl-C in the shell that ran `make cluster`
        )
    settings.path("run", f"{name}.pid").write_text(f"{process.pid} {_start_time(process.pid)}\n")
    return process.pid


def _pid_files(settings: Settings) -> list[Path]:
    """Stop order: nginx first (no new traffic), then the nodes, then the workers (they finish
    the outbox last)."""
    run = settings.path("run")
    if not run.is_dir():
        return []
    order = {"nginx": 0, "node": 1, "worker": 2}
    return sorted(run.glob("*.pid"), key=lambda path: (order.get(path.stem.split("-")[0], 3), path.stem))


def _stop_one(pid_file: Path) -> None:
    name = pid_file.stem
    pid = _read_pid(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    timeout = STOP_TIMEOUT_SECONDS.get(name.split("-")[0], 15.0)
    log(f"stopping {name} (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _read_pid(pid_file) is not None and not _is_zombie(pid):
        time.sleep(0.1)
    if _read_pid(pid_file) is not None and not _is_zombie(pid):
        log(f"{name} still running after {timeout:.0f}s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# --- checks ----------------------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _get(url: str, *, cafile: Path | None = None, timeout: float = 2.0) -> int | None:
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310 (our URLs)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


def _wait_for(url: str, what: str, *, cafile: Path | None = None, pid_file: Path | None = None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if _get(url, cafile=cafile) == 200:
            return
        if pid_file is not None and _read_pid(pid_file) is None:
            raise SystemExit(f"[cluster] {what} exited at start; see {pid_file.parent.parent / 'logs'}")
        time.sleep(0.2)
    raise SystemExit(f"[cluster] {what} did not answer {url} within {STARTUP_TIMEOUT_SECONDS:.0f}s")


# --- commands --------------------------------------------------------------------------------------


def herald_env(settings: Settings) -> dict[str, str]:
    """Production settings for every Herald process of the layout."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "0",
            "SECRET_KEY": _secret_key(settings),
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "CSRF_TRUSTED_ORIGINS": f"{settings.origin},https://127.0.0.1:{settings.https_port}",
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "HERALD_REDIS_PREFIX": settings.redis_prefix,
            "HERALD_FANOUT_MODE": "worker",
            "STATIC_ROOT": str(settings.path("static")),
            "HERALD_SERVE_STATIC": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _secret_key(settings: Settings) -> str:
    """Made once, kept in var/cluster/secret_key: sessions survive a restart of the layout."""
    path = settings.path("secret_key")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def _manage(settings: Settings, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=herald_env(settings),
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"[cluster] manage.py {' '.join(args)} failed")


def ensure_database(database_url: str) -> None:
    """Create the PostgreSQL database if it does not exist yet (the role needs CREATEDB)."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        return
    import psycopg
    from psycopg import sql

    name = parts.path.lstrip("/")
    maintenance = urlunsplit((parts.scheme.replace("pgsql", "postgresql"), parts.netloc, "/postgres", "", ""))
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            log(f"creating database {name}")
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def running(settings: Settings) -> dict[str, int]:
    return {path.stem: pid for path in _pid_files(settings) if (pid := _read_pid(path)) is not None}


def start(settings: Settings) -> None:
    try:
        _start(settings)
    except BaseException:
        if running(settings):
            log("start failed: stopping what was started")
            stop(settings)
        raise


def _start(settings: Settings) -> None:
    already = running(settings)
    if already:
        log(f"already running ({', '.join(sorted(already))}); `make cluster-stop` first to restart it")
        status(settings)
        return
    nginx_binary = nginx.find_nginx()
    if nginx_binary is None:
        raise SystemExit("[cluster] nginx is not installed (scripts/system-packages installs it)")
    wanted = {"https": settings.https_port, "http": settings.http_port}
    wanted.update({f"node-{index + 1}": port for index, port in enumerate(settings.node_ports)})
    taken = [f"{what} {port}" for what, port in wanted.items() if not _port_free(port)]
    if taken:
        raise SystemExit(
            f"[cluster] port(s) in use: {', '.join(taken)}; choose others with HERALD_CLUSTER_HTTPS_PORT, "
            "HERALD_CLUSTER_HTTP_PORT, HERALD_CLUSTER_NODE_PORT"
        )
    for part in ("run", "logs", "nginx", "static"):
        settings.path(part).mkdir(parents=True, exist_ok=True)
    # nginx's worker processes (not root) read static files and write temporary files in here.
    for directory in (settings.directory, settings.path("static"), settings.path("nginx")):
        directory.chmod(0o755)

    log("TLS: certificate for localhost, 127.0.0.1 and ::1, signed by a local CA")
    certificates = tls.ensure_certificates(settings.path("tls"))
    log(f"database: {_redacted(settings.database_url)}")
    ensure_database(settings.database_url)
    log("applying migrations")
    _manage(settings, "migrate", "--noinput", "-v", "0")
    log("collecting static files")
    _manage(settings, "collectstatic", "--noinput", "-v", "0")

    env = herald_env(settings)
    for index, port in enumerate(settings.node_ports, start=1):
        argv = [sys.executable, "manage.py", "serve", "--port", str(port), "--proxy-headers", "--access-log"]
        pid = _spawn(f"node-{index}", argv, env, settings)
        log(f"node-{index}: pid {pid}, http://127.0.0.1:{port}")
    for index in range(1, settings.workers + 1):
        pid = _spawn(f"worker-{index}", [sys.executable, "manage.py", "herald_worker"], env, settings)
        log(f"worker-{index}: pid {pid}")

    layout = nginx.NginxLayout(
        nodes=[f"127.0.0.1:{port}" for port in settings.node_ports],
        https_port=settings.https_port,
        http_port=settings.http_port,
        server_names=("localhost", "127.0.0.1"),
        certificate=certificates.certificate,
        certificate_key=certificates.key,
        static_root=settings.path("static"),
        runtime_dir=settings.path("nginx"),
        log_dir=settings.path("logs"),
        max_request_bytes=int(env.get("HERALD_MAX_REQUEST_BYTES") or nginx.DEFAULT_MAX_REQUEST_BYTES),
    )
    conf = nginx.write(layout, settings.path("nginx.conf"))
    nginx.check(nginx_binary, conf, settings.path("nginx"))
    pid = _spawn("nginx", nginx.command(nginx_binary, conf, settings.path("nginx"), "-g", "daemon off;"), env, settings)
    log(f"nginx: pid {pid}, https://localhost:{settings.https_port} (http :{settings.http_port} redirects)")

    log("waiting for every node to answer")
    for index, port in enumerate(settings.node_ports, start=1):
        pid_file = settings.path("run", f"node-{index}.pid")
        _wait_for(f"http://127.0.0.1:{port}/healthz", f"node-{index}", pid_file=pid_file)
    _wait_for(f"{settings.origin}/readyz", "nginx -> Herald (readyz)", cafile=certificates.ca_certificate)
    for index in range(1, settings.workers + 1):
        if _read_pid(settings.path("run", f"worker-{index}.pid")) is None:
            raise SystemExit(f"[cluster] worker-{index} exited at start; see {settings.path('logs')}")
    _print_welcome(settings, certificates.ca_certificate)


def _print_welcome(settings: Settings, ca: Path) -> None:
    origin = settings.origin
    print(
        f"""
Herald cluster is up: {settings.nodes} node(s), {settings.workers} fan-out worker(s), nginx with TLS.
  site / dashboard  {origin}/
  admin             {origin}/admin/
  API docs          {origin}/api/docs/
  WebSocket         wss://localhost:{settings.https_port}/ws/v1/
  plain HTTP        http://localhost:{settings.http_port}/  (redirects to HTTPS)
  CA certificate    {ca}
                    (curl --cacert {ca} {origin}/readyz; Python: ssl.create_default_context(cafile=...))
  logs, PID files   {settings.path("logs")}/, {settings.path("run")}/
Demo tenant and API key: make cluster-demo   (or scripts/cluster demo)
Stop: make cluster-stop    Status: make cluster-status
""",
        flush=True,
    )


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def stop(settings: Settings) -> None:
    pid_files = _pid_files(settings)
    if not any(_read_pid(path) is not None for path in pid_files):
        for path in pid_files:
            path.unlink(missing_ok=True)
        log("not running")
        return
    for path in pid_files:
        _stop_one(path)
    log("stopped")


def status(settings: Settings) -> int:
    """Print each process and the health seen through nginx; 0 if everything runs."""
    alive = running(settings)
    names = ["nginx", *(f"node-{i}" for i in range(1, settings.nodes + 1))]
    names += [f"worker-{i}" for i in range(1, settings.workers + 1)]
    names += sorted(set(alive) - set(names))
    for name in names:
        pid = alive.get(name)
        print(f"  {name:<10} {'running, pid ' + str(pid) if pid else 'stopped'}")
    ca = settings.path("tls", "ca.pem")
    ready = _get(f"{settings.origin}/readyz", cafile=ca) if ca.exists() and "nginx" in alive else None
    print(f"  {settings.origin}/readyz: {ready if ready is not None else 'no answer'}")
    healthy = all(name in alive for name in names) and ready == 200
    log("healthy" if healthy else "not (fully) running")
    return 0 if healthy else 3


def demo(settings: Settings) -> None:
    if "nginx" not in running(settings):
        log("(the cluster is not running; seeding its database anyway)")
    _manage(settings, "seed_demo")
    ca = settings.path("tls", "ca.pem")
    print(
        f"""
Try it (KEY = the last line above):
  curl --cacert {ca} -X POST {settings.origin}/api/v1/tokens -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' -d '{{"user_id": "demo"}}'
  curl --cacert {ca} -X POST {settings.origin}/api/v1/events -H "Authorization: Bearer $KEY" \\
       -H 'Content-Type: application/json' -d '{{"kind": "hello", "title": "Hi", "recipients": ["demo"]}}'
Or sign in at {settings.origin}/ as demo with the password above (import the CA into the browser, or
accept the warning once).
""",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    commands = {"start", "stop", "status", "demo"}
    if len(args) != 1 or args[0] not in commands:
        print(f"usage: python -m deploy.cluster {{{'|'.join(sorted(commands))}}}", file=sys.stderr)
        return 2
    settings = Settings.from_environment()
    if args[0] == "start":
        start(settings)
    elif args[0] == "stop":
        stop(settings)
    elif args[0] == "status":
        return status(settings)
    else:
        demo(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
