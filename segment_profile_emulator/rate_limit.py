"""The per-space rate limit: a token bucket, and the schedule by which the space's other callers
change the rate left to a client."""

from __future__ import annotations

import math
import threading


def parse_rate_limit_schedule(text: str) -> tuple[tuple[float, float], ...]:
    """`30:30,60:50` -> ((30.0, 30.0), (60.0, 50.0)); "" -> (). Raises ValueError on anything else."""
    if not text.strip():
        return ()
    steps = []
    for part in text.split(","):
        seconds, colon, rate = part.partition(":")
        try:
            step = (float(seconds), float(rate))
        except ValueError:
            step = None
        if not colon or step is None or not all(math.isfinite(value) and value >= 0 for value in step):
            raise ValueError(
                f"rate_limit_schedule must be SECONDS:RATE[,SECONDS:RATE...] with numbers >= 0, such as 30:30, not {text!r}"
            )
        steps.append(step)
    if any(later[0] <= earlier[0] for earlier, later in zip(steps, steps[1:])):
        raise ValueError("rate_limit_schedule steps must come in increasing SECONDS")
    return tuple(steps)


class SpaceRateLimiter:
    """A token bucket per space: `rate` requests/s with bursts of up to `burst` requests."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def try_acquire(self, space_id: str, rate: float, burst: float, now: float) -> float:
        """0 if the request may pass, else the seconds until the bucket holds a token again."""
        if rate <= 0:
            return 0.0
        with self._lock:
            tokens, last = self._buckets.get(space_id, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1:
                self._buckets[space_id] = (tokens - 1, now)
                return 0.0
            self._buckets[space_id] = (tokens, now)
            return (1 - tokens) / rate
