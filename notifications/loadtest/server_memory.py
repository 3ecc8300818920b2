"""The server's resident memory during a load test, read from its Prometheus `/metrics`
(`process_resident_memory_bytes`, from prometheus_client's ProcessCollector): one sample after the
clients connected, one every `SAMPLE_SECONDS` while publishing and draining, one at the end.

`/metrics` answers for the one process that serves the request (docs/operations.md): point
`--metrics-url` at a node directly, not at a load balancer, or successive samples mix processes."""

from __future__ import annotations

import math
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

RSS_METRIC = "process_resident_memory_bytes"
# Every 10 s: 60 samples in a 10-minute soak, enough to see a trend; each is one small HTTP request
# that costs the server a millisecond or two, so sampling does not disturb what it measures.
SAMPLE_SECONDS = 10.0
# One scrape may take this long: a server too busy to answer in 5 s is reported, not waited for.
FETCH_TIMEOUT_SECONDS = 5.0
# A Herald /metrics page is ~20 KB (a few series per tenant); more than this is not one.
MAX_METRICS_BYTES = 4 * 2**20
MB = 1_000_000  # the report uses decimal megabytes, as `ps` and Prometheus dashboards do


def prometheus_value(text: str, name: str) -> float | None:
    """The value of the first sample of metric `name` in Prometheus text format (labels and an optional
    timestamp allowed), or None if there is none or it is not a number."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name) :]
        if rest.startswith("{"):
            end = rest.find("}")
            if end < 0:
                continue
            rest = rest[end + 1 :]
        elif not rest.startswith((" ", "\t")):
            continue  # a longer name with the same prefix, e.g. process_resident_memory_bytes_max
        fields = rest.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            return None
        return None if math.isnan(value) else value
    return None


@dataclass(frozen=True)
class Sample:
    seconds: float  # since the load test started
    rss_bytes: float


def memory_summary(samples: list[Sample]) -> dict[str, Any] | None:
    """Start (first sample), end (last), max and the change, in MB and % of the start."""
    if not samples:
        return None
    start, end = samples[0].rss_bytes, samples[-1].rss_bytes
    return {
        "start_mb": round(start / MB, 1),
        "end_mb": round(end / MB, 1),
        "max_mb": round(max(sample.rss_bytes for sample in samples) / MB, 1),
        "change_mb": round((end - start) / MB, 1),
        "change_pct": round(100 * (end - start) / start, 1) if start else None,
        "samples": [[round(sample.seconds, 1), round(sample.rss_bytes / MB, 1)] for sample in samples],
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the metrics token to wherever it points: report it instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class MetricsReader:
    """Reads the RSS from one /metrics URL (blocking: call it in a thread). Never raises for a network or
    HTTP problem, and never puts the token in an error message."""

    def __init__(self, url: str, *, token: str = "", ca_file: str | None = None) -> None:
        self.url = url
        self._token = token
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if url.startswith("https://"):  # verified like the target (--ca), whatever the target's scheme
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
        self._opener = urllib.request.build_opener(*handlers)

    def read_rss(self) -> tuple[float | None, str]:
        """(RSS in bytes, "") or (None, why it could not be read)."""
        headers = {"Accept": "text/plain", "User-Agent": "herald-loadtest"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        # The URL's scheme was checked to be http(s) (options.py), so no file: or custom scheme here.
        request = urllib.request.Request(self.url, headers=headers)  # noqa: S310
        try:
            with self._opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
                body = response.read(MAX_METRICS_BYTES)
        except urllib.error.HTTPError as error:
            hint = ""
            if error.code in (401, 403):
                hint = (
                    " (set HERALD_LOADTEST_METRICS_TOKEN to the server's HERALD_METRICS_TOKEN, or run from "
                    "the server's host)"
                    if not self._token
                    else " (the token in HERALD_LOADTEST_METRICS_TOKEN was refused)"
                )
            return None, f"HTTP {error.code}{hint}"
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            return None, f"{type(error).__name__}: {reason}"[:200]
        value = prometheus_value(body.decode("utf-8", errors="replace"), RSS_METRIC)
        if value is None:
            return None, f"no {RSS_METRIC} in the answer (not a Prometheus /metrics page?)"
        return value, ""
