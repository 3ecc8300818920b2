#!/usr/bin/env bash
# The soak: one Herald process in its production layout (bench/start_server.sh: PostgreSQL, its own
# Redis, pinned to CPU 0) under `manage.py herald_loadtest` (pinned to CPU 1) for DURATION seconds
# with connection churn: CLIENTS authenticated sockets on one topic, RATE publishes/s through REST,
# CHURN clients/s closed and resumed from their cursor after CHURN_GAP s. Reports what the load
# test reports (lost, duplicates, replays, latency) plus the server's RSS at the start, every 10 s
# and at the end (read from its /metrics over loopback).
#
#   bench/soak.sh                                            # 1000 clients, 20/s, 600 s, churn 10/s
#   CLIENTS=200 RATE=10 DURATION=30 CHURN=5 bench/soak.sh    # a quick check
#
# Output: $SOAK_OUT (default /tmp/herald-soak): soak.json (the load test's --json report),
# soak.log (its progress lines), server.log. Bounded: the load test's own phases are bounded, and
# the whole run by DURATION + 300 s. Loopback only.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${HERALD_PYTHON:-$REPO/.venv/bin/python}"
PORT="${SOAK_PORT:-8150}"
REDIS_PORT="${SOAK_REDIS_PORT:-6392}"
DB_URL="${HERALD_BENCH_DATABASE_URL:-postgres://herald:herald@127.0.0.1:5432/herald_bench}"
CLIENTS="${CLIENTS:-1000}"; RATE="${RATE:-20}"; DURATION="${DURATION:-600}"
CHURN="${CHURN:-10}"; CHURN_GAP="${CHURN_GAP:-0.5}"
OUT="${SOAK_OUT:-/tmp/herald-soak}"
TOKENS=1   # the load test mints its own tokens (end users loadtest-*)
started=$(date +%s)
say() { echo "[soak $(( $(date +%s) - started ))s] $*" >&2; }
mkdir -p "$OUT"
source "$REPO/bench/start_server.sh"

say "load test: $CLIENTS clients, $RATE/s for ${DURATION}s, churn $CHURN/s (gap ${CHURN_GAP}s)"
status=0
taskset -c 1 timeout $(( DURATION + 300 )) env "${env_common[@]}" HERALD_LOADTEST_API_KEY="$BENCH_API_KEY" \
  "$PY" manage.py herald_loadtest --url "http://127.0.0.1:$PORT" --topic bench --clients "$CLIENTS" \
  --rate "$RATE" --duration "$DURATION" --churn "$CHURN" --churn-gap "$CHURN_GAP" --json \
  >"$OUT/soak.json" 2> >(tee "$OUT/soak.log" | grep --line-buffered -E "RSS|connected:|  [0-9]+0\.0s" >&2) || status=$?
"$PY" - "$OUT/soak.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r.get("server_memory") or {}
print(f"soak: {r['clients_connected']} clients, {r['accepted']} publishes accepted, "
      f"delivered {r['delivered']} of {r['expected']}, lost {r['lost']}, duplicates {r['duplicates']}, "
      f"reconnects {r.get('reconnects')} (failed {sum((r.get('reconnect_errors') or {}).values())}), "
      f"replayed {r.get('replayed')}, clients incomplete {r.get('clients_incomplete')}")
L = r.get("latency_ms") or {}
print(f"live latency: p50 {L.get('p50')} p99 {L.get('p99')} max {L.get('max')} ms; {r.get('deliveries_per_s')} deliveries/s")
if m:
    print(f"server RSS: start {m['start_mb']} MB, end {m['end_mb']} MB, max {m['max_mb']} MB, "
          f"change {m['change_mb']:+} MB ({m['change_pct']:+}%)")
PY
# The server's garbage-collection pauses over the whole run (its /metrics, loopback: no token needed).
"$PY" - "http://127.0.0.1:$PORT/metrics" <<'PY' || true
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
for generation in ("0", "1", "2"):
    def value(name):
        match = re.search(rf'^herald_gc_pause_seconds_{name}{{generation="{generation}"}} (\S+)$', text, re.M)
        return float(match.group(1)) if match else 0.0
    count = value("count")
    buckets = re.findall(rf'^herald_gc_pause_seconds_bucket{{generation="{generation}",le="([^"]+)"}} (\S+)$', text, re.M)
    longest = next((le for le, n in buckets if float(n) >= count), "+Inf") if count else "-"
    print(f"gc generation {generation}: {int(count)} collections, {value('sum') * 1000:.0f} ms in all, longest <= {longest} s")
PY
say "done (load test exit status $status); report in $OUT/soak.json"
exit "$status"
