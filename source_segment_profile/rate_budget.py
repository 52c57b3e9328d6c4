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
        self._paused_until = self._next_slot
        self._pauses = 0
        self.requests_granted = 0
        self.seconds_paused = 0.0

    def acquire(self) -> None:
        """Blocks until this caller may send one request.

        A thread that slept towards its slot looks again when it wakes: if a pause began
        meanwhile (a 429 seen by another worker), it waits that out too before sending.
        """
        with self._lock:
            now = self._clock()
            # A budget left idle does not bank slots for a later burst.
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.interval
            self.requests_granted += 1
            pauses_seen = self._pauses
        if slot > now:
            self._sleep(slot - now)
        with self._lock:
            wait = self._paused_until - self._clock() if self._pauses != pauses_seen else 0.0
        if wait > 0:
            self._sleep(wait)

    def snapshot(self) -> tuple[float, float, int, int, float]:
        """What a reader process hands back, so that the next stream goes on from where it ended."""
        with self._lock:
            return (self._next_slot, self._paused_until, self._pauses, self.requests_granted, self.seconds_paused)

    def restore(self, snapshot: tuple[float, float, int, int, float]) -> None:
        with self._lock:
            self._next_slot, self._paused_until, self._pauses, self.requests_granted, self.seconds_paused = snapshot

    def pause_for(self, seconds: float) -> None:
        """No slot is granted to anyone for `seconds` from now (a 429's Retry-After or backoff)."""
        with self._lock:
            now = self._clock()
            resume_at = now + seconds
            self._pauses += 1
            self._paused_until = max(self._paused_until, resume_at)
            if resume_at > self._next_slot:
                self.seconds_paused += resume_at - max(self._next_slot, now)
                self._next_slot = resume_at
