# Diagnostic: Herald on uvicorn (uvloop, httptools, websockets) instead of Daphne, same everything else.
# Needs an interpreter with Herald's requirements AND uvicorn[standard] (run_side_by_side.sh makes
# $BENCH_WORK/.venv-herald-uvicorn when this peer is in PEERS).
HERALD_BENCH_PORT=8121
HERALD_BENCH_SERVER=uvicorn
HERALD_PYTHON="${HERALD_UVICORN_PYTHON:-$BENCH/.venv-herald-uvicorn/bin/python}"
export HERALD_BENCH_SERVER
# shellcheck disable=SC1091
source "$BENCH/peers/herald/peer.sh"
