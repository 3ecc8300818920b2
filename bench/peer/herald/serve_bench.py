"""Run `manage.py serve` (Daphne, one process) for the benchmark, on a listening socket made here with
a 4096-connection backlog like every other peer (`serve --host/--port` gets Twisted's default of 50,
which drops SYNs when 64 handshakes arrive at once).

Django and Herald's ASGI application are imported BEFORE the socket starts listening, so the
harness's readiness check (the port accepts connections) is not fooled by a socket whose server is
still importing; then the `serve` command runs in this same process (its PID is the server's).

    python bench/peer/herald/serve_bench.py PORT [BACKLOG]
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def main() -> None:
    port = int(sys.argv[1])
    backlog = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import config.asgi  # noqa: F401  (load the whole application before listening)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(backlog)
    sock.set_inheritable(True)

    from django.core.management import call_command

    call_command("serve", fd=sock.fileno())


if __name__ == "__main__":
    main()
