"""Connection churn for a load test: when to close a client (`ChurnSchedule`) and which one
(`ChurnPicker`). The runner closes the chosen client, waits `--churn-gap` seconds and reconnects it,
resuming from the last cursor it processed (docs/protocol.md, "Cursors and resuming")."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

# The churn loop wakes at most every 50 ms: at high churn rates several clients leave per wake-up
# instead of one wake-up per client (20 wake-ups per second cost nothing next to the handshakes).
MIN_TICK_SECONDS = 0.05


class ChurnSchedule:
    """`rate` closes per second, spread evenly: the k-th (from 1) is due `k / rate` s after the start.
    If the loop woke up late, everything due is returned at once, but never more than one second's
    worth: the rest is dropped (and counted in `dropped`), so a stalled loop cannot cause a burst."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.done = 0  # closes handed out or dropped
        self.dropped = 0
        self.burst = max(1, math.ceil(rate))

    def due(self, elapsed: float) -> int:
        """How many clients to close now, `elapsed` seconds after the start."""
        owed = math.floor(elapsed * self.rate + 1e-9) - self.done
        if owed <= 0:
            return 0
        self.done += owed
        taken = min(owed, self.burst)
        self.dropped += owed - taken
        return taken

    def wait(self, elapsed: float) -> float:
        """Seconds to sleep before the next close is due (at least MIN_TICK_SECONDS)."""
        return max(MIN_TICK_SECONDS, (self.done + 1) / self.rate - elapsed)


class ChurnPicker:
    """Round-robin over the clients in a shuffled order: random-looking, yet every client is churned
    equally often over a long soak (pure random choice would leave some never churned). Each pick
    looks at most at every client once."""

    def __init__(self, size: int, rng: random.Random | None = None) -> None:
        self.order = list(range(size))
        (rng or random.Random()).shuffle(self.order)
        self.position = 0

    def pick(self, eligible: Callable[[int], bool]) -> int | None:
        """The next client index for which `eligible(index)` holds, or None if there is none."""
        for _ in range(len(self.order)):
            index = self.order[self.position]
            self.position = (self.position + 1) % len(self.order)
            if eligible(index):
                return index
        return None
