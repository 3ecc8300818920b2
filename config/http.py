"""Django's HTTP side under ASGI, with one thread hop per request, on threads that are reused.

Django's own ASGIHandler runs its middleware chain in async mode. Every Django middleware built
on MiddlewareMixin (sessions, CSRF, auth, messages, security...) is sync code, so in async mode
each of them hops to a thread and back, once for its request half and once for its response
half: about fifteen hops per request, ~2 ms of CPU on a publish (docs/performance.md). Herald's
views are all sync (DRF), so this handler runs the whole chain and the view the way WSGI does,
in ONE thread hop; reading the body, the request signals and sending the response stay as
Django's ASGIHandler does them (per-request thread context, disconnect handling, streaming).

Django gives each request a thread of its own (asgiref's ThreadSensitiveContext): every sync call
of the request (the request_started receivers, the chain and view, the response's close and
request_finished) runs in that thread and no other request's. By default that thread is new for
every request, and so is a second one that joins it afterwards, started from the event loop, which
waits until the new thread runs: two thread starts per request, one of them stalling every
socket's delivery for as long as the start takes under a busy GIL. Here the request's thread is
taken from a list of idle ones and put back when the request is over: the same guarantee, without
the starts."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase

# Idle request threads kept for reuse; a burst of more concurrent requests than this starts
# threads as Django does and lets the extra ones go when their request is over.
IDLE_REQUEST_THREADS = 32


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)  # not ASGIHandler.__init__: it loads the chain in async mode
        self.load_middleware(is_async=False)
        # Each a one-thread executor: asgiref runs a context's calls one at a time on one thread.
        # Only the event loop's thread takes and returns them, so a plain list is safe.
        self._idle_threads: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        thread = self._idle_threads.pop() if self._idle_threads else ThreadPoolExecutor(1, "herald-http")
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            # handle() has awaited every sync call it made (asgiref waits for a cancelled call's
            # thread to finish), so the thread is idle again.
            if len(self._idle_threads) < IDLE_REQUEST_THREADS:
                self._idle_threads.append(thread)
            else:
                thread.shutdown(wait=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        # thread_sensitive: inside the request's ThreadSensitiveContext (set above), so every sync
        # call of this request, and only of this request, runs in one thread.
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
