"""Request pacing: one budget shared by every stream and worker thread of a sync."""

from __future__ import annotations

import threading
import time
from typing import Callable


class RateBudget:
    """Hands out evenly spaced request slots at `requests_per_second`, across all threads.

    Slots are spaced rather than granted in bursts, so a budget at or below the space's limit never
    trips Segment's per-second limiter. A rate-limit answer pauses the whole budget (`pause_for`):
    every thread waits, not only the one that was told to, because the limit is per space.
    """

    def __init__(
        self,
        requests_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = 1.0 / requests_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = clock()
        self.requests_granted = 0
        self.seconds_paused = 0.0

    def acquire(self) -> None:
        """Blocks until this caller may send one request.

        A slot is taken only when it has come, never reserved ahead: a thread that slept towards
        a slot looks again when it wakes, so a pause that began meanwhile (a 429 seen by another
        worker) holds it back too.
        """
        while True:
            with self._lock:
                now = self._clock()
                wait = self._next_slot - now
                if wait <= 0:
                    # A budget left idle does not bank slots for a later burst.
                    self._next_slot = max(now, self._next_slot) + self.interval
                    self.requests_granted += 1
                    return
            self._sleep(wait)

    def pause_for(self, seconds: float) -> None:
        """No slot is granted to anyone for `seconds` from now (a 429's Retry-After or backoff)."""
        with self._lock:
            resume_at = self._clock() + seconds
            if resume_at > self._next_slot:
                self.seconds_paused += resume_at - max(self._next_slot, self._clock())
                self._next_slot = resume_at
