# Sourced by the bench scripts (rest_publish.sh, soak.sh): starts ONE Herald process in its
# production layout (`manage.py serve` through bench/peer/herald/serve_bench.py, PostgreSQL,
# channels-redis core layer on its own Redis, in-process fan-out, DEBUG=0), pinned to CPU 0 with
# its Redis, after resetting the benchmark tenant (bench/setup_herald.py). Stopped on exit.
#
# Needs: REPO, PY, PORT, REDIS_PORT (not 6379), DB_URL, OUT, a `say` function; TOKENS (end users
# u0..TOKENS-1, default 1000) and SERVER_ENV (extra VAR=value words for the server) are optional.
# Sets: server (PID), pids, env_common, BENCH_API_KEY, BENCH_TOKENS_FILE (from setup_herald.py).
[ "$REDIS_PORT" != 6379 ] || { say "the benchmark Redis port must not be 6379"; exit 2; }
pids=()
cleanup() {  # the server first, then its Redis
  local index
  for (( index=${#pids[@]}-1; index>=0; index-- )); do kill "${pids[$index]}" 2>/dev/null || true; sleep 0.5; done
}
trap cleanup EXIT

say "redis on $REDIS_PORT (CPU 0)"
taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  >"$OUT/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

env_common=(DJANGO_SETTINGS_MODULE=config.settings
            SECRET_KEY=herald-bench-secret-key-used-only-on-loopback-0123456789abcdef
            DEBUG=0 ALLOWED_HOSTS=127.0.0.1,localhost SECURE_SSL_REDIRECT=0 DATABASE_URL="$DB_URL")
scripts/services >&2 || { say "PostgreSQL/Redis are not available (scripts/services)"; exit 1; }
PGPASSWORD=herald createdb -h 127.0.0.1 -U herald "${DB_URL##*/}" 2>/dev/null || true
say "database: tenant, topic, API key, end users u0..u$(( ${TOKENS:-1000} - 1 ))"
setup="$(timeout 120 env "${env_common[@]}" "$PY" bench/setup_herald.py --tokens "${TOKENS:-1000}" --state-dir "$OUT/state")"
eval "$setup"

say "server on $PORT (CPU 0)"
taskset -c 0 env "${env_common[@]}" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" HERALD_REDIS_PREFIX=herald-bench \
  LOG_LEVEL=WARNING ${SERVER_ENV:-} "$PY" bench/peer/herald/serve_bench.py "$PORT" 4096 >"$OUT/server.log" 2>&1 &
server=$!
pids+=($server)
for _ in $(seq 1 150); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || { say "server did not start"; tail -20 "$OUT/server.log"; exit 1; }
