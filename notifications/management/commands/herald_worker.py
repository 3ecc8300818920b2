"""`manage.py herald_worker`: a fan-out process for production (HERALD_FANOUT_MODE=worker).
Run one or more; they share the outbox safely (one tenant at a time per worker, in order)."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.core.management.base import BaseCommand

from notifications.fanout import FanoutRunner

logger = logging.getLogger("herald.worker")


class Command(BaseCommand):
    help = "Run the fan-out loop until SIGTERM/SIGINT (finishing the event in hand first)."

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = FanoutRunner(listen_on_layer=True)
        logger.info("fan-out worker started")
        task = asyncio.create_task(runner.run(stop=stop))
        await stop.wait()
        logger.info("fan-out worker stopping", extra={"completed": runner.completed})
        runner.wake()  # leave the wait at once; the round in progress completes first
        await task
        logger.info("fan-out worker stopped", extra={"completed": runner.completed})
