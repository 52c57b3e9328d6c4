"""What a user watching a long sync sees: steady progress lines and one summary per stream."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from source_segment_profile.api_client import RequestCounters
from source_segment_profile.masking import mask_id_list
from source_segment_profile.rate_budget import RateBudget

# Often enough to show a sync is alive, rare enough not to drown the log (never per record).
PROGRESS_INTERVAL_SECONDS = 5.0


@dataclass
class StreamProgress:
    stream: str
    total_profiles: Optional[int]  # None: not known in advance (a listing of every user)
    counters: RequestCounters
    budget: RateBudget
    logger: logging.Logger
    interval_seconds: float = PROGRESS_INTERVAL_SECONDS
    clock: Callable[[], float] = time.monotonic
    profiles_done: int = 0
    unchanged: int = 0  # profiles skipped as unchanged since the stream last read them
    skips_unchanged: bool = False  # this pass may skip them: the lines say how many it did
    records: int = 0
    pages: int = 0
    not_found: list[str] = field(default_factory=list)
    unmatchable_ids: list[str] = field(default_factory=list)  # configured ids Segment never matches
    label: str = ""  # what the lines name, when it is not the stream itself
    notes: list[str] = field(default_factory=list)  # a stream's own figures, for its summary line

    def __post_init__(self) -> None:
        self._started = self.clock()
        self._last_line = self._started
        self._requests_at_start = self.counters.get(self.stream, "requests")

    def records_read(self, records: int) -> None:
        self.records += records
        self.log_if_due()

    def profile_done(self, pages: int, found: bool, external_id: str, unchanged: bool = False) -> None:
        self.profiles_done += 1
        self.pages += pages
        self.unchanged += unchanged
        if not found:
            self.not_found.append(external_id)
        self.log_if_due()

    def log_if_due(self) -> None:
        now = self.clock()
        if now - self._last_line < self.interval_seconds:
            return
        self._last_line = now
        elapsed = now - self._started
        rate = self._requests() / elapsed if elapsed > 0 else 0.0
        if self.total_profiles is None:
            done, eta = f"{self.profiles_done} profiles", "total not known (listing every user)"
        else:
            left = self.total_profiles - self.profiles_done
            done = f"{self.profiles_done}/{self.total_profiles} profiles"
            eta = f"~{left * elapsed / self.profiles_done:.0f} s left" if self.profiles_done else "estimating time left"
        skipped = f" ({self.unchanged} skipped as unchanged)" if self.skips_unchanged else ""
        self.logger.info(
            f"Progress {self.label or self.stream}: {done}{skipped}, {self.records} records, "
            f"{rate:.1f} requests/s of a {self.budget.max_rate:g}/s budget, {self._rate_now()}, "
            f"{self.counters.get(self.stream, 'rate_limited')} rate-limited (429), "
            f"{self.counters.get(self.stream, 'retries')} retries, {eta}."
        )

    def summary(self) -> str:
        duration = self.clock() - self._started
        not_found = f" ({mask_id_list(self.not_found)})" if self.not_found else ""
        skipped = f"{self.unchanged} skipped as unchanged (metadata not moved since last read), " if self.skips_unchanged else ""
        line = (
            f"Summary {self.label or self.stream}: {self.profiles_done - len(self.not_found) - self.unchanged} profiles read, "
            f"{skipped}{len(self.not_found)} not found{not_found}, {self.records} records, {self._requests()} requests, "
            f"{self.pages} pages, {self.counters.get(self.stream, 'rate_limited')} rate-limited (429), "
            f"{self.counters.get(self.stream, 'retries')} retries, {self._rate_now()}, {duration:.1f} s."
        )
        if self.unmatchable_ids:
            line += f" {unmatchable_ids_warning(self.unmatchable_ids)}"
        for note in self.notes:
            line += f" {note}"
        self.logger.info(line)
        return line

    def _rate_now(self) -> str:
        """The shared rate as it stands (other streams' 429s cut it too): what a platform operator
        watching a contended space wants to see."""
        paused = f", paused {self.budget.seconds_paused:.0f} s for Retry-After" if self.budget.seconds_paused else ""
        return f"rate now {self.budget.rate:.1f}/s after {self.budget.cuts} cuts{paused}"

    def _requests(self) -> int:
        return self.counters.get(self.stream, "requests") - self._requests_at_start


def unmatchable_ids_warning(external_ids: list[str]) -> str:
    return (
        f"{len(external_ids)} configured ids have upper-case letters or surrounding whitespace, which Segment never "
        f"matches (it matches lower-case ids only): {mask_id_list(external_ids)}; they were read as given."
    )
