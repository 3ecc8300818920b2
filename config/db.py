"""Running database work off the event loop."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def in_thread(func: Any) -> Any:
    """`func` as a coroutine function that runs in the thread pool. Channels' default (one shared
    thread per process) would queue every caller behind each other; Django's connection pool gives
    each thread its own connection, handed back to the pool when the call ends.

    The hand-back is done here rather than by channels' DatabaseSyncToAsync, whose hook channels'
    test communicator switches off: every call would then keep a pooled connection for good."""

    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)
