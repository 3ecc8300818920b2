#!/usr/bin/env bash
# Herald side by side with the peer servers of the shared WebSocket benchmark, in ONE run sequence,
# then the table with ratios (to node-ws and to py-websockets, per repetition).
#
#   bench/run_side_by_side.sh                       # default matrix, REPS=1
#   QUICK=1 bench/run_side_by_side.sh               # W1 1000, W2 1000@20, W3 2000; REPS=1
#   REPS=3 PEERS="node-ws py-websockets herald" WORKLOADS="w1:1000 w3:5000" bench/run_side_by_side.sh
#   PREPARE_ONLY=1 bench/run_side_by_side.sh        # only copy/install (used by profile_herald.sh)
#   PEERS="py-websockets herald herald-uvicorn herald-pubsub" WORKLOADS="w1:1000" bench/run_side_by_side.sh
#                                                   # diagnostic variants: Herald on uvicorn / pubsub layer
#
# What it does (every step bounded; nothing outside 127.0.0.1 is contacted but the package registries
# on the first run, for `npm ci` and the peers' Python packages):
#   1. copies the harness (BENCH_HARNESS, default ../shared/bench; never modified) to BENCH_WORK
#      (default /tmp/herald-bench-work), keeping .venv/node_modules/results of earlier runs there;
#   2. patches the COPY's run.sh to use its own Redis on BENCH_REDIS_PORT (default 6390): run.sh
#      FLUSHALLs the Redis it uses, and the shared 6379 belongs to other users;
#   3. installs bench/adapter/herald.js and bench/peer/herald/peer.sh into the copy;
#   4. creates the benchmark database (HERALD_BENCH_DATABASE_URL, default herald_bench) if missing;
#   5. runs the copy's run_all.sh for PEERS x WORKLOADS x REPS (node-ws first in every repetition);
#   6. prints the harness's own tables (tools/summarize.py) and bench/tools/side_by_side.py's ratios.
# Env: PEERS, WORKLOADS (w1:N | w2:N:RATE | w3:C), REPS, QUICK, MAX_SECONDS, HERALD_PYTHON,
#      HERALD_CHANNEL_LAYER (core|pubsub), HERALD_BENCH_LOG_LEVEL, BENCH_HARNESS, BENCH_WORK, BENCH_REDIS_PORT.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_HARNESS="${BENCH_HARNESS:-$REPO/../shared/bench}"
BENCH_WORK="${BENCH_WORK:-/tmp/herald-bench-work}"
BENCH_REDIS_PORT="${BENCH_REDIS_PORT:-6390}"
HERALD_PYTHON="${HERALD_PYTHON:-$REPO/.venv/bin/python}"
HERALD_BENCH_DATABASE_URL="${HERALD_BENCH_DATABASE_URL:-postgres://herald:herald@127.0.0.1:5432/herald_bench}"
if [ "${QUICK:-0}" = 1 ]; then
  WORKLOADS="${WORKLOADS:-w1:1000 w2:1000:20 w3:2000}"
else
  WORKLOADS="${WORKLOADS:-w1:1000 w1:5000 w2:1000:20 w2:1000:100 w3:10000}"
fi
PEERS="${PEERS:-node-ws py-websockets channels-daphne-redis herald}"
REPS="${REPS:-1}"
started=$(date +%s)
say() { echo "[side-by-side $(( $(date +%s) - started ))s] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ -f "$BENCH_HARNESS/run_all.sh" ] || die "no harness at $BENCH_HARNESS (set BENCH_HARNESS=/path/to/shared/bench)"
[ -x "$HERALD_PYTHON" ] || die "no Python at $HERALD_PYTHON (run scripts/bootstrap, or set HERALD_PYTHON)"
[ "$BENCH_REDIS_PORT" != 6379 ] || die "BENCH_REDIS_PORT must not be 6379: run.sh FLUSHALLs the Redis it uses"
BENCH_HARNESS="$(cd "$BENCH_HARNESS" && pwd)"
case "$BENCH_WORK" in "$BENCH_HARNESS"|"$BENCH_HARNESS"/*|"$REPO"|"$REPO"/*) die "BENCH_WORK must be outside the harness and the repository";; esac

# --- 1-3: the working copy -----------------------------------------------------------------------
say "copying $BENCH_HARNESS -> $BENCH_WORK"
mkdir -p "$BENCH_WORK"
rsync -a --exclude .venv --exclude node_modules --exclude results "$BENCH_HARNESS/" "$BENCH_WORK/"
mkdir -p "$BENCH_WORK/results/raw"
[ -f "$BENCH_WORK/results/versions.json" ] || cp "$BENCH_HARNESS/results/versions.json" "$BENCH_WORK/results/" 2>/dev/null || true
chmod -R u+w "$BENCH_WORK"
cd "$BENCH_WORK"
# The copy's run.sh: its own Redis port instead of 6379 (started pinned to CPU 0 and flushed by run.sh).
sed -i -e 's/-p 6379/-p "$BENCH_REDIS_PORT"/g' -e 's/--port 6379/--port "$BENCH_REDIS_PORT"/g' run.sh
if grep -q 6379 run.sh; then die "run.sh still mentions 6379 after patching; refusing to run"; fi
grep -q 'BENCH_REDIS_PORT' run.sh || die "could not patch run.sh's Redis port"
cp "$REPO/bench/adapter/herald.js" gen/adapters/herald.js
for peer_dir in "$REPO"/bench/peer/*/; do   # herald, and the diagnostic variants herald-uvicorn, herald-pubsub
  name="$(basename "$peer_dir")"; mkdir -p "peers/$name" && cp "$peer_dir/peer.sh" "peers/$name/peer.sh"
done

if [ ! -d node_modules/ws ]; then
  say "npm ci (first run only)"
  timeout 300 npm ci --no-audit --no-fund >results/raw/npm.log 2>&1 || die "npm ci failed: results/raw/npm.log"
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import websockets, uvloop, daphne, channels_redis' 2>/dev/null; then
  say "creating the peers' Python environment (first run only; versions of the harness's RESULTS.md)"
  python3 -m venv .venv
  timeout 600 .venv/bin/pip install -q websockets==17.4 uvloop==0.23.0 Django==5.2.19 channels==4.3.2 \
    channels-redis==4.3.0 daphne==4.2.3 orjson==3.13.0 redis==8.1.0 py-spy >results/raw/pip.log 2>&1 \
    || die "pip install failed: results/raw/pip.log"
fi
if [[ " $PEERS " == *" herald-uvicorn "* ]] && ! .venv-herald-uvicorn/bin/python -c 'import uvicorn, django' 2>/dev/null; then
  say "creating Herald's environment with uvicorn for the herald-uvicorn diagnostic peer (first run only)"
  python3 -m venv .venv-herald-uvicorn
  timeout 600 .venv-herald-uvicorn/bin/pip install -q -r "$REPO/requirements.txt" 'uvicorn[standard]==0.54.0' \
    >results/raw/pip-herald-uvicorn.log 2>&1 || die "pip install failed: results/raw/pip-herald-uvicorn.log"
fi

# --- 4: the benchmark database ------------------------------------------------------------------
"$REPO/scripts/services" >&2 || die "PostgreSQL/Redis are not available (scripts/services)"
say "database: $(echo "$HERALD_BENCH_DATABASE_URL" | sed -E 's#//[^@]*@#//***@#')"
timeout 60 "$HERALD_PYTHON" - "$HERALD_BENCH_DATABASE_URL" <<'PY' || die "cannot create the benchmark database"
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

url = urlsplit(sys.argv[1])
name = url.path.lstrip("/")
admin = urlunsplit(url._replace(path="/postgres"))
with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
    if not conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone():
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        print(f"created database {name}", file=sys.stderr)
PY

export HERALD_ROOT="$REPO" HERALD_PYTHON HERALD_BENCH_DATABASE_URL BENCH_REDIS_PORT
export BENCH_REDIS="redis://127.0.0.1:$BENCH_REDIS_PORT/0"   # read by the channels-* peers' settings
if [ "${PREPARE_ONLY:-0}" = 1 ]; then say "prepared $BENCH_WORK"; exit 0; fi

# --- 5: the sequence ------------------------------------------------------------------------------
export SEQ_ID="${SEQ_ID:-herald-$(date -u +%Y%m%dT%H%M%S)}"
export OUT="$BENCH_WORK/results/side-by-side.jsonl"
runs=$(( $(wc -w <<<"$PEERS") * $(wc -w <<<"$WORKLOADS") * REPS ))
export MAX_SECONDS="${MAX_SECONDS:-$(( runs * 120 ))}"
say "sequence $SEQ_ID: REPS=$REPS, $runs runs (each <= ~110 s), peers: $PEERS; workloads: $WORKLOADS"
redis_started_here=0
redis-cli -p "$BENCH_REDIS_PORT" ping >/dev/null 2>&1 || redis_started_here=1
stop_redis() {
  # Only the Redis that run.sh started for this sequence, by its pid file, and only if it is ours.
  [ "$redis_started_here" = 1 ] && [ -f results/raw/redis.pid ] || return 0
  local pid; pid="$(cat results/raw/redis.pid)"
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "redis-server.*:$BENCH_REDIS_PORT"; then
    kill "$pid" 2>/dev/null && say "stopped the benchmark Redis (pid $pid)"
  fi
}
trap stop_redis EXIT
PEERS="$PEERS" WORKLOADS="$WORKLOADS" REPS="$REPS" DIAG_PEERS="none" ./run_all.sh

# --- 6: tables ------------------------------------------------------------------------------------
say "results: $OUT (seq $SEQ_ID)"
python3 tools/summarize.py "$OUT" --seq "$SEQ_ID" >"results/summary-$SEQ_ID.md" || true
python3 "$REPO/bench/tools/side_by_side.py" "$OUT" --seq "$SEQ_ID" --pg-dir results/raw | tee "results/side-by-side-$SEQ_ID.md"
say "full tables: $BENCH_WORK/results/summary-$SEQ_ID.md; this table: $BENCH_WORK/results/side-by-side-$SEQ_ID.md"
