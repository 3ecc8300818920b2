"""Django's HTTP side under ASGI, with one thread hop per request.

Django's own ASGIHandler runs its middleware chain in async mode. Every Django middleware built
on MiddlewareMixin (sessions, CSRF, auth, messages, security...) is sync code, so in async mode
each of them hops to a thread and back, once for its request half and once for its response
half: about fifteen hops per request, ~2 ms of CPU on a publish (docs/performance.md). Herald's
views are all sync (DRF), so this handler runs the whole chain and the view the way WSGI does,
in ONE thread hop; reading the body, the request signals and sending the response stay as
Django's ASGIHandler does them (per-request thread context, disconnect handling, streaming)."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)  # not ASGIHandler.__init__: it loads the chain in async mode
        self.load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        # thread_sensitive: inside the request's ThreadSensitiveContext (set by ASGIHandler), so
        # every sync call of this request, and only of this request, runs in one thread.
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
