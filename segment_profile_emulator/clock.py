"""The emulated clock: what events are visible at, and what every answer's Date says."""

from __future__ import annotations

import threading


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
