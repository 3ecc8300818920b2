"""What the attack suite tried and measured, printed at the end of the run by the terminal-summary
hook in tests/security/conftest.py: inputs tried per category, floods held, the bystander's
delivery latency during each flood against a quiet baseline, and losses (which must be 0)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

REPRODUCE = (
    "env -u DATABASE_URL -u REDIS_URL .venv/bin/pytest -q tests/security   # SQLite, in-memory layer\n"
    "DATABASE_URL=postgres://herald:herald@127.0.0.1:5432/herald REDIS_URL=redis://127.0.0.1:6379/15 "
    "HERALD_REDIS_PREFIX=herald-test .venv/bin/pytest -q tests/security   # PostgreSQL + Redis"
)


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: with few samples p99 is the maximum)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class Phase:
    """The bystander's view of one period: quiet, or one flood."""

    name: str
    latencies: list[float]
    published: int
    lost: int
    failed_publishes: int
    disconnects: int

    def line(self) -> str:
        p50, p99 = percentile(self.latencies, 0.5), percentile(self.latencies, 0.99)
        return (
            f"{self.name:<34} n={len(self.latencies):>3}  p50={p50 * 1000:7.1f} ms  p99={p99 * 1000:7.1f} ms  "
            f"max={max(self.latencies, default=float('nan')) * 1000:7.1f} ms  lost={self.lost}  "
            f"failed publishes={self.failed_publishes}  disconnects={self.disconnects}"
        )


@dataclass
class Figures:
    inputs: Counter[str] = field(default_factory=Counter)
    floods: list[str] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def tried(self, category: str, count: int = 1) -> None:
        self.inputs[category] += count

    def flood(self, name: str, *, held: bool, **figures: Any) -> None:
        details = ", ".join(f"{key}={value}" for key, value in figures.items())
        self.floods.append(f"{'held' if held else 'NOT HELD'}  {name}: {details}")

    def phase(self, phase: Phase) -> None:
        self.phases.append(phase)

    def lines(self) -> list[str]:
        if not (self.inputs or self.floods or self.phases):
            return []
        out = [f"inputs tried per category ({sum(self.inputs.values())} in all):"]
        out += [f"  {category:<44} {count:>6}" for category, count in sorted(self.inputs.items())]
        if self.floods:
            out.append("floods against a real server process (uvicorn, the default):")
            out += [f"  {line}" for line in self.floods]
        if self.phases:
            out.append("bystander (tenant B, same server process): publish -> deliver latency")
            out += [f"  {phase.line()}" for phase in self.phases]
            lost = sum(phase.lost for phase in self.phases)
            total = sum(phase.published for phase in self.phases)
            failed = sum(phase.failed_publishes for phase in self.phases)
            disconnects = sum(phase.disconnects for phase in self.phases)
            out.append(
                f"  losses: {lost} of {total} published (must be 0); failed publishes: {failed}; "
                f"disconnects: {disconnects}"
            )
        out += [f"note: {note}" for note in self.notes]
        out.append("reproduce:")
        out += [f"  {line}" for line in REPRODUCE.splitlines()]
        return out


FIGURES = Figures()
