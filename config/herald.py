"""Herald's own settings: the defaults live here, deployments override them through
`settings.HERALD` (filled from HERALD_* environment variables in config/settings.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # "inprocess": every ASGI process runs the fan-out loop itself (embedded default).
    # "worker": `manage.py herald_worker` processes run it; web processes only store and wake.
    "FANOUT_MODE": "inprocess",
    # The ASGI server `manage.py serve` runs: "uvicorn" (measured faster) or "daphne".
    "SERVER": "uvicorn",
    # Inbox rows written per transaction while fanning out one event; 1,000 rows keep a
    # transaction under ~50 ms on PostgreSQL, so a huge broadcast never holds locks for long.
    "FANOUT_BATCH_SIZE": 1000,
    # How often a fan-out loop looks for jobs nobody woke it for (crash recovery, lost wake-ups).
    "FANOUT_SWEEP_SECONDS": 1.0,
    # Server ping every 25 s: below the 30-60 s idle timeouts of common proxies and load
    # balancers, so an idle but healthy socket is never cut by the network in between.
    "HEARTBEAT_SECONDS": 25.0,
    # A socket must authenticate within 5 s of opening, or it is closed (4002).
    "AUTH_TIMEOUT_SECONDS": 5.0,
    "TOKEN_MAX_LIFETIME_SECONDS": 86400,
    "TOKEN_DEFAULT_LIFETIME_SECONDS": 900,
    # Audience claim every connection token must carry.
    "TOKEN_AUDIENCE": "herald",
    # At most this many missed notifications are replayed on resume; beyond it the server says
    # `recovered: false` and the client reloads its inbox over REST instead.
    "REPLAY_MAX": 1000,
    # Extra browser origins allowed to use the Django session on /ws/v1/ (besides ALLOWED_HOSTS).
    "ALLOWED_ORIGINS": [],
    # Per client IP, across the whole deployment (counted in the shared cache): token minting, and
    # failed authentications (REST and WebSocket) before an IP is refused for the rest of the minute.
    "TOKENS_PER_IP_PER_MINUTE": 1200,
    # Connections of a node that stopped refreshing its presence (crashed) stop counting against
    # connection limits after this long.
    "PRESENCE_NODE_TTL_SECONDS": 30,
    "AUTH_FAILURES_PER_IP_PER_MINUTE": 30,
    # Bearer token Prometheus presents to /metrics (empty: loopback and superusers only).
    "METRICS_TOKEN": "",
    "MAX_RECIPIENTS": 1000,
    "MAX_BATCH_EVENTS": 100,
    "MAX_TOPICS_PER_EVENT": 20,
    "MAX_SUBSCRIPTIONS_PER_CONNECTION": 100,
    # Largest client frame the consumer accepts (the ASGI server is configured to match).
    "MAX_CLIENT_FRAME_BYTES": 65536,
    # A client whose unread outbound data passes this is closed (4010): 512 KiB is ~2,000 typical
    # notifications, minutes of backlog for a healthy client, and bounds a stuck one's memory.
    "MAX_OUTBOUND_BYTES": 512 * 1024,
    # The same bound, in frames, on servers other than Daphne (queued before the ASGI send).
    "MAX_OUTBOUND_FRAMES": 2000,
    # Kernel send buffer of each WebSocket (Daphne). Linux would autotune it up to 4 MiB, hiding a
    # stuck client's backlog from Herald; 64 KiB (the kernel doubles it) still streams ~1 MB/s
    # even at 100 ms round trips, far more than notifications need.
    "SOCKET_SEND_BUFFER_BYTES": 64 * 1024,
    # permessage-deflate on uvicorn. Off: every browser offers it, and accepting costs ~40 KB of
    # zlib state per connection (measured: 31.5 -> 71.4 KB per idle socket) to shrink frames that
    # are a few hundred bytes; the fast path sends frames uncompressed anyway.
    "WS_COMPRESSION": False,
}


class HeraldSettings:
    """Attribute access to Herald settings: `herald_settings.REPLAY_MAX`."""

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"Unknown Herald setting {name!r}")
        overrides = getattr(settings, "HERALD", {})
        return overrides.get(name, DEFAULTS[name])


herald_settings = HeraldSettings()
