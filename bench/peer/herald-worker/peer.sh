# Diagnostic: Herald (Daphne) with HERALD_FANOUT_MODE=worker: the fan-out runs in one `herald_worker`
# process (pinned to CPU 0 with the server) instead of a thread of the server process.
HERALD_BENCH_PORT=8123
HERALD_BENCH_FANOUT_MODE=worker
# shellcheck disable=SC1091
source "$BENCH/peers/herald/peer.sh"
