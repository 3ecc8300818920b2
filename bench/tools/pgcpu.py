#!/usr/bin/env python3
"""CPU time of the PostgreSQL backends serving one database, and of the benchmark server, while one
benchmark run's server is up (Herald's server side is more than the pinned server process: its
PostgreSQL backends run unpinned, on either core). Writes one JSON object to --out.

    pgcpu.py --db herald_bench --server-match "serve_bench.py 8120" --out FILE [--max-seconds 180]

Bounded: waits at most 60 s for the server to appear, exits 0.5 s after it is gone, and never runs
longer than --max-seconds. Reads /proc only (Linux)."""

import argparse
import json
import os
import re
import time

TICK = os.sysconf("SC_CLK_TCK")


def ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--server-match", required=True, help="substring of the server's command line")
    parser.add_argument("--also-match", default="", help="another process to sample (e.g. a fan-out worker)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-seconds", type=float, default=180)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    backend = re.compile(r"^postgres: [^:]+: \S+ " + re.escape(args.db) + r" ")
    started = time.monotonic()
    server_pid, server_first, server_last = None, 0, 0
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    first_scan = True
    also_pid, also_first, also_last = None, 0, 0
    result: dict[str, object] = {}
    while time.monotonic() - started < args.max_seconds:
        if server_pid is None:
            for pid in filter(str.isdigit, os.listdir("/proc")):
                if args.server_match in cmdline(pid) and int(pid) != os.getpid():
                    server_pid = int(pid)
                    server_first = server_last = ticks(server_pid) or 0
                    up_since = time.monotonic()
                    break
            if server_pid is None:
                if time.monotonic() - started > 60:
                    result["error"] = "server never appeared"
                    break
                time.sleep(args.interval)
                continue
        now_ticks = ticks(server_pid)
        if now_ticks is None:  # the server is gone: the run is over
            break
        server_last = now_ticks
        if args.also_match and also_pid is None:
            for pid_text in filter(str.isdigit, os.listdir("/proc")):
                if args.also_match in cmdline(pid_text) and int(pid_text) != os.getpid():
                    also_pid = int(pid_text)
                    also_first = also_last = ticks(also_pid) or 0
                    break
        if also_pid is not None:
            also_last = ticks(also_pid) or also_last
        for pid_text in filter(str.isdigit, os.listdir("/proc")):
            pid = int(pid_text)
            if pid not in last and not backend.match(cmdline(pid_text)):
                continue
            value = ticks(pid)
            if value is None:
                continue
            # A backend that existed before the server did is counted from now; new ones from zero.
            first.setdefault(pid, value if first_scan else 0)
            last[pid] = value
        first_scan = False
        time.sleep(args.interval)
    if server_pid is not None:
        result.update(
            {
                "db": args.db,
                "server_pid": server_pid,
                "wall_s": round(time.monotonic() - up_since, 2),
                "server_cpu_s": round((server_last - server_first) / TICK, 2),
                "db_cpu_s": round(sum(last[pid] - first[pid] for pid in last) / TICK, 2),
                "backends": len(last),
            }
        )
        if also_pid is not None:
            result["also_cpu_s"] = round((also_last - also_first) / TICK, 2)
    with open(args.out, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
