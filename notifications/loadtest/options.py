"""The load test's options: parsed from the command line, validated once, with every bound explained."""

from __future__ import annotations

import argparse
import math
import os
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Upper bounds on what one load-test process may be asked to do; each loop is bounded by these.
MAX_CLIENTS = 50_000  # one file descriptor and ~50 KB per client in this process
MAX_RATE = 10_000.0  # publishes per second: beyond this one process cannot issue REST calls anyway
MAX_DURATION = 3600.0  # one hour of publishing
MAX_MESSAGES_CEILING = 1_000_000
API_KEY_ENV = "HERALD_LOADTEST_API_KEY"
# /metrics wants `Authorization: Bearer $HERALD_METRICS_TOKEN` when the server has that set (docs/operations.md);
# the load test reads the token from the environment only, never from the command line (`ps`, shell history).
METRICS_TOKEN_ENV = "HERALD_LOADTEST_METRICS_TOKEN"  # noqa: S105 (a variable name, not a secret)
# The server's own variable, if the load test runs on the server's host.
SERVER_METRICS_TOKEN_ENV = "HERALD_METRICS_TOKEN"  # noqa: S105 (a variable name, not a secret)
# Churn: at most this many reconnects per second (each is a handshake, an auth and a replay query on the
# server: beyond this one process measures its own connect path, not a soak).
MAX_CHURN = 1000.0
# A churned client stays away at most this long, so it misses at most rate x gap notifications: far
# below the server's replay limit (HERALD_REPLAY_MAX, 1,000 by default) at sensible rates.
MAX_CHURN_GAP = 60.0
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class OptionsError(ValueError):
    """An option is missing or out of range (the message says which and why)."""


@dataclass(frozen=True)
class Options:
    url: str  # base URL of the deployment, e.g. https://herald.example.com (no trailing slash)
    api_key: str = field(repr=False)
    clients: int
    rate: float | None  # publishes per second; None = as fast as the window allows (--max)
    duration: float
    topic: str = "bench"
    ca_file: str | None = None
    create_topic: bool = False
    connect_concurrency: int = 64
    connect_timeout: float = 15.0
    connect_budget: float = 120.0
    window: int = 16
    max_in_flight: int = 8
    max_messages: int = 100_000
    drain: float = 10.0
    payload_bytes: int = 100
    user_prefix: str = "loadtest-"
    token_threads: int = 8
    progress_interval: float = 1.0
    request_timeout: float = 15.0
    churn: float = 0.0  # clients closed and resumed per second while publishing; 0 = no churn
    churn_gap: float = 0.5  # seconds a churned client stays away before it reconnects
    metrics_url: str | None = None  # where to read the server's RSS (Prometheus text); None = do not
    metrics_token: str = field(default="", repr=False)

    @property
    def is_https(self) -> bool:
        return self.url.startswith("https://")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if self.is_https else 80)

    @property
    def path_prefix(self) -> str:
        return urlsplit(self.url).path.rstrip("/")

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{'wss' if self.is_https else 'ws'}://{parts.netloc}{self.path_prefix}/ws/v1/"

    @property
    def planned_messages(self) -> int:
        """How many publishes the run may make at most."""
        if self.rate is None:
            return self.max_messages
        return min(self.max_messages, max(1, math.ceil(self.rate * self.duration)))

    @property
    def plain_http_off_loopback(self) -> bool:
        return not self.is_https and self.host not in LOOPBACK_HOSTS

    @property
    def metrics_token_in_clear(self) -> bool:
        """The metrics token would cross a network unencrypted."""
        if not self.metrics_url or not self.metrics_token:
            return False
        parts = urlsplit(self.metrics_url)
        return parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.is_https:
            return None
        return ssl.create_default_context(cafile=self.ca_file)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="Base URL of the deployment, e.g. https://herald.example.com")
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"An API key with the publish scope (or set {API_KEY_ENV}, which keeps it out of `ps` and shell history)",
    )
    parser.add_argument("--clients", type=int, default=100, help="WebSocket clients to connect (default 100)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=float, help="Publishes per second, on a fixed schedule")
    mode.add_argument(
        "--max",
        action="store_true",
        help="Publish as fast as deliveries keep up: at most --window messages not yet seen by the last client",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds of publishing (default 10)")
    parser.add_argument("--topic", default="bench", help="Topic the clients listen to and events go to (default bench)")
    parser.add_argument("--ca", dest="ca_file", default=None, help="CA bundle (PEM) to verify the server's certificate")
    parser.add_argument(
        "--create-topic", action="store_true", help="Create the topic if it does not exist (needs the admin scope)"
    )
    parser.add_argument("--connect-concurrency", type=int, default=64, help="Handshakes in flight (default 64)")
    parser.add_argument("--connect-timeout", type=float, default=15.0, help="Per client: connect + auth (default 15 s)")
    parser.add_argument(
        "--connect-budget", type=float, default=120.0, help="No new connection attempt after this (default 120 s)"
    )
    parser.add_argument("--window", type=int, default=16, help="--max: messages outstanding (default 16)")
    parser.add_argument("--max-in-flight", type=int, default=8, help="REST publishes in flight (default 8)")
    parser.add_argument("--max-messages", type=int, default=100_000, help="Most publishes in one run (default 100000)")
    parser.add_argument("--drain", type=float, default=10.0, help="Seconds to wait for late deliveries (default 10)")
    parser.add_argument("--payload-bytes", type=int, default=100, help="Filler in each event's data (default 100)")
    parser.add_argument(
        "--user-prefix", default="loadtest-", help="End-user ids are PREFIX0..PREFIX<N-1> (default loadtest-)"
    )
    parser.add_argument("--token-threads", type=int, default=8, help="Concurrent token requests (default 8)")
    parser.add_argument("--progress-interval", type=float, default=1.0, help="Seconds between progress lines")
    parser.add_argument(
        "--churn",
        type=float,
        default=0.0,
        help="While publishing, close this many random clients per second and reconnect each, resuming from "
        "the last cursor it saw (default 0: no churn)",
    )
    parser.add_argument(
        "--churn-gap",
        type=float,
        default=0.5,
        help="Seconds a churned client stays away before reconnecting, so it misses notifications that the "
        "resume must replay (default 0.5)",
    )
    parser.add_argument(
        "--metrics-url",
        default=None,
        help="Prometheus /metrics of the server process to sample process_resident_memory_bytes from "
        f"(default: URL/metrics; token in {METRICS_TOKEN_ENV} if the server sets HERALD_METRICS_TOKEN)",
    )
    parser.add_argument("--no-metrics", action="store_true", help="Do not read the server's /metrics")
    parser.add_argument("--json", action="store_true", help="Print the final report as JSON (progress stays on stderr)")


def options_from(values: dict[str, object], environ: dict[str, str] | None = None) -> Options:
    """Build and validate Options from parsed arguments (argparse dest names)."""
    environ = dict(os.environ) if environ is None else environ
    url = str(values.get("url") or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionsError("--url must be an http:// or https:// URL with a host, e.g. https://herald.example.com")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise OptionsError("--url must not contain credentials, a query or a fragment")
    api_key = str(values.get("api_key") or environ.get(API_KEY_ENV) or "")
    if not api_key.startswith("hk_"):
        raise OptionsError(f"--api-key (or {API_KEY_ENV}) must be a Herald API key (hk_...)")
    rate = values.get("rate")
    if not values.get("max") and rate is None:
        raise OptionsError("give --rate R or --max")
    options = Options(
        url=url,
        api_key=api_key,
        clients=_int(values, "clients", 100),
        rate=None if values.get("max") else float(rate),  # type: ignore[arg-type]
        duration=_float(values, "duration", 10.0),
        topic=str(values.get("topic") or "bench"),
        ca_file=str(values["ca_file"]) if values.get("ca_file") else None,
        create_topic=bool(values.get("create_topic")),
        connect_concurrency=_int(values, "connect_concurrency", 64),
        connect_timeout=_float(values, "connect_timeout", 15.0),
        connect_budget=_float(values, "connect_budget", 120.0),
        window=_int(values, "window", 16),
        max_in_flight=_int(values, "max_in_flight", 8),
        max_messages=_int(values, "max_messages", 100_000),
        drain=_float(values, "drain", 10.0),
        payload_bytes=_int(values, "payload_bytes", 100),
        user_prefix=str(values.get("user_prefix") or "loadtest-"),
        token_threads=_int(values, "token_threads", 8),
        progress_interval=_float(values, "progress_interval", 1.0),
        churn=_float(values, "churn", 0.0),
        churn_gap=_float(values, "churn_gap", 0.5),
        metrics_url=None if values.get("no_metrics") else str(values.get("metrics_url") or f"{url}/metrics"),
        metrics_token=environ.get(METRICS_TOKEN_ENV) or environ.get(SERVER_METRICS_TOKEN_ENV) or "",
    )
    _check(1 <= options.clients <= MAX_CLIENTS, f"--clients must be 1-{MAX_CLIENTS}")
    _check(options.rate is None or 0 < options.rate <= MAX_RATE, f"--rate must be > 0 and <= {MAX_RATE:g}")
    _check(0 < options.duration <= MAX_DURATION, f"--duration must be > 0 and <= {MAX_DURATION:g} s")
    _check(1 <= options.connect_concurrency <= 1000, "--connect-concurrency must be 1-1000")
    _check(0 < options.connect_timeout <= 120, "--connect-timeout must be > 0 and <= 120 s")
    _check(0 < options.connect_budget <= 3600, "--connect-budget must be > 0 and <= 3600 s")
    _check(1 <= options.window <= 10_000, "--window must be 1-10000")
    _check(1 <= options.max_in_flight <= 256, "--max-in-flight must be 1-256")
    _check(1 <= options.max_messages <= MAX_MESSAGES_CEILING, f"--max-messages must be 1-{MAX_MESSAGES_CEILING}")
    _check(0 <= options.drain <= 600, "--drain must be 0-600 s")
    _check(0 <= options.payload_bytes <= 8000, "--payload-bytes must be 0-8000 (the tenant's limit is 16 KB)")
    _check(1 <= options.token_threads <= 64, "--token-threads must be 1-64")
    _check(0.1 <= options.progress_interval <= 60, "--progress-interval must be 0.1-60 s")
    _check(
        options.user_prefix.replace("-", "").replace("_", "").replace(".", "").isalnum()
        and len(options.user_prefix) <= 150,
        "--user-prefix: letters, digits and - _ . only (at most 150)",
    )
    _check(0 <= options.churn <= MAX_CHURN, f"--churn must be 0-{MAX_CHURN:g} reconnects per second")
    _check(0 <= options.churn_gap <= MAX_CHURN_GAP, f"--churn-gap must be 0-{MAX_CHURN_GAP:g} s")
    if options.metrics_url is not None:
        metrics = urlsplit(options.metrics_url)
        if metrics.scheme not in ("http", "https") or not metrics.hostname:
            raise OptionsError("--metrics-url must be an http:// or https:// URL with a host")
        if metrics.username or metrics.password:
            raise OptionsError(f"--metrics-url must not contain credentials (put the token in {METRICS_TOKEN_ENV})")
    if options.ca_file is not None and not os.path.isfile(options.ca_file):
        raise OptionsError(f"--ca {options.ca_file}: no such file")
    return options


def _int(values: dict[str, object], name: str, default: int) -> int:
    value = values.get(name)
    return default if value is None else int(value)  # type: ignore[call-overload]


def _float(values: dict[str, object], name: str, default: float) -> float:
    value = values.get(name)
    return default if value is None else float(value)  # type: ignore[arg-type]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise OptionsError(message)
