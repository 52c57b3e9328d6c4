"""Request pacing: one adaptive request rate shared by every stream and worker thread of a sync.

Segment allows 100 requests/s per space and shares that limit with every other caller of the
space (personalisation services, other jobs), so the rate left for a sync is unknown and changes
while it runs. Like AWS SDKs' adaptive retry mode (botocore/retries/adaptive.py), the connector
treats a 429 as "slow down", not only "wait": it cuts its rate multiplicatively and grows it back
along a cubic curve (TCP CUBIC), never above the configured budget, never below a floor. The
parts are small and take their clock as a parameter, so tests drive time by hand.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Optional

# A 429 leaves this share of the rate that drew it (botocore's CUBIC beta).
CUT_FACTOR = 0.7
# Seconds after a cut until the rate is back where it was cut from. botocore's constant (0.4, in
# absolute requests/s) would probe a 20/s limit again within 2.5 s; each probe that drains the
# server's bucket costs a 429 (and, with Retry-After, a pause of at least 1 s for everyone), so
# the curve is scaled to the rate and the plateau near the old rate lasts this long.
RECOVERY_SECONDS = 8.0
# Never slower than this, however many 429s: a request a second still finds out when the space
# frees up. Below it, a request that keeps drawing 429s backs off on its own (api_client).
FLOOR_REQUESTS_PER_SECOND = 1.0
# The window over which the rate the server accepted is measured when a 429 arrives.
ACCEPTED_RATE_WINDOW_SECONDS = 1.0


def wait_unless_stopped(seconds: float, stopping: Optional[threading.Event] = None) -> None:
    """time.sleep that ends early once `stopping` is set: a stream that failed wakes its workers."""
    if stopping is None:
        time.sleep(seconds)
    else:
        stopping.wait(seconds)


class CubicRate:
    """Pure arithmetic: the send rate at a time, given the last cut (TCP CUBIC, relative form).

    After a cut from `peak` at `epoch`, the rate is peak * (1 - (1 - CUT_FACTOR) * (1 - t/K)^3)
    for t = now - epoch: it climbs quickly, flattens near the peak at t = K (RECOVERY_SECONDS),
    then probes above it ever faster, so a limit that rose is found again.
    """

    def __init__(self, max_rate: float, floor: float):
        self.max_rate = max_rate
        self.floor = min(floor, max_rate)
        self._peak: Optional[float] = None  # None: never cut, run at max_rate
        self._epoch = 0.0

    def at(self, now: float) -> float:
        if self._peak is None:
            return self.max_rate
        progress = (now - self._epoch) / RECOVERY_SECONDS
        rate = self._peak * (1 - (1 - CUT_FACTOR) * (1 - progress) ** 3)
        return max(self.floor, min(self.max_rate, rate))

    def cut(self, peak: float, epoch: float) -> None:
        """A 429 at a send rate of `peak`; the curve restarts at `epoch` (the end of any pause)."""
        self._peak = max(self.floor, min(self.max_rate, peak))
        self._epoch = epoch


class AcceptedRate:
    """Requests/s the server answered without a 429 over the last second: at a 429, the best
    estimate of the rate the space has left for us (it just refused more than that)."""

    def __init__(self, window: float = ACCEPTED_RATE_WINDOW_SECONDS):
        self._window = window
        self._times: collections.deque[float] = collections.deque()

    def record(self, now: float) -> None:
        self._times.append(now)
        self._forget_before(now - self._window)

    def per_second(self, now: float, since: float) -> Optional[float]:
        """The measured rate over the window, or None when less than half a window was unpaused."""
        start = max(now - self._window, since)
        if now - start < self._window / 2:
            return None
        self._forget_before(start)
        return len(self._times) / (now - start)

    def _forget_before(self, start: float) -> None:
        while self._times and self._times[0] < start:
            self._times.popleft()


class RateBudget:
    """Hands out evenly spaced request slots across all threads at an adaptive rate.

    - `acquire(stopping)` blocks until the caller may send, and returns the time it was let go;
      it returns at once when `stopping` is set (the caller then sends nothing).
    - `accepted()` after every answer that was not a 429.
    - `throttled(sent_at, retry_after)` after a 429. The rate is cut once per congestion event:
      a 429 for a request sent before the last cut says nothing new (the cut was not yet in
      force when it left). A Retry-After pauses every thread for that long, because the limit is
      per space; afterwards slots resume at the rate's spacing from the pause's end, never all
      at once (a thread that was granted a slot before the pause takes a new one).
    """

    def __init__(
        self,
        requests_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float, Optional[threading.Event]], None] = wait_unless_stopped,
        floor: float = FLOOR_REQUESTS_PER_SECOND,
    ):
        self.max_rate = requests_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate = CubicRate(requests_per_second, floor)
        self._accepted = AcceptedRate()
        now = clock()
        self._next_slot = now
        self._paused_until = now
        self._changes = 0  # cuts and pauses so far: a waiting thread whose count is stale queues again
        self._last_cut_at = float("-inf")
        # For the progress and summary lines: what a platform operator watching a shared space reads.
        self.cuts = 0
        self.seconds_paused = 0.0

    @property
    def rate(self) -> float:
        """The current send rate, requests/s."""
        with self._lock:
            return self._rate.at(self._clock())

    def acquire(self, stopping: Optional[threading.Event] = None) -> float:
        while True:
            if stopping is not None and stopping.is_set():
                return self._clock()
            with self._lock:
                now = self._clock()
                slot = max(now, self._next_slot, self._paused_until)
                # A budget left idle does not bank slots for a later burst.
                self._next_slot = slot + 1.0 / self._rate.at(slot)
                changes_seen = self._changes
            if slot > now:
                self._sleep(slot - now, stopping)
            with self._lock:
                if self._changes != changes_seen:
                    # A cut or a pause came while this thread waited: its slot was spaced for the
                    # old rate (or falls in the pause), so it queues again at the new spacing.
                    continue
                return slot

    def accepted(self) -> None:
        with self._lock:
            self._accepted.record(self._clock())

    def throttled(self, sent_at: float, retry_after_seconds: Optional[float] = None) -> None:
        with self._lock:
            now = self._clock()
            new_event = sent_at >= self._last_cut_at
            if new_event:
                unpaused_since = self._paused_until if self._paused_until <= now else now
                measured = self._accepted.per_second(now, since=unpaused_since)
                current = self._rate.at(now)
                peak = min(current, measured) if measured else current
            changes_before = self._changes
            if retry_after_seconds and now + retry_after_seconds > self._paused_until:
                resume_at = now + retry_after_seconds
                self.seconds_paused += resume_at - max(now, self._paused_until)
                self._paused_until = resume_at
                self._changes += 1
            if new_event:
                resume_at = max(now, self._paused_until)
                self._rate.cut(peak, epoch=resume_at)
                self._last_cut_at = now
                self._changes += 1
                self.cuts += 1
            if self._changes != changes_before:
                # Slots granted before this answer were spaced for the old rate: from here, one
                # slot at a time at the new spacing, starting when any pause ends. (A 429 that
                # changed nothing leaves the queue alone: its waiting threads keep their slots.)
                self._next_slot = max(now, self._paused_until)
