"""Start-up work that would otherwise fall on the first requests of a new process.

Django imports the URLconf (and with it every view module, Django REST framework and the schema
generator) when the first request is resolved; DRF imports its configured classes (renderers,
parsers, authentication, the exception handler) when a view first asks for them; the session,
message and cache middleware import their backends, and the database its pool module, on first
use. Together ~100 ms of CPU in the first request, while every request that arrives meanwhile
waits (docs/performance.md, "What changed in the fifth session"). Done while the process starts,
before it takes any traffic, it costs the same, and what it creates is among the objects
config.asgi moves out of the garbage collector's sight. Nothing here connects to anything."""

from __future__ import annotations

import importlib

from django.conf import settings
from django.urls import get_resolver
from django.utils.module_loading import import_string
from rest_framework.settings import api_settings


def load_request_path() -> None:
    """Import what the first request would import."""
    get_resolver().url_patterns  # noqa: B018 - the property imports the URLconf and caches it
    for name in api_settings.import_strings:
        getattr(api_settings, name)
    import_string(settings.MESSAGE_STORAGE)
    import_string(settings.SESSION_SERIALIZER)
    import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    for cache in settings.CACHES.values():
        import_string(str(cache["BACKEND"]))
    if any(database.get("OPTIONS", {}).get("pool") for database in settings.DATABASES.values()):
        # The pool's module only: the pool itself takes its connection settings when created,
        # which must stay the first connection's business (tests, for one, change them later).
        importlib.import_module("psycopg_pool")
