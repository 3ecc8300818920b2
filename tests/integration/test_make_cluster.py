"""`make cluster` end to end (deploy/cluster.py, which scripts/cluster runs): start the layout on
free ports, check it answers over verified TLS, stop it, stop it again."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from deploy import nginx
from tests.integration.conftest import ROOT, database_url_for_tests, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def free_port_pair() -> int:
    """A port p with p and p + 1 both free (the cluster's nodes listen on consecutive ports)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def run_cluster(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.cluster", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )


@pytest.mark.skipif(nginx.find_nginx() is None, reason="needs nginx: scripts/system-packages installs it")
def test_cluster_starts_answers_over_verified_tls_and_stops_cleanly(transactional_db, redis_url, tmp_path):
    directory = tmp_path / "cluster"
    https_port = free_port()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("HERALD_", "DJANGO_"))},
        "HERALD_CLUSTER_DIR": str(directory),
        "HERALD_CLUSTER_HTTPS_PORT": str(https_port),
        "HERALD_CLUSTER_HTTP_PORT": str(free_port()),
        "HERALD_CLUSTER_NODE_PORT": str(free_port_pair()),
        "HERALD_CLUSTER_NODES": "2",
        "HERALD_CLUSTER_WORKERS": "1",
        "DATABASE_URL": database_url_for_tests(),
        "REDIS_URL": redis_url,
        "HERALD_REDIS_PREFIX": os.environ.get("HERALD_REDIS_PREFIX", "herald-test"),
    }
    pids: dict[str, int] = {}
    try:
        started = run_cluster("start", env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"https://localhost:{https_port}/" in started.stdout
        ca = directory / "tls" / "ca.pem"
        assert str(ca) in started.stdout

        context = ssl.create_default_context(cafile=str(ca))
        with urllib.request.urlopen(f"https://localhost:{https_port}/readyz", timeout=10, context=context) as answer:
            assert answer.status == 200
        pids = {path.stem: int(path.read_text().split()[0]) for path in (directory / "run").glob("*.pid")}
        assert set(pids) == {"nginx", "node-1", "node-2", "worker-1"}
        assert run_cluster("status", env).returncode == 0
        assert "already running" in run_cluster("start", env).stdout
    finally:
        stopped = run_cluster("stop", env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    assert "not running" in run_cluster("stop", env).stdout
    assert run_cluster("status", env).returncode == 3
