#!/usr/bin/env bash
# Sample Herald with py-spy while the shared harness runs W1, W2 or W3 against it, and print where its
# CPU goes by thread role and component (bench/tools/pyspy_components.py).
#
#   bench/profile_herald.sh [N] [SECONDS] [WORKLOAD]      # default: 1000 8 w1
#   bench/profile_herald.sh 5000 10 w3                      # the connect path
#   RATE=20 bench/profile_herald.sh 1000 9 w2               # W2 at a fixed rate (default 20/s)
#   PYSPY_FLAGS="--gil --nonblocking" bench/profile_herald.sh   # only the GIL holder, without pausing
#   PEER=herald-uvicorn bench/profile_herald.sh             # a diagnostic variant (bench/peer/*)
#
# Uses the working copy of the harness prepared by run_side_by_side.sh (same env variables) and its
# .venv's py-spy. Bounded: the run is the harness's own (timeouts inside), py-spy records SECONDS.
# Output: $BENCH_WORK/results/profiles/herald-<workload>-<N>-<time>.folded (flamegraph input), .md, and
# .result.json (the harness's result line of the profiled run: rate, losses, publish errors).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-1000}"; SECS="${2:-8}"; WL="${3:-w1}"; PEER="${PEER:-herald}"
export BENCH_WORK="${BENCH_WORK:-/tmp/herald-bench-work}"
export BENCH_REDIS_PORT="${BENCH_REDIS_PORT:-6390}"
export HERALD_ROOT="$REPO" HERALD_PYTHON="${HERALD_PYTHON:-$REPO/.venv/bin/python}"
export HERALD_BENCH_DATABASE_URL="${HERALD_BENCH_DATABASE_URL:-postgres://herald:herald@127.0.0.1:5432/herald_bench}"
export BENCH_REDIS="redis://127.0.0.1:$BENCH_REDIS_PORT/0"
say() { echo "[profile] $*" >&2; }

PEERS="$PEER" PREPARE_ONLY=1 "$REPO/bench/run_side_by_side.sh"
cd "$BENCH_WORK"
[ -x .venv/bin/py-spy ] || .venv/bin/pip install -q py-spy
mkdir -p results/profiles results/raw
stamp="$(date -u +%Y%m%dT%H%M%S)"
OUTF="results/profiles/$PEER-$WL-$N-$stamp.folded"
LOG="results/raw/profile-$PEER-$stamp.log"
redis_was_up=0; redis-cli -p "$BENCH_REDIS_PORT" ping >/dev/null 2>&1 && redis_was_up=1

case "$WL" in
  w1) extra=(--duration 10 --warmup 1) ;;
  w2) extra=(--rate "${RATE:-20}") ;;
  w3) extra=() ;;
  *) echo "workload must be w1, w2 or w3" >&2; exit 64 ;;
esac
say "running $PEER $WL $N (log $LOG)"
OUT="${OUTF%.folded}.result.json" ./run.sh "$PEER" "$WL" "$N" "${extra[@]}" >/dev/null 2>"$LOG" &
RUN=$!
SPID=""
for _ in $(seq 1 600); do   # <= 60 s for the generator to start (it carries --pids server=PID)
  SPID="$(ps -eo args | grep -o 'gen/loadgen.js .*--pids server=[0-9]*' | grep -o 'server=[0-9]*' | head -1 | cut -d= -f2 || true)"
  [ -n "$SPID" ] && break; sleep 0.1
done
[ -n "$SPID" ] || { say "could not find the server's pid"; wait "$RUN" || true; exit 1; }
if [ "$WL" = w1 ] || [ "$WL" = w2 ]; then
  for _ in $(seq 1 1200); do grep -q "subscribers:" "$LOG" && break; sleep 0.1; done   # <= 120 s of connects
  sleep 2.5   # 1 s settle + 1 s warm-up: now the publisher runs for 10 s
else
  sleep 1
fi
say "py-spy on pid $SPID for ${SECS}s"
timeout $((SECS + 20)) .venv/bin/py-spy record ${PYSPY_FLAGS:-} --threads -d "$SECS" -r 250 -p "$SPID" -f raw -o "$OUTF" >/dev/null 2>&1 \
  || say "py-spy exited with an error"
wait "$RUN" || true
grep -E "W1 N=|W2 N=|W3 C=" "$LOG" | tail -1 >&2 || true
if [ "$redis_was_up" = 0 ] && [ -f results/raw/redis.pid ]; then
  pid="$(cat results/raw/redis.pid)"
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "redis-server.*:$BENCH_REDIS_PORT" && kill "$pid" 2>/dev/null || true
fi
[ -s "$OUTF" ] || { say "no profile written"; exit 1; }
{ echo "Run: $(grep -E "W1 N=|W2 N=|W3 C=" "$LOG" | tail -1)"; echo; python3 "$REPO/bench/tools/pyspy_components.py" "$OUTF"; } \
  | tee "${OUTF%.folded}.md"
say "folded stacks: $BENCH_WORK/$OUTF; summary: $BENCH_WORK/${OUTF%.folded}.md"
