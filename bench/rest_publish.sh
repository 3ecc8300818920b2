#!/usr/bin/env bash
# REST publish throughput of one Herald process in its production layout (`manage.py serve`,
# PostgreSQL, channels-redis core layer, in-process fan-out, DEBUG=0), server pinned to CPU 0 and
# the client (bench/rest_publish.py) to CPU 1, like the WebSocket benchmark.
#
#   bench/rest_publish.sh                          # kinds: single topic batch; 16 clients; 15 s each
#   KINDS="topic" CONCURRENCY=32 DURATION=30 bench/rest_publish.sh
#   PROFILE=1 bench/rest_publish.sh                # + py-spy of the server during each kind
#   PROFILE=1 PYSPY_FLAGS=--gil bench/rest_publish.sh   # ... sampling only the thread holding the GIL
#
# Uses its own Redis on REST_BENCH_REDIS_PORT (default 6391; started here, stopped at the end) and
# the benchmark database (HERALD_BENCH_DATABASE_URL, default herald_bench; its `bench` tenant is
# reset by bench/setup_herald.py). Prints, per kind: requests/s, events/s, latency percentiles,
# errors, and the CPU per request of the server process and of the PostgreSQL backends. Every step is
# bounded in time; only 127.0.0.1 is used.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${HERALD_PYTHON:-$REPO/.venv/bin/python}"
PORT="${REST_BENCH_PORT:-8140}"
REDIS_PORT="${REST_BENCH_REDIS_PORT:-6391}"
DB_URL="${HERALD_BENCH_DATABASE_URL:-postgres://herald:herald@127.0.0.1:5432/herald_bench}"
KINDS="${KINDS:-single topic batch}"
CONCURRENCY="${CONCURRENCY:-16}"
DURATION="${DURATION:-15}"
OUT="${REST_BENCH_OUT:-/tmp/herald-rest-bench}"
started=$(date +%s)
say() { echo "[rest-bench $(( $(date +%s) - started ))s] $*" >&2; }
mkdir -p "$OUT"
if [ "${PROFILE:-0}" = 1 ]; then   # py-spy: Herald's venv, else the harness copy's (bench/profile_herald.sh)
  PYSPY="$(command -v "$REPO/.venv/bin/py-spy" /tmp/herald-bench-work/.venv/bin/py-spy py-spy 2>/dev/null | head -1 || true)"
  if [ -z "$PYSPY" ]; then
    "$REPO/.venv/bin/pip" install -q py-spy && PYSPY="$REPO/.venv/bin/py-spy"
  fi
fi
source "$REPO/bench/start_server.sh"

cpu_ticks() {  # utime+stime of a PID
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
pg_ticks() {  # utime+stime of every PostgreSQL backend serving the benchmark database
  local db="${DB_URL##*/}" total=0 pid
  for pid in $(pgrep -f "postgres: .*${db%%\?*}" || true); do
    total=$(( total + $(cpu_ticks "$pid" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

printf '\n| kind | clients | requests/s | events/s | p50 ms | p95 ms | p99 ms | errors | server CPU ms/request | PostgreSQL CPU ms/request |\n|---|---|---|---|---|---|---|---|---|---|\n' >"$OUT/table.md"
say "warm-up: 3 s of single-recipient publishes (not counted)"
taskset -c 1 timeout 60 "$PY" bench/rest_publish.py --url "http://127.0.0.1:$PORT" --api-key "$BENCH_API_KEY" \
  --kind single --concurrency "$CONCURRENCY" --duration 3 --warmup 0 >/dev/null 2>&1 || true
for kind in $KINDS; do
  say "$kind: $CONCURRENCY clients, ${DURATION} s"
  spy=""
  if [ "${PROFILE:-0}" = 1 ]; then
    # shellcheck disable=SC2086  # PYSPY_FLAGS: e.g. "--gil" (only the GIL holder is sampled)
    timeout $(( DURATION + 30 )) "$PYSPY" record --pid "$server" --rate 100 --format raw ${PYSPY_FLAGS:-} \
      --output "$OUT/profile-$kind.folded" --duration "$DURATION" --nonblocking >/dev/null 2>&1 &
    spy=$!
  fi
  s0=$(cpu_ticks "$server"); p0=$(pg_ticks)
  taskset -c 1 timeout $(( DURATION + 60 )) "$PY" bench/rest_publish.py --url "http://127.0.0.1:$PORT" \
    --api-key "$BENCH_API_KEY" --kind "$kind" --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --warmup 0 >"$OUT/result-$kind.json"
  s1=$(cpu_ticks "$server"); p1=$(pg_ticks)
  if [ -n "$spy" ]; then wait "$spy" || true; fi
  "$PY" - "$OUT/result-$kind.json" "$(( s1 - s0 ))" "$(( p1 - p0 ))" "$hz" >>"$OUT/table.md" <<'EOF'
import json, sys
result = json.load(open(sys.argv[1]))
server, pg, hz = (int(value) for value in sys.argv[2:5])
requests = max(1, result["requests"])
print(f"| {result['kind']} | {result['concurrency']} | {result['requests_per_s']:,} | {result['events_per_s']:,} | "
      f"{result['p50_ms']} | {result['p95_ms']} | {result['p99_ms']} | {result['errors'] or 0} | "
      f"{server / hz * 1000 / requests:.2f} | {pg / hz * 1000 / requests:.2f} |")
EOF
done
cat "$OUT/table.md"
say "done; raw results in $OUT"
