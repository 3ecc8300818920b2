# Herald (this repository) as a peer of the shared WebSocket benchmark; sourced by run.sh, which sets
# BENCH, VENV, PEER, WL and N. Installed into a COPY of the harness as peers/herald/peer.sh by
# bench/run_side_by_side.sh (which exports HERALD_ROOT and the settings below).
#
# Production layout: `manage.py serve` (uvicorn by default, one process) with PostgreSQL + channels-redis
# (core layer unless HERALD_CHANNEL_LAYER=pubsub), in-process fan-out, DEBUG=0. Redis is the harness's
# own (run.sh starts/flushes it on BENCH_REDIS_PORT; never the shared 6379).
PORT="${HERALD_BENCH_PORT:-8120}"
ADAPTER=herald                      # gen/adapters/herald.js (bench/adapter/herald.js in the repository)
NEEDS_REDIS=1
: "${HERALD_ROOT:?HERALD_ROOT must point at the Herald repository (run_side_by_side.sh sets it)}"
HERALD_PYTHON="${HERALD_PYTHON:-$HERALD_ROOT/.venv/bin/python}"
HERALD_BENCH_DATABASE_URL="${HERALD_BENCH_DATABASE_URL:-postgres://herald:herald@127.0.0.1:5432/herald_bench}"
_herald_redis="redis://127.0.0.1:${BENCH_REDIS_PORT:-6390}/0"
SERVER_CWD="$HERALD_ROOT"
_herald_env=(DJANGO_SETTINGS_MODULE=config.settings
             SECRET_KEY=herald-bench-secret-key-used-only-on-loopback-0123456789abcdef
             DEBUG=0 ALLOWED_HOSTS=127.0.0.1,localhost SECURE_SSL_REDIRECT=0
             DATABASE_URL="$HERALD_BENCH_DATABASE_URL")

# Database first (tenant, topic, API key, tokens for users u0..u<N-1>); bounded by timeout.
_herald_setup="$(cd "$HERALD_ROOT" && timeout 120 env "${_herald_env[@]}" "$HERALD_PYTHON" bench/setup_herald.py \
  --tokens "$N" --state-dir "$BENCH/results/raw/herald-state")" || { echo "herald setup failed" >&2; exit 67; }
eval "$_herald_setup"
export BENCH_API_KEY BENCH_TOKENS_FILE     # read by gen/adapters/herald.js

# PostgreSQL runs unpinned and is part of Herald's server side: sample its backends' CPU (and the
# server's) for this run; run_side_by_side's table reports it next to the server's (file name carries
# run.sh's PID, the suffix of the result line's runid). Exits by itself when the server is gone.
_herald_db="${HERALD_BENCH_DATABASE_URL##*/}"
"$HERALD_PYTHON" "$HERALD_ROOT/bench/tools/pgcpu.py" --db "${_herald_db%%\?*}" --server-match "serve_bench.py $PORT" \
  --also-match "serve_bench.py worker" \
  --out "$BENCH/results/raw/herald-pgcpu-$$.json" --max-seconds 200 </dev/null >/dev/null 2>&1 &

_herald_fanout="${HERALD_BENCH_FANOUT_MODE:-inprocess}"
if [ "$_herald_fanout" = worker ]; then
  # Diagnostic (peer herald-worker): the fan-out runs in ONE `herald_worker` process, pinned to CPU 0 with
  # the server (the server side still gets one core); stopped by PID once this run.sh is gone (<= 300 s).
  (cd "$HERALD_ROOT" && exec taskset -c 0 env "${_herald_env[@]}" REDIS_URL="$_herald_redis" HERALD_REDIS_PREFIX=herald-bench \
     HERALD_FANOUT_MODE=worker HERALD_CHANNEL_LAYER="${HERALD_CHANNEL_LAYER:-core}" LOG_LEVEL=WARNING \
     "$HERALD_PYTHON" "$HERALD_ROOT/bench/peer/herald/serve_bench.py" worker) \
    </dev/null >"$BENCH/results/raw/herald-worker-$$.log" 2>&1 &
  _herald_worker_pid=$!
  (for _ in $(seq 1 1500); do kill -0 $$ 2>/dev/null || break; sleep 0.2; done; kill "$_herald_worker_pid" 2>/dev/null) \
    </dev/null >/dev/null 2>&1 &
fi

SERVER_CMD=(env "${_herald_env[@]}" REDIS_URL="$_herald_redis" HERALD_REDIS_PREFIX=herald-bench
            HERALD_FANOUT_MODE="$_herald_fanout" HERALD_CHANNEL_LAYER="${HERALD_CHANNEL_LAYER:-core}"
            LOG_LEVEL="${HERALD_BENCH_LOG_LEVEL:-INFO}"
            "$HERALD_PYTHON" "$HERALD_ROOT/bench/peer/herald/serve_bench.py" "$PORT" 4096)
