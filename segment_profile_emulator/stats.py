"""Counters of profile requests, a bounded request log, and the waits that 429s with Retry-After
told their clients (requests_during_retry_after)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, NamedTuple

from .faults import FAULT_NAMES
from .routes import ENDPOINT_NAMES

if TYPE_CHECKING:
    from .answers import Outcome
    from .faults import RetryAfter

REQUEST_LOG_SIZE = 200_000


class WaitWindow(NamedTuple):
    """What a 429 with Retry-After told its client: do not come back before `until` (wall clock)."""

    start: float
    until: float


class EmulatorStats:
    """Counters of profile requests (admin routes are not counted) and a bounded request log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests_total = 0
            self._by_endpoint = Counter({name: 0 for name in ENDPOINT_NAMES})
            self._by_status: Counter[str] = Counter()
            self._successful = 0
            self._rate_limited = 0
            self._faults = Counter({name: 0 for name in FAULT_NAMES})
            self._arrived = 0
            self._peak_in_flight = self._in_flight
            self._during_retry_after = 0
            self._wait_windows: dict[str, list[WaitWindow]] = {}
            self._first_arrival: float | None = None
            self._last_finish: float | None = None
            self._log: deque[dict] = deque(maxlen=REQUEST_LOG_SIZE)

    @property
    def first_arrival(self) -> float | None:
        """When the first profile request since startup or the last reset arrived (wall clock)."""
        return self._first_arrival

    def request_started(self, arrival: float) -> int:
        """The request's number since startup or the last reset, 1 for the first."""
        with self._lock:
            self._in_flight += 1
            self._arrived += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
            if self._first_arrival is None:
                self._first_arrival = arrival
            return self._arrived

    def arrived_in_space(self, space_id: str, arrival: float) -> None:
        """Counts a request that arrived while a Retry-After told its client to wait.

        Exact, however threads are scheduled: a window's start is read under the lock this check
        holds, so a request checked before a window opened also arrived before it started."""
        with self._lock:
            windows = [window for window in self._wait_windows.get(space_id, []) if window.until > arrival]
            self._wait_windows[space_id] = windows
            if any(window.start <= arrival for window in windows):
                self._during_retry_after += 1

    def open_wait_window(self, space_id: str, retry_after: RetryAfter) -> WaitWindow | None:
        """Opens the wait a 429 with Retry-After is about to tell, just before its bytes are written
        (none if the header tells no wait a client can read).

        Every profile request that arrives from now until the wait is over counts in
        requests_during_retry_after: no grace for requests the client already had on their way,
        since a client that keeps requests in flight past a 429 does not honour it. The window
        opens as the 429 is handed to the socket rather than after: a thread descheduled between
        its write and this call must not hide a request the client sent on reading the 429."""
        with self._lock:
            start = time.time()
            until = retry_after.window_end(start)
            if until is None:
                return None
            window = WaitWindow(start, until)
            self._wait_windows.setdefault(space_id, []).append(window)
            return window

    def withdraw_wait_window(self, space_id: str, window: WaitWindow) -> None:
        """The 429 could not be written: nobody was told to wait."""
        with self._lock:
            windows = self._wait_windows.get(space_id, [])
            if window in windows:
                windows.remove(window)

    def request_finished(self, outcome: Outcome, arrival: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self._requests_total += 1
            if outcome.endpoint:
                self._by_endpoint[outcome.endpoint] += 1
            if outcome.status is not None:
                self._by_status[str(outcome.status)] += 1
                self._successful += 200 <= outcome.status < 300
            self._rate_limited += outcome.status == 429 and "429" not in outcome.faults
            self._faults.update(outcome.faults)
            self._last_finish = time.time()
            self._log.append(
                {
                    "endpoint": outcome.endpoint,
                    "external_id": outcome.external_id,
                    "query": outcome.query,
                    "status": outcome.status,
                    "t": arrival,
                }
            )

    def snapshot(self) -> dict:
        with self._lock:
            elapsed = 0.0 if self._first_arrival is None or self._last_finish is None else self._last_finish - self._first_arrival
            arrivals = [entry["t"] for entry in self._log]
            counters = {
                "requests_total": self._requests_total,
                "successful_requests": self._successful,
                "by_endpoint": dict(self._by_endpoint),
                "by_status": dict(self._by_status),
                "rate_limited_429": self._rate_limited,
                "faults": dict(self._faults),
                "in_flight": self._in_flight,
                "peak_in_flight": self._peak_in_flight,
                "requests_during_retry_after": self._during_retry_after,
                "elapsed_seconds": round(elapsed, 6),
            }
        # outside the lock: sorting a long log would stall every request meanwhile
        return {**counters, "peak_requests_per_second": _peak_in_any_second(sorted(arrivals))}

    def requests(self) -> list[dict]:
        with self._lock:
            return list(self._log)


def _peak_in_any_second(sorted_times: list[float]) -> int:
    """The most requests that arrived within any one-second window."""
    peak = first = 0
    for last, moment in enumerate(sorted_times):
        while moment - sorted_times[first] >= 1.0:
            first += 1
        peak = max(peak, last - first + 1)
    return peak
