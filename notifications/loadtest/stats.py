"""Measurements of a load test: latency samples and percentiles, per-client seen sets (losses and
duplicates), and the report printed at the end (human-readable or JSON)."""

from __future__ import annotations

import random
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any

# Latency samples kept: 1,000,000 doubles (8 MB). Beyond that, reservoir sampling keeps a uniform
# sample of every delivery, so the percentiles stay unbiased; the maximum is always exact.
LATENCY_SAMPLES_KEPT = 1_000_000


class LatencyRecorder:
    def __init__(self, capacity: int = LATENCY_SAMPLES_KEPT, seed: int = 1) -> None:
        self.capacity = capacity
        self.samples = array("d")
        self.count = 0
        self.maximum = 0.0
        self.total = 0.0
        self._random = random.Random(seed)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        if seconds > self.maximum:
            self.maximum = seconds
        if len(self.samples) < self.capacity:
            self.samples.append(seconds)
        else:  # reservoir sampling (Algorithm R)
            slot = self._random.randrange(self.count)
            if slot < self.capacity:
                self.samples[slot] = seconds

    def percentiles_ms(self) -> dict[str, float] | None:
        if not self.count:
            return None
        ordered = sorted(self.samples)

        def at(fraction: float) -> float:
            return round(1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)

        return {
            "count": self.count,
            "mean": round(1000 * self.total / self.count, 2),
            "p50": at(0.50),
            "p90": at(0.90),
            "p95": at(0.95),
            "p99": at(0.99),
            "max": round(1000 * self.maximum, 2),
            "sampled": self.count > len(self.samples),
        }


class SeenSet:
    """The sequence numbers one client received, as a growable bitmap (one bit per message)."""

    __slots__ = ("bits", "duplicates", "highest", "unique")

    def __init__(self) -> None:
        self.bits = bytearray(16)
        self.unique = 0
        self.duplicates = 0
        self.highest = -1

    def add(self, seq: int) -> bool:
        """Record seq; True if it is the first time."""
        index, mask = seq >> 3, 1 << (seq & 7)
        if index >= len(self.bits):
            self.bits.extend(bytes(max(index + 1, 2 * len(self.bits)) - len(self.bits)))
        if self.bits[index] & mask:
            self.duplicates += 1
            return False
        self.bits[index] |= mask
        self.unique += 1
        if seq > self.highest:
            self.highest = seq
        return True

    def __contains__(self, seq: int) -> bool:
        index = seq >> 3
        return index < len(self.bits) and bool(self.bits[index] & (1 << (seq & 7)))

    def count_in(self, accepted: SeenSet) -> int:
        """How many of `accepted`'s sequence numbers this client received."""
        mine = int.from_bytes(self.bits, "little")
        theirs = int.from_bytes(accepted.bits, "little")
        return (mine & theirs).bit_count()


@dataclass
class Report:
    """Everything the load test measured; `lines()` is the human-readable form, `as_dict()` the JSON."""

    url: str
    topic: str
    run: str
    mode: str
    clients_requested: int
    tokens_minted: int = 0
    token_errors: dict[str, int] = field(default_factory=dict)
    token_seconds: float = 0.0
    clients_connected: int = 0
    connect_errors: dict[str, int] = field(default_factory=dict)
    connect_seconds: float = 0.0
    connects_per_s: float = 0.0
    connect_latency_ms: dict[str, float] | None = None
    publish_seconds: float = 0.0
    published: int = 0
    accepted: int = 0
    publish_errors: dict[str, int] = field(default_factory=dict)
    publishes_per_s: float = 0.0
    publish_latency_ms: dict[str, float] | None = None
    publish_max_lag_ms: float | None = None
    stalled: bool = False
    expected: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    unexpected: int = 0
    clients_incomplete: int = 0  # clients that missed at least one accepted publish
    deliveries_per_s: float = 0.0
    drain_end: str = ""
    drain_seconds: float = 0.0
    latency_ms: dict[str, float] | None = None
    disconnects: dict[str, int] = field(default_factory=dict)
    # --churn: clients closed on purpose and resumed with `since` (see runner.py, "Churn").
    churn: float = 0.0
    churn_gap: float = 0.0
    reconnects: int = 0  # successful resumes
    reconnect_errors: dict[str, int] = field(default_factory=dict)  # failed attempts, by reason
    churn_skipped: int = 0  # closes not made: every client busy, or the loop fell behind
    clients_gone: int = 0  # churned clients that could not reconnect at all (what they missed is lost)
    replayed: int = 0  # first deliveries that arrived in a resume's replay (between welcome and resumed)
    replayed_again: int = 0  # ids a later connection re-sent that an earlier one had delivered (resume seams)
    replay_incomplete: dict[str, int] = field(default_factory=dict)  # `resumed` with recovered false, by reason
    replay_latency_ms: dict[str, float] | None = None
    # The server's RSS from /metrics (server_memory.memory_summary), or why it could not be read.
    metrics_url: str = ""
    server_memory: dict[str, Any] | None = None
    server_memory_error: str = ""
    loadtest_cpu_pct: float = 0.0
    interrupted: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.clients_connected > 0 and self.accepted > 0 and self.lost == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def lines(self) -> list[str]:
        def pct(values: dict[str, float] | None) -> str:
            if not values:
                return "-"
            return (
                f"p50 {values['p50']:.1f}  p95 {values['p95']:.1f}  p99 {values['p99']:.1f}  max {values['max']:.1f} ms"
                f"  (mean {values['mean']:.1f}, {values['count']:,} samples{', sampled' if values['sampled'] else ''})"
            )

        def counts(values: dict[str, int]) -> str:
            return ", ".join(f"{name}: {count:,}" for name, count in sorted(values.items())) or "none"

        out = [
            f"Herald load test {self.run} against {self.url}, topic {self.topic!r}, {self.mode}",
            f"  tokens       {self.tokens_minted:,} minted in {self.token_seconds:.1f} s (errors: "
            f"{counts(self.token_errors)})",
            f"  connect      {self.clients_connected:,}/{self.clients_requested:,} clients in "
            f"{self.connect_seconds:.1f} s = {self.connects_per_s:,.1f} conn/s (errors: {counts(self.connect_errors)})",
            f"               connect + auth: {pct(self.connect_latency_ms)}",
            f"  publish      {self.accepted:,}/{self.published:,} accepted in {self.publish_seconds:.1f} s = "
            f"{self.publishes_per_s:,.1f}/s (errors: {counts(self.publish_errors)})"
            + (" STALLED" if self.stalled else ""),
            f"               request: {pct(self.publish_latency_ms)}"
            + (f"; schedule lag max {self.publish_max_lag_ms:.1f} ms" if self.publish_max_lag_ms is not None else ""),
            f"  deliveries   {self.delivered:,}/{self.expected:,} = {self.deliveries_per_s:,.0f}/s while publishing; "
            f"lost {self.lost:,}, duplicates {self.duplicates:,}, unexpected {self.unexpected:,}"
            + (f"; {self.clients_incomplete:,} clients missed some" if self.clients_incomplete else ""),
            f"               drain: {self.drain_end} after {self.drain_seconds:.1f} s; "
            f"disconnects: {counts(self.disconnects)}",
            f"  latency      publish -> deliver: {pct(self.latency_ms)}"
            + (" (live only: replayed deliveries below)" if self.churn else ""),
        ]
        if self.churn:
            out += [
                f"  churn        {self.churn:g}/s, {self.churn_gap:g} s away: {self.reconnects:,} reconnects "
                f"(failed attempts: {counts(self.reconnect_errors)}; skipped {self.churn_skipped:,}; "
                f"clients gone {self.clients_gone:,})",
                f"               replayed {self.replayed:,} deliveries, again {self.replayed_again:,} "
                f"(incomplete replays: {counts(self.replay_incomplete)})",
                f"               replayed: publish -> deliver: {pct(self.replay_latency_ms)}",
            ]
        out += [
            self._memory_line(),
            f"  this process {self.loadtest_cpu_pct:.0f} % CPU while publishing"
            + (" (near one core: the load test itself may be the bottleneck)" if self.loadtest_cpu_pct > 90 else ""),
        ]
        out = [line for line in out if line]
        if self.interrupted:
            out.append("  interrupted: the run was stopped early (Ctrl-C)")
        if self.error:
            out.append(f"  error        {self.error}")
        out.append(f"  result       {'OK' if self.ok else 'NOT OK'}")
        return out

    def _memory_line(self) -> str:
        memory = self.server_memory
        if memory:
            change = f"{memory['change_mb']:+,.1f} MB" + (
                f" ({memory['change_pct']:+.1f} %)" if memory["change_pct"] is not None else ""
            )
            return (
                f"  server RSS   start {memory['start_mb']:,.1f} MB, end {memory['end_mb']:,.1f} MB, "
                f"max {memory['max_mb']:,.1f} MB: {change}; {len(memory['samples'])} samples of {self.metrics_url}"
                + (f" ({self.server_memory_error})" if self.server_memory_error else "")
            )
        if self.server_memory_error:
            return f"  server RSS   not read from {self.metrics_url}: {self.server_memory_error}"
        return ""
