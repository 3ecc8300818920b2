"""Run `manage.py serve` (one process; uvicorn by default, Daphne with HERALD_SERVER=daphne) for the
benchmark, on a listening socket made here with a 4096-connection backlog like every other peer (a
small default backlog drops SYNs when 64 handshakes arrive at once).

Django and Herald's ASGI application are imported BEFORE the socket starts listening, so the
harness's readiness check (the port accepts connections) is not fooled by a socket whose server is
still importing; then the `serve` command runs in this same process (its PID is the server's).

    python bench/peer/herald/serve_bench.py PORT [BACKLOG]
    python bench/peer/herald/serve_bench.py worker      # manage.py herald_worker (HERALD_FANOUT_MODE=worker)

HERALD_BENCH_SERVER=uvicorn (diagnostic, from before uvicorn became `serve`'s default) runs the same ASGI
application on a plain uvicorn.Server with the legacy `websockets` protocol and without `serve`'s
direct-write fast path and graceful shutdown.

BENCHMARK-ONLY WORKAROUND (HERALD_BENCH_LAYER_SOCKET_TIMEOUT, default 15 s; "off" runs Herald as is):
redis-py 8 gives every connection a 5 s socket read timeout, and channels_redis.core blocks in
BZPOPMIN for 5 s (brpop_timeout) when a channel is idle, so the client gives up just before Redis
answers: `layer.receive()` raises redis.TimeoutError after every 5 idle seconds. Herald's hub takes
that for a Redis outage and, when the next frame arrives, closes every local socket with 1013 (see
docs/performance.md). A connect phase longer than 5 s (W1 N=1000, W3) triggers it, so the benchmark
would measure reconnect storms. Here the core layer's connections get a read timeout above the
BZPOPMIN timeout, which is the configuration fix proposed for config/settings.py.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    _layer_socket_timeout_workaround()
    from django.core.management import call_command

    if sys.argv[1] == "worker":  # `serve_bench.py worker`: manage.py herald_worker, same workaround
        call_command("herald_worker")
        return
    port = int(sys.argv[1])
    backlog = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
    import config.asgi  # noqa: F401  (load the whole application before listening)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    sock.set_inheritable(True)

    if os.environ.get("HERALD_BENCH_SERVER", "daphne") == "uvicorn":
        _serve_uvicorn(sock)
        return
    call_command("serve", fd=sock.fileno())


def _serve_uvicorn(sock: socket.socket) -> None:
    import uvicorn

    from config.herald import herald_settings

    config = uvicorn.Config(
        "config.asgi:application",
        loop="uvloop",
        http="httptools",
        ws="websockets",
        lifespan="on",
        access_log=False,
        log_level="warning",
        # The same limits `manage.py serve` gives Daphne.
        ws_max_size=herald_settings.MAX_CLIENT_FRAME_BYTES,
        ws_ping_interval=20,
        ws_ping_timeout=30,
    )
    print("[serve_bench] uvicorn (diagnostic)", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def _layer_socket_timeout_workaround() -> None:
    from django.conf import settings

    value = os.environ.get("HERALD_BENCH_LAYER_SOCKET_TIMEOUT", "15")
    config = settings.CHANNEL_LAYERS.get("default", {})
    if value == "off" or not config.get("BACKEND", "").startswith("channels_redis.core."):
        return
    hosts = config["CONFIG"]["hosts"]
    config["CONFIG"]["hosts"] = [
        {"address": host, "socket_timeout": float(value)} if isinstance(host, str) else host for host in hosts
    ]
    print(f"[serve_bench] channel layer socket_timeout={value}s (benchmark workaround)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
