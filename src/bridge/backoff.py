"""Capped exponential backoff with full jitter (the AWS "full jitter" scheme, as in aiomqtt v3)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for consecutive failures: uniform in ``[floor, min(cap, base * 2**n)]``.

    The floor keeps a failing peer from being hammered in a tight loop even when the jitter
    draws close to zero.
    """

    base: float = 0.5
    cap: float = 30.0
    floor: float = 0.1
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return max(self.floor, self.rng.uniform(0, ceiling))

    def reset(self) -> None:
        self.attempt = 0
