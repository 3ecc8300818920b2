"""The benchmark's table and profile tools (bench/tools/): ratios per repetition, and py-spy samples
split into waits and CPU by thread role and component."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "bench" / "tools"


def result(peer: str, rep: str, delivered: int, cpu: float, **extra: object) -> dict:
    return {
        "meta": {"peer": peer, "workload": "w1", "n": 1000, "rep": rep, "seq_id": "s1", "runid": f"x-{peer}-{rep}-42"},
        "workload": "w1",
        "params": {"rate": 20},
        "ok": True,
        "delivered_per_s": delivered,
        "lost": 0,
        "duplicates": 0,
        "drain_end": "complete",
        "gen_cpu_pct": 10.0,
        "proc_cpu_pct": {"server": cpu},
        **extra,
    }


def test_side_by_side_takes_the_median_of_per_repetition_ratios(tmp_path):
    rows = [
        result("node-ws", "1", 100_000, 100.0),
        result("py-websockets", "1", 50_000, 100.0),
        result("herald", "1", 10_000, 100.0),
        result("node-ws", "2", 200_000, 100.0),
        result("py-websockets", "2", 100_000, 100.0),
        result("herald", "2", 10_000, 50.0),
        result("herald", "3", 10_000, 50.0, meta={"peer": "herald", "n": 1000, "rep": "3", "seq_id": "other"}),
    ]
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    (tmp_path / "herald-pgcpu-42.json").write_text(json.dumps({"server_cpu_s": 10.0, "db_cpu_s": 2.0}))
    out = subprocess.run(
        [sys.executable, TOOLS / "side_by_side.py", results, "--seq", "s1", "--pg-dir", tmp_path],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    herald = next(line for line in out.splitlines() if line.startswith("| herald |"))
    cells = [cell.strip() for cell in herald.strip("|").split("|")]
    # reps 1 and 2 only (rep 3 is another sequence); ratios 0.1/0.05 -> median 0.075, 0.2/0.1 -> 0.15
    assert cells[1:5] == ["2", "10,000", "0.075", "0.150"]
    assert cells[5] == "75.0"  # median of 100 and 50 µs of CPU per delivery
    assert cells[-1] == "20 %"  # postgres CPU as a share of the server's
    assert "**herald:**" in out


def test_pyspy_components_leaves_waits_out_and_splits_by_role(tmp_path):
    folded = tmp_path / "profile.folded"
    folded.write_text(
        "\n".join(
            [
                "thread (1): MainThread;run (twisted/internet/asyncioreactor.py:1);dispatch (notifications/hub.py:1);"
                "push (notifications/consumers.py:1);startWriting (twisted/internet/abstract.py:1) 6",
                "thread (1): MainThread;run (twisted/internet/asyncioreactor.py:1);select (selectors.py:1) 50",
                "thread (2): ThreadPoolExecutor-0_0;_worker (concurrent/futures/thread.py:81) 40",
                "thread (3): ThreadPoolExecutor-1_0;_worker (concurrent/futures/thread.py:83);"
                "fanout_event (notifications/fanout.py:1);execute (django/db/models/sql/compiler.py:1);"
                "wait (psycopg/connection.py:1) 7",
                "thread (3): ThreadPoolExecutor-1_0;_worker (concurrent/futures/thread.py:83);"
                "fanout_event (notifications/fanout.py:1);execute (django/db/models/sql/compiler.py:1) 2",
                "thread (4): pool-1-worker-0;worker (psycopg_pool/pool.py:1);wait (threading.py:1) 9",
                "",
            ]
        )
    )
    out = subprocess.run(
        [sys.executable, TOOLS / "pyspy_components.py", folded],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "114 (" in out and "8 on CPU, 106 waiting" in out
    assert "| fan-out thread (notifications/fanout.py) | waiting for PostgreSQL (psycopg) |" in out
    assert "| psycopg pool maintenance threads | idle: waiting on a lock/condition |" in out
    assert "| event-loop thread |  75.0 % |" in out  # 6 of the 8 on-CPU samples
    assert "| twisted (reactor, TCP transport) |  75.0 % |  75.0 % |" in out
    assert "| django ORM (django/db) |  25.0 % |   0.0 % |" in out
    assert "| hub.dispatch (all pushes of one layer message) |  75.0 % |" in out
