"""The ASGI application: HTTP (Django + DRF) and WebSocket (/ws/v1/) for Daphne or uvicorn."""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Set Django up before importing anything that touches models (what get_asgi_application does).
django.setup(set_prefix=False)

from config.http import SyncChainASGIHandler  # noqa: E402

django_http = SyncChainASGIHandler()

from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from accounts.middleware import SessionOriginMiddleware  # noqa: E402
from config.warmup import load_request_path  # noqa: E402
from notifications.node import HeraldApplication  # noqa: E402
from notifications.routing import websocket_routes  # noqa: E402

application = HeraldApplication(
    # In the embedded default Herald serves its own static files; behind nginx, nginx does.
    http=ASGIStaticFilesHandler(django_http) if settings.HERALD_SERVE_STATIC else django_http,
    # The session (for handshakes with a session cookie from an allowed origin) but not Channels'
    # AuthMiddlewareStack: the consumers that use a session read its user in a thread hop they
    # make anyway (accounts.credentials.session_user), where the auth middleware would make one
    # more per handshake, signed in or not.
    websocket=SessionOriginMiddleware(websocket_routes),
)

# What the first request would import (the URLconf and its views, DRF's configured classes).
load_request_path()

# Everything loaded so far (Django, the apps, the URL and model registries: ~100,000 objects) lives
# as long as the process. Move it out of the garbage collector's sight, so a full collection only
# walks what was created since. Full collections run while the number of live objects grows (a
# node taking on connections), and each one stalls the event loop, every socket's delivery with it,
# for as long as the walk takes (docs/performance.md, "Garbage collection").
gc.freeze()
