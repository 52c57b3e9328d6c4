"""The emulated clock: what events are visible at, and what every answer's Date says."""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


class EmulatorClock:
    """The emulated "now": it stands still unless advanced, so that runs are reproducible."""

    def __init__(self, now_ms: int):
        self._now_ms = now_ms
        self._lock = threading.Lock()

    @property
    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, seconds: float) -> int:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._now_ms += round(seconds * 1000)
            return self._now_ms

    def tick_after(self, action: Callable[[int], T]) -> T:
        """Runs action(now), then moves the clock 1 ms on, with no other move in between: what the
        action records as arriving at `now` is seen (it arrived before the clock) only once the
        action is done, and the next action gets an instant of its own."""
        with self._lock:
            result = action(self._now_ms)
            self._now_ms += 1
            return result
