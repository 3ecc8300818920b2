"""Probes and metrics: /healthz (the process answers), /readyz (its dependencies answer) and
/metrics (Prometheus)."""

from __future__ import annotations

import hmac

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.herald import herald_settings


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


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics of THIS process (scrape every node directly, not through nginx).
    Allowed: `Authorization: Bearer $HERALD_METRICS_TOKEN` when that is set, a superuser's session,
    or, when no token is set, a request straight from loopback (a local Prometheus agent)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from notifications import collection, metrics
    from notifications.models import FanoutJob

    token = herald_settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    allowed = (
        (bool(token) and hmac.compare_digest(header, f"Bearer {token}"))
        or bool(getattr(request.user, "is_superuser", False))
        or (
            not token
            and request.META.get("REMOTE_ADDR") in ("127.0.0.1", "::1")
            and "HTTP_X_FORWARDED_FOR" not in request.META
        )
    )
    if not allowed:
        return JsonResponse({"error": {"code": "forbidden", "message": "Metrics need the metrics token."}}, status=403)
    collection.schedule().record_pauses()
    try:
        metrics.FANOUT_QUEUE.set(FanoutJob.objects.count())
    except Exception:
        metrics.FANOUT_QUEUE.set(float("nan"))
    return HttpResponse(generate_latest(metrics.REGISTRY), content_type=CONTENT_TYPE_LATEST)
