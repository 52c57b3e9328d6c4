"""The emulator's settings (EmulatorSettings), as the CLI sets them and POST /_emulator/faults
changes them, and their validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from .faults import EXCLUSIVE_FAULTS, check_header_text
from .formats import is_count
from .options import DatasetOptions, parse_late_event_hours
from .rate_limit import parse_rate_limit_schedule

MAX_PAGE_LIMIT = 200  # `limit` is 1..200 (seed spec); Segment's docs: "traits allow 200"
RETRY_AFTER_MODES = ("none", "seconds", "http-date")


@dataclass
class EmulatorSettings:
    """Everything the CLI configures (each field is the flag --field-name). The knobs in
    RUNTIME_KNOBS can also change while running (POST /_emulator/faults {"knob": value}); the data
    knobs (DATA_KNOBS) shape the dataset built at startup (see options.DatasetOptions).

    API behaviour:
    - gzip: gzip-compress Profile API answers (Content-Encoding: gzip, Vary: Accept-Encoding)
      for requests whose Accept-Encoding accepts gzip, as the HTTP servers in front of Segment do.
    - max_list_limit: the largest `limit` of events, external_ids, links and the profile listing
      (1..200; 200 = the seed spec, 100 = "list methods take 1..100" in Segment's docs). Above it:
      400 validation_error "limit must be between 1 and N". Traits always take 1..200; the profile
      listing never more than 100.
    - no_list_method: GET .../collections/users/profiles answers 404 not_found, as in a space
      where the list method is not available.

    Rate limit (a token bucket per space, counted in requests/s):
    - rate_limit: requests/s (Segment: 100/s per space); 0 = off.
    - rate_burst: bucket size; None = one second's worth of the rate in force.
    - rate_limit_schedule: "SECONDS:RATE[,SECONDS:RATE...]": the other callers of a space sharing
      its budget. The limit becomes RATE once SECONDS have passed since the first profile request
      after startup or after the last POST /_emulator/stats/reset; before the first step it is
      rate_limit. A step reached overrides rate_limit (post rate_limit_schedule "" with a new
      rate_limit to take the limit back). When the limit changes the bucket keeps its tokens,
      capped at the new burst. The limit in force is `current_rate_limit` in the stats.
    - retry_after: what a 429 carries: "none" (Segment documents no Retry-After), "seconds" or
      "http-date" (a wall-clock instant, as clients read it against their own clock, even though
      Date follows the emulated clock).
    - retry_after_value: when set, every 429 (rate limit or fault_429) carries exactly
      `Retry-After: <this text>` whatever retry_after says: "40", "1e9", "inf", "soon" or a date
      such as "Fri, 31 Dec 9999 23:59:59 GMT" are sent as they are. requests_during_retry_after
      counts what a lenient client reads in it: a number (any float syntax) or an HTTP date tells
      a wait (at most a year), anything else none.

    Faults, probabilities per request (the first five exclusive: together at most 1):
    - fault_429: a 429 storm on top of the rate limit; fault_5xx: 500/502/503 with an error body.
    - fault_reset: hang up (FIN) before any answer.
    - fault_truncate: the full Content-Length, half the body, "Connection: close" and FIN: the
      client reads a short body.
    - fault_reset_mid_body: the same half answer, unannounced, then RST (SO_LINGER 0): the
      client's read fails with ECONNRESET. (Refused connections need no knob: use a closed port.)
    - fault_slow: slow_seconds more; latency_ms and latency_spread delay every answer.
    - fault_empty_has_more: an answer with a cursor (traits, events, external_ids, links) becomes
      a page without items (`"traits": {}`, `"data": []`) whose cursor says has_more, its `next`
      (and `url`) serving the page it replaced: a client that follows it loses nothing, one that
      stops there loses the rest. An answer to such a `next` is never emptied, so even at 1 a
      listing ends (each of its pages after an empty one). Not for the profile listing, metadata,
      or user links without a cursor.
    - empty_has_more_once: empty each profile's route at most once since startup or the last
      stats reset; with fault_empty_has_more 1, exactly the first answer of each.

    Profiles that vanish mid-run (404 not_found "Profile was not found." on all their routes,
    under every id, as for an unknown profile): the first vanish_users users and the first
    vanish_accounts accounts in the ground truth's order (more than there are: all of them),
    from the profile request after the first vanish_after_requests (0: from the start), counted
    since startup or the last stats reset. GET /_emulator/vanishing-profiles names them. The
    profile listing and other profiles' links still name them, as a client read them before.

    Computed traits that Segment recomputes without a message:
    - computed_traits_epoch: a whole number; changing it gives every computed trait (class
      computed_trait) of every profile the values of the new epoch (0: as built, any other: drawn
      from an RNG seeded with it) and moves their `updated_at` to the emulated clock at the
      change. The profiles' metadata does not move: no message was involved.

    Messages that reach users while running (not a knob: data, so a stats reset keeps them):
    POST /_emulator/messages delivers track, identify or group messages to chosen users, or to a
    fraction of them, at the emulated clock's now (messages.py). Each shows among the user's
    events and moves its metadata; an identify also sets the trait last_identified_at and adds an
    anonymous id; a group links the user to the next account it was not linked to.

    Data (not runtime knobs): lone_surrogate_trait, events_per_user, heavy_user_events,
    late_events ("6,23,72": latenesses in hours) and future_events, as in DatasetOptions.
    """

    host: str = "127.0.0.1"
    port: int = 0
    space_id: str = "spa_demo"
    token: str = "emulator-token"
    latency_ms: float = 0.0
    latency_spread: float = 0.5
    rate_limit: float = 100.0  # requests/s per space (Segment product limits); 0 = off
    rate_burst: float | None = None  # None: one second's worth of the rate
    rate_limit_schedule: str = ""  # "SECONDS:RATE,...": the rate left by the space's other callers
    retry_after: str = "none"
    retry_after_value: str = ""  # "": retry_after says what a 429 carries
    fault_429: float = 0.0
    fault_5xx: float = 0.0
    fault_reset: float = 0.0
    fault_truncate: float = 0.0
    fault_reset_mid_body: float = 0.0
    fault_slow: float = 0.0
    fault_empty_has_more: float = 0.0
    empty_has_more_once: bool = False
    vanish_users: int = 0
    vanish_accounts: int = 0
    vanish_after_requests: int = 0
    slow_seconds: float = 2.0
    fault_seed: int = 0
    gzip: bool = False
    max_list_limit: int = MAX_PAGE_LIMIT
    no_list_method: bool = False
    computed_traits_epoch: int = 0
    lone_surrogate_trait: bool = False
    events_per_user: int | None = None
    heavy_user_events: int | None = None
    late_events: str = ""  # "6,23,72": hours between an event's timestamp and its arrival
    future_events: bool = False

    def update(self, **knobs: Any) -> None:
        """Change runtime knobs, validating all of them before changing any."""
        unknown = set(knobs) - set(RUNTIME_KNOBS)
        if unknown:
            raise ValueError(f"unknown knobs: {sorted(unknown)}; known: {list(RUNTIME_KNOBS)}")
        candidate = EmulatorSettings(**{**asdict(self), **knobs})
        candidate.validate()
        for name in knobs:
            setattr(self, name, getattr(candidate, name))

    def validate(self) -> None:
        exclusive = [f"fault_{name}" for name in EXCLUSIVE_FAULTS]
        for name in (*exclusive, "fault_slow", "fault_empty_has_more"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be a probability between 0 and 1")
        if sum(getattr(self, name) for name in exclusive) > 1:
            raise ValueError(f"{' + '.join(exclusive)} must not exceed 1")
        for name in ("latency_ms", "latency_spread", "rate_limit", "slow_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.latency_spread > 1:
            raise ValueError("latency_spread must be between 0 and 1")
        if self.rate_burst is not None and self.rate_burst < 1:
            raise ValueError("rate_burst must be at least 1")
        if self.retry_after not in RETRY_AFTER_MODES:
            raise ValueError(f"retry_after must be one of {RETRY_AFTER_MODES}")
        check_header_text("retry_after_value", self.retry_after_value)
        for name in ("gzip", "no_list_method", "empty_has_more_once"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")
        for name in ("vanish_users", "vanish_accounts", "vanish_after_requests", "computed_traits_epoch"):
            if not is_count(getattr(self, name)):
                raise ValueError(f"{name} must be a whole number >= 0")
        if isinstance(self.max_list_limit, bool) or not isinstance(self.max_list_limit, int) or not 1 <= self.max_list_limit <= MAX_PAGE_LIMIT:
            raise ValueError(f"max_list_limit must be a whole number between 1 and {MAX_PAGE_LIMIT}")
        if not isinstance(self.rate_limit_schedule, str):
            raise ValueError('rate_limit_schedule must be a string such as "30:30,60:50"')
        parse_rate_limit_schedule(self.rate_limit_schedule)
        if not isinstance(self.late_events, str):
            raise ValueError('late_events must be a string such as "6,23,72"')
        self.dataset_options()

    def dataset_options(self) -> DatasetOptions:
        """The data knobs, validated, as the dataset takes them."""
        return DatasetOptions(
            lone_surrogate_trait=self.lone_surrogate_trait,
            events_per_user=self.events_per_user,
            heavy_user_events=self.heavy_user_events,
            late_event_hours=parse_late_event_hours(self.late_events),
            future_events=self.future_events,
        )

    def burst_for(self, rate: float) -> float:
        """The bucket size at `rate`: rate_burst, or one second's worth of the rate."""
        return max(1.0, self.rate_burst if self.rate_burst is not None else rate)

    @property
    def effective_burst(self) -> float:
        return self.burst_for(self.rate_limit)

    def runtime_knobs(self) -> dict:
        return {name: getattr(self, name) for name in RUNTIME_KNOBS}


DATA_KNOBS = ("lone_surrogate_trait", "events_per_user", "heavy_user_events", "late_events", "future_events")
RUNTIME_KNOBS = tuple(
    item.name
    for item in fields(EmulatorSettings)
    if item.name not in ("host", "port", "space_id", "token", "fault_seed", *DATA_KNOBS)
)
