# Diagnostic: Herald (Daphne) with channels_redis.pubsub.RedisPubSubChannelLayer instead of the core layer.
HERALD_BENCH_PORT=8122
HERALD_CHANNEL_LAYER=pubsub
# shellcheck disable=SC1091
source "$BENCH/peers/herald/peer.sh"
