"""Load-balancer probes: /healthz (the process answers) and /readyz (its dependencies answer)."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    layer = get_channel_layer()
    try:
        # A group send to an empty group is a real round trip to Redis that leaves nothing behind.
        async_to_sync(layer.group_send)("herald.readyz", {"type": "readyz"})  # type: ignore[union-attr]
        checks["channel_layer"] = "ok"
    except Exception:
        checks["channel_layer"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
