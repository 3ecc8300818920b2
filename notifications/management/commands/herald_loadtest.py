"""`manage.py herald_loadtest --url URL --api-key KEY --clients N (--rate R | --max) --duration S
[--churn R]`: a load test to point at a running Herald deployment (see notifications/loadtest/ and
docs/performance.md). It uses no database and no Redis: only HTTP and WebSocket to the target."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from notifications.loadtest.options import OptionsError, add_arguments, options_from
from notifications.loadtest.runner import run


class Command(BaseCommand):
    help = (
        "Load-test a Herald deployment: mint tokens, connect N WebSocket clients to a topic, publish over "
        "REST at --rate R/s or --max, and report deliveries/s, publish->deliver latency, losses and duplicates; "
        "--churn R closes and resumes R clients a second; the server's RSS is sampled from its /metrics."
    )
    # Nothing local is used: no system checks (they would look at this machine's database settings).
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            loadtest_options = options_from(options)
        except OptionsError as error:
            raise CommandError(str(error)) from None

        def progress(line: str) -> None:
            print(f"[herald_loadtest] {line}", file=sys.stderr, flush=True)

        if loadtest_options.plain_http_off_loopback:
            progress(
                "warning: plain http:// to a host that is not this machine sends the API key and tokens unencrypted"
            )
        if loadtest_options.metrics_token_in_clear:
            progress("warning: plain http:// --metrics-url off this machine sends the metrics token unencrypted")
        progress(
            f"target {loadtest_options.url} (WebSocket {loadtest_options.ws_url}), topic {loadtest_options.topic!r}, "
            f"{loadtest_options.clients:,} clients"
        )
        report = run(loadtest_options, progress=progress)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=1))
        else:
            self.stdout.write("\n".join(report.lines()))
        if not report.ok:
            problem = report.error or (f"{report.lost:,} deliveries lost" if report.lost else "nothing was delivered")
            raise CommandError(f"load test not OK: {problem}")
