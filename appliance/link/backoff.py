"""Reconnection back-off of OCPP 2.0.1 Part 4 §5.3 (sans-IO).

The first retry waits RetryBackOffWaitMinimum plus a random 0..RetryBackOffRandomRange; each further failure
doubles the previous base wait, at most RetryBackOffRepeatTimes times, with a fresh random part each time;
after that the last wait repeats. A successful connection resets it. The settings are read on every delay so
a SetVariables takes effect on the next attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffSettings:
    wait_minimum: float
    random_range: float
    repeat_times: int


class Backoff:
    def __init__(self, settings: Callable[[], BackoffSettings], rng: random.Random | None = None) -> None:
        self._settings = settings
        self._rng = rng or random.Random()
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures

    def next_delay(self) -> float:
        """The wait before the next attempt, counting one more failure."""
        s = self._settings()
        doublings = min(self._failures, max(s.repeat_times, 0))
        self._failures += 1
        factor: int = 2**doublings  # typeshed says Any: a negative exponent would give a float
        base = max(s.wait_minimum, 0) * factor
        jitter = self._rng.uniform(0, s.random_range) if s.random_range > 0 else 0.0
        return base + jitter

    def reset(self) -> None:
        self._failures = 0
