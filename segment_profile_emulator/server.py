"""The HTTP server: Segment Profile API routes over a synthetic dataset, with auth, a per-space rate
limit, injectable faults, and admin routes (under /_emulator/, no auth, not counted) for stats, the
clock, fault knobs, ground truth, lookup ids and the profiles that vanish (faults.py holds how the
faults work).

A profile request goes through: Basic auth (401 unauthorized), the route (404 not_found), the space
(403 forbidden: an unknown space id is refused, not hidden), the per-space token bucket (429
rate_limit_error), injected faults, then the profile lookup (404 not_found, also for a profile the
vanish_* knobs made vanish) and query validation (400 validation_error / invalid_request_error).
Latency and slow faults delay every counted answer.

Decisions a client must live with, as with the real API:
- The external id segment is percent-decoded; an unencoded "+" never matches (only %2B is a plus).
- Cursor `url`s are the path and query of the next page: relative for users, absolute
  (http://host:port/...) for accounts; the last page has `url` and `next` empty. Some users' links
  come without a cursor, and an events answer without events is `{"data": null, ...}`.
- An events cursor pins its window (the clock, start, end, filters) at the first page, so later
  pages are a consistent snapshot even if the clock moves; `start` is inclusive, `end` exclusive.
- Every answer carries `Date:` from the emulated clock (EmulatorClock), not the wall clock: a
  client that takes the server's Date as its sync's start time sees the clock the data follows.
- With the gzip setting, Profile API answers are gzip-compressed when Accept-Encoding allows it.
- `limit` is 1..200 for traits and 1..max_list_limit (200, or 100 as some Segment docs say) for
  the other listings; listing profiles takes 1..100.
- `GET .../collections/users/profiles?limit=&next=` lists users' segment ids, `next` an offset
  ("0" first); `segment_id:<id>` and the bare segment id find a profile on every profile route.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import gzip
import json
import math
import socket
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Iterator, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlencode

from .dataset import (
    AccountProfile,
    Dataset,
    DatasetOptions,
    UserProfile,
    format_timestamp,
    ground_truth_chunks,
    parse_late_event_hours,
    parse_timestamp,
    to_json_bytes,
)
from .faults import (
    EXCLUSIVE_FAULTS,
    FAULT_NAMES,
    PAGED_RESOURCES,
    EmptyPageDraws,
    FaultInjector,
    RetryAfter,
    VanishingProfiles,
    check_header_text,
)

ADMIN_PREFIX = "/_emulator/"

# (collection, resource) -> endpoint name used in stats and the request log. Accounts have no
# events or metadata; their links are not in the seed spec but Segment's docs show them.
ENDPOINTS = {
    ("users", "traits"): "user_traits",
    ("users", "events"): "user_events",
    ("users", "external_ids"): "user_external_ids",
    ("users", "metadata"): "user_metadata",
    ("users", "links"): "user_links",
    ("accounts", "traits"): "account_traits",
    ("accounts", "external_ids"): "account_external_ids",
    ("accounts", "links"): "account_links",
}
# GET /v1/spaces/{space}/collections/users/profiles: the list method Segment's docs mention
LIST_USERS_ENDPOINT = "list_users"
ENDPOINT_NAMES = (*ENDPOINTS.values(), LIST_USERS_ENDPOINT)

MAX_PAGE_LIMIT = 200  # `limit` is 1..200 (seed spec); Segment's docs: "traits allow 200"
TRAITS_DEFAULT_LIMIT = 10  # Segment docs: traits default to 10 per page
DEFAULT_LIMIT = 100
LINKS_MAX_PAGE = 20  # Segment docs: links returns at most 20
# Segment docs: list methods take `limit` 1..100, default 10 ("Profile API" page, pagination)
LIST_PROFILES_MAX_LIMIT = 100
LIST_PROFILES_DEFAULT_LIMIT = 10
# nginx's default gzip_comp_level: the cheapest level, for an emulator that shares the machine
GZIP_LEVEL = 1
TRAIT_CLASSES = ("audience", "computed_trait")
REQUEST_LOG_SIZE = 200_000
RETRY_AFTER_MODES = ("none", "seconds", "http-date")
LAST_PAGE_CURSOR = {"url": "", "has_more": False, "next": ""}

SERVER_ERRORS = {
    500: ("internal_error", "Internal server error."),
    502: ("bad_gateway", "Bad gateway."),
    503: ("service_unavailable", "Service unavailable, try again later."),
}


def error_body(code: str, message: str) -> bytes:
    return to_json_bytes({"error": {"code": code, "message": message}})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.body = error_body(code, message)


# (status, code, message) of the errors raised in several places
PROFILE_NOT_FOUND = (404, "not_found", "Profile was not found.")
ROUTE_NOT_FOUND = (404, "not_found", "The requested route was not found.")
INVALID_CURSOR = (400, "invalid_request_error", "The next cursor is invalid.")


def invalid_limit(maximum: int) -> tuple[int, str, str]:
    return (400, "validation_error", f"limit must be between 1 and {maximum}")


# --- settings -----------------------------------------------------------------------------------


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


@dataclass
class EmulatorSettings:
    """Everything the CLI configures (each field is the flag --field-name). The knobs in
    RUNTIME_KNOBS can also change while running (POST /_emulator/faults {"knob": value}); the data
    knobs (DATA_KNOBS) shape the dataset built at startup (see dataset.DatasetOptions).

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
        for name in ("vanish_users", "vanish_accounts", "vanish_after_requests"):
            if not _is_count(getattr(self, name)):
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


# --- the clock, the rate limit, faults, stats ---------------------------------------------------


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


@dataclass
class Outcome:
    """What the server decided to do with one profile request."""

    endpoint: str | None = None
    space_id: str | None = None
    external_id: str | None = None
    query: dict = field(default_factory=dict)
    status: int | None = None  # None: the connection is reset without a response
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    cut: str | None = None  # "truncate" or "reset_mid_body": only half the body is sent
    faults: list[str] = field(default_factory=list)
    delay_seconds: float = 0.0
    retry_after: RetryAfter | None = None  # a 429's Retry-After, written when the answer is sent

    def fail(self, error: ApiError) -> Outcome:
        self.status, self.body = error.status, error.body
        return self


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


# --- the Profile API proper ---------------------------------------------------------------------


class Route(NamedTuple):
    space_id: str
    collection: str
    external_id: str | None  # None when the raw segment cannot name a profile, or for the listing
    resource: str  # "profiles" for the listing
    endpoint: str
    path: str  # the raw path, echoed in cursor urls


def parse_route(path: str) -> Route | None:
    """/v1/spaces/{space}/collections/{collection}/profiles/{external_id}/{resource}, or the users
    listing /v1/spaces/{space}/collections/users/profiles, else None."""
    parts = path.split("/")
    if len(parts) == 7 and parts[:3] == ["", "v1", "spaces"] and parts[4:] == ["collections", "users", "profiles"]:
        return Route(unquote(parts[3]), "users", None, "profiles", LIST_USERS_ENDPOINT, path)
    if len(parts) != 9 or parts[:3] != ["", "v1", "spaces"] or parts[4] != "collections" or parts[6] != "profiles":
        return None
    endpoint = ENDPOINTS.get((parts[5], parts[8]))
    if endpoint is None:
        return None
    raw_external_id = parts[7]
    try:
        # Only %2B stands for "+": a bare "+" never matches, as with the real API.
        external_id = None if "+" in raw_external_id else unquote(raw_external_id, errors="strict")
    except UnicodeDecodeError:  # percent-encoded bytes that are not UTF-8
        external_id = None
    return Route(unquote(parts[3]), parts[5], external_id, parts[8], endpoint, path)


class ApiRequest(NamedTuple):
    route: Route
    query: dict[str, str]
    host: str  # the Host header, to make absolute cursor urls


def _parse_query(query_string: str) -> dict[str, str]:
    return {name: values[-1] for name, values in parse_qs(query_string, keep_blank_values=True).items()}


def _page_limit(query: dict[str, str], default: int, maximum: int) -> int:
    raw = query.get("limit")
    if raw is None:
        return min(default, maximum)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise ApiError(*invalid_limit(maximum))
    return int(raw)


def _names(raw: str) -> list[str]:
    return [name.strip() for name in raw.split(",") if name.strip()]


def encode_cursor(fields_: dict) -> str:
    """An opaque `next`: urlsafe base64 of the JSON state of the listing, without padding."""
    return base64.urlsafe_b64encode(to_json_bytes(fields_)).decode().rstrip("=")


def _cursor_state(token: str) -> Any:
    """What encode_cursor put in `token`; None if it is not such a token."""
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        return None


def decode_cursor(token: str, kind: str) -> dict:
    state = _cursor_state(token)
    if not isinstance(state, dict) or state.get("kind") != kind or not _is_count(state.get("offset")):
        raise ApiError(*INVALID_CURSOR)
    return state


# The kind of the `next` of an empty page (fault_empty_has_more): it holds the `next` the page was
# asked with, null for a first page.
SKIPPED_PAGE = "skipped_page"


def resume_skipped_page(request: ApiRequest) -> tuple[ApiRequest, bool]:
    """A request that follows an empty page's `next` asks again for the page that was emptied: its
    query with the `next` that page was asked with. True if it is such a request."""
    token = request.query.get("next")
    state = _cursor_state(token) if token else None
    if not (isinstance(state, dict) and state.keys() == {"kind", "next"} and state["kind"] == SKIPPED_PAGE):
        return request, False
    query = {name: value for name, value in request.query.items() if name != "next"}
    if isinstance(state["next"], str):
        query["next"] = state["next"]
    return request._replace(query=query), True


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


class EventsSelection(NamedTuple):
    """Which events a listing serves. Pinned in the cursor, so later pages see the same window
    even if the clock moves: an events cursor is a snapshot taken at its first page."""

    clock_ms: int  # the events visible at this clock (arrived, and within retention)
    start_ms: int | None
    end_ms: int | None
    ascending: bool
    include: list[str] | None
    exclude: list[str] | None
    offset: int

    @classmethod
    def from_query(cls, query: dict[str, str], clock_ms: int) -> EventsSelection:
        sort = query.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise ApiError(400, "validation_error", "sort must be asc or desc")
        bounds = []
        for name in ("start", "end"):
            raw = query.get(name)
            try:
                bounds.append(None if raw in (None, "") else parse_timestamp(raw))
            except ValueError:
                raise ApiError(400, "validation_error", f"{name} must be an ISO 8601 timestamp") from None
        include = _names(query["include"]) if query.get("include") else None
        exclude = _names(query["exclude"]) if query.get("exclude") else None
        return cls(clock_ms, *bounds, sort == "asc", include, exclude, 0)

    @classmethod
    def from_cursor(cls, token: str) -> EventsSelection:
        state = decode_cursor(token, "events")
        if set(state) != {"kind", *cls._fields}:
            raise ApiError(*INVALID_CURSOR)
        selection = cls(**{name: state[name] for name in cls._fields})
        valid = (
            _is_count(selection.clock_ms)
            and all(bound is None or _is_count(bound) for bound in (selection.start_ms, selection.end_ms))
            and isinstance(selection.ascending, bool)
            and all(names is None or _is_name_list(names) for names in (selection.include, selection.exclude))
        )
        if not valid:
            raise ApiError(*INVALID_CURSOR)
        return selection

    def cursor_at(self, offset: int) -> str:
        return encode_cursor({"kind": "events", **self._replace(offset=offset)._asdict()})


class ProfileApi:
    """Answers profile requests from the dataset; knows nothing of HTTP, faults or rate limits."""

    def __init__(self, dataset: Dataset, clock: EmulatorClock, settings: EmulatorSettings):
        self.dataset = dataset
        self.clock = clock
        self.settings = settings

    def answer(self, request: ApiRequest) -> bytes:
        """The body of a 200 answer; raises ApiError for a 4xx."""
        route = request.route
        if route.endpoint == LIST_USERS_ENDPOINT:
            return to_json_bytes(self._list_users(request))
        profile = None if route.external_id is None else self.dataset.find(route.collection, route.external_id)
        if profile is None:
            raise ApiError(*PROFILE_NOT_FOUND)
        answer = getattr(self, f"_{route.resource}")(profile, request)
        return answer if isinstance(answer, bytes) else to_json_bytes(answer)

    def _list_limit(self, request: ApiRequest, default: int) -> int:
        """`limit` of a listing other than traits: 1..max_list_limit."""
        return _page_limit(request.query, default, self.settings.max_list_limit)

    def _list_users(self, request: ApiRequest) -> dict:
        """The users' segment ids, in user order, from offset `next` ("0" or absent: the first)."""
        if self.settings.no_list_method:
            raise ApiError(*ROUTE_NOT_FOUND)
        maximum = min(LIST_PROFILES_MAX_LIMIT, self.settings.max_list_limit)
        limit = _page_limit(request.query, LIST_PROFILES_DEFAULT_LIMIT, maximum)
        raw_offset = request.query.get("next") or "0"
        if not (raw_offset.isascii() and raw_offset.isdigit()):
            raise ApiError(*INVALID_CURSOR)
        offset = int(raw_offset)
        end = offset + limit
        segment_ids = self.dataset.user_segment_ids[offset:end]
        next_token = str(end) if end < self.dataset.user_count else None
        return {
            "data": [{"segment_id": segment_id} for segment_id in segment_ids],
            "cursor": self._cursor(request, limit, next_token),
        }

    def _traits(self, profile: UserProfile | AccountProfile, request: ApiRequest) -> dict:
        query = request.query
        limit = _page_limit(query, TRAITS_DEFAULT_LIMIT, MAX_PAGE_LIMIT)
        names = profile.trait_names
        if query.get("include"):
            wanted = set(_names(query["include"]))
            names = [name for name in names if name in wanted]
        trait_class = query.get("class")
        if trait_class is not None:
            if trait_class not in TRAIT_CLASSES:
                raise ApiError(400, "validation_error", "class must be audience or computed_trait")
            names = [name for name in names if profile.trait_details[name].trait_class == trait_class]
        start = 0
        if query.get("next"):  # the traits cursor is the name of the first trait of the page
            if query["next"] not in profile.traits:
                raise ApiError(*INVALID_CURSOR)
            start = bisect.bisect_left(names, query["next"])
        page = names[start : start + limit]
        if query.get("verbose", "").lower() == "true":
            traits = {
                name: {
                    "value": profile.traits[name],
                    "source_id": profile.trait_details[name].source_id,
                    "updated_at": profile.trait_details[name].updated_at,
                }
                for name in page
            }
        else:
            traits = {name: profile.traits[name] for name in page}
        has_more = start + limit < len(names)
        return {"traits": traits, "cursor": self._cursor(request, limit, names[start + limit] if has_more else None)}

    def _events(self, user: UserProfile, request: ApiRequest) -> dict | bytes:
        limit = self._list_limit(request, DEFAULT_LIMIT)
        token = request.query.get("next")
        if token:
            selection = EventsSelection.from_cursor(token)
        else:
            selection = EventsSelection.from_query(request.query, self.clock.now_ms)
        window = self.dataset.visible_events(user, selection.clock_ms)
        events = window.events
        # start is inclusive, end exclusive
        low = 0 if selection.start_ms is None else bisect.bisect_left(window.timestamps, selection.start_ms)
        high = len(events) if selection.end_ms is None else bisect.bisect_left(window.timestamps, selection.end_ms)
        if selection.include is not None or selection.exclude is not None:
            events = events[low:high]
            if selection.include is not None:
                events = [event for event in events if event.name in selection.include]
            if selection.exclude is not None:
                events = [event for event in events if event.name not in selection.exclude]
            low, high = 0, len(events)
        # Without filters a page is sliced straight out of the window: a user with 100,000 events
        # costs a page its own events, not a copy of all of them.
        count = max(0, high - low)
        if not count:
            return {"data": None, "cursor": dict(LAST_PAGE_CURSOR)}
        first, stop = min(selection.offset, count), min(selection.offset + limit, count)
        if selection.ascending:
            page = events[low + first : low + stop]
        else:  # newest first
            page = events[high - stop : high - first][::-1]
        next_token = selection.cursor_at(selection.offset + limit) if selection.offset + limit < count else None
        body = b",".join([event.json for event in page])
        return b'{"data":[' + body + b'],"cursor":' + to_json_bytes(self._cursor(request, limit, next_token)) + b"}"

    def _external_ids(self, profile: UserProfile | AccountProfile, request: ApiRequest) -> dict:
        items = profile.external_ids
        return self._offset_page(request, len(items), items.__getitem__, "external_ids", self._list_limit(request, DEFAULT_LIMIT))

    def _metadata(self, user: UserProfile, request: ApiRequest) -> dict:
        return user.metadata

    def _links(self, profile: UserProfile | AccountProfile, request: ApiRequest) -> dict:
        limit = min(self._list_limit(request, DEFAULT_LIMIT), LINKS_MAX_PAGE)
        if isinstance(profile, UserProfile):
            links = self.dataset.user_links(profile)
            if not profile.links_have_cursor:  # users link to 3 accounts at most: one page
                return {"data": links}
            return self._offset_page(request, len(links), links.__getitem__, "links", limit)
        # an account of a big space has thousands of users: only the page's are looked up
        account = profile
        return self._offset_page(
            request,
            len(account.user_indexes),
            lambda page: self.dataset.account_links(account, page.start, page.stop),
            "links",
            limit,
        )

    def _offset_page(
        self, request: ApiRequest, total: int, items_in: Callable[[slice], list], kind: str, limit: int
    ) -> dict:
        """A page of `total` items from the cursor's offset; `items_in(slice)` gives the page's items."""
        offset = decode_cursor(request.query["next"], kind)["offset"] if request.query.get("next") else 0
        end = offset + limit
        next_token = encode_cursor({"kind": kind, "offset": end}) if end < total else None
        return {"data": items_in(slice(offset, end)), "cursor": self._cursor(request, limit, next_token)}

    def _cursor(self, request: ApiRequest, limit: int, next_token: str | None) -> dict:
        if next_token is None:
            return {**LAST_PAGE_CURSOR, "limit": limit}
        return {"url": self._page_url(request, limit=limit, next=next_token), "has_more": True, "next": next_token, "limit": limit}

    def _page_url(self, request: ApiRequest, **changes: Any) -> str:
        """The url of `request` with `changes` to its query, last. Relative for users and absolute
        for accounts: the real API has been seen to answer both, and a client must follow either."""
        params = {name: value for name, value in request.query.items() if name not in changes}
        params.update(changes)
        url = f"{request.route.path}?{urlencode(params, quote_via=quote)}"
        if request.route.collection == "accounts":
            url = f"http://{request.host}{url}"
        return url

    def skipped_page(self, request: ApiRequest, cursor: dict) -> bytes:
        """The page `request` was answered with (`cursor` its cursor), emptied: no items, and a
        cursor that says has_more with a `next` that serves the page again (resume_skipped_page).
        A first page of events is served again from a cursor pinned at the clock it was served
        at, as its later pages are."""
        replay = request.query.get("next") or None
        if replay is None and request.route.resource == "events":
            replay = EventsSelection.from_query(request.query, self.clock.now_ms).cursor_at(0)
        token = encode_cursor({"kind": SKIPPED_PAGE, "next": replay})
        page: dict = {"traits": {}} if request.route.resource == "traits" else {"data": []}
        page["cursor"] = {**cursor, "url": self._page_url(request, next=token), "has_more": True, "next": token}
        return to_json_bytes(page)


# --- HTTP ---------------------------------------------------------------------------------------

def _coalesce(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Joins small pieces into writes of about `size` bytes."""
    pending: list[bytes] = []
    pending_size = 0
    for chunk in chunks:
        pending.append(chunk)
        pending_size += len(chunk)
        if pending_size >= size:
            yield b"".join(pending)
            pending, pending_size = [], 0
    if pending:
        yield b"".join(pending)



class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # socketserver's default of 5 drops connections under a burst

    def __init__(self, settings: EmulatorSettings, dataset: Dataset):
        settings.validate()
        self.settings = settings
        self.dataset = dataset
        self.clock = EmulatorClock(dataset.now_ms)
        self.api = ProfileApi(dataset, self.clock, settings)
        self.stats = EmulatorStats()
        self.limiter = SpaceRateLimiter()
        self.faults = FaultInjector(settings.fault_seed)
        self.empty_pages = EmptyPageDraws(settings.fault_seed, dataset)
        self.vanishing = VanishingProfiles(dataset, settings)
        self._expected_authorization = "Basic " + base64.b64encode(f"{settings.token}:".encode()).decode()
        self._parsed_schedule: tuple[str, tuple[tuple[float, float], ...]] = ("", ())
        super().__init__((settings.host, settings.port), ProfileApiHandler)

    def http_date(self) -> str:
        """The emulated clock as an HTTP Date header."""
        return formatdate(self.clock.now_ms / 1000, usegmt=True)

    def current_rate_limit(self, now: float) -> float:
        """The limit in force at wall-clock `now`: the last rate_limit_schedule step reached since
        the first profile request (after startup or the last stats reset), else rate_limit."""
        settings = self.settings
        rate = settings.rate_limit
        origin = self.stats.first_arrival
        if settings.rate_limit_schedule and origin is not None:
            text, steps = self._parsed_schedule
            if text != settings.rate_limit_schedule:  # parsed once per change, not per request
                text, steps = settings.rate_limit_schedule, parse_rate_limit_schedule(settings.rate_limit_schedule)
                self._parsed_schedule = (text, steps)
            for after_seconds, scheduled_rate in steps:
                if now - origin >= after_seconds:
                    rate = scheduled_rate
        return rate

    def stats_snapshot(self) -> dict:
        return {**self.stats.snapshot(), "current_rate_limit": self.current_rate_limit(time.time())}

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up are routine here; anything else is a bug worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def _authorized(self, authorization: str | None) -> bool:
        """Basic auth with the token as username; the password is ignored (Segment's is empty)."""
        if authorization == self._expected_authorization:
            return True
        if not authorization or not authorization.startswith("Basic "):
            return False
        try:
            username = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return False
        return username == self.settings.token

    def reset_stats(self) -> None:
        """A new run: the counters, and what counts from the first request (the rate limit
        schedule, vanish_after_requests, empty_has_more_once)."""
        self.stats.reset()
        self.empty_pages.forget()

    def decide(self, path: str, query_string: str, headers, arrival: float, number: int) -> Outcome:
        """Everything about the `number`th profile request but the sending: status, body, headers,
        faults."""
        settings = self.settings
        draw = self.faults.draw(settings)
        outcome = Outcome(query=_parse_query(query_string), delay_seconds=draw.latency_seconds)
        route = parse_route(path)
        if route is not None:
            outcome.endpoint, outcome.external_id = route.endpoint, route.external_id
        if not self._authorized(headers.get("Authorization")):
            return outcome.fail(ApiError(401, "unauthorized", "The specified token is invalid."))
        if route is None:
            return outcome.fail(ApiError(404, "not_found", "The requested route was not found."))
        if route.space_id != settings.space_id:
            return outcome.fail(ApiError(403, "forbidden", "The token does not have access to this space."))
        outcome.space_id = route.space_id
        self.stats.arrived_in_space(route.space_id, arrival)

        rate = self.current_rate_limit(arrival)
        wait = self.limiter.try_acquire(route.space_id, rate, settings.burst_for(rate), time.monotonic())
        if wait:
            return self._too_many_requests(outcome, wait)
        if draw.slow:
            outcome.faults.append("slow")
            outcome.delay_seconds += settings.slow_seconds
        if draw.kind == "429":
            outcome.faults.append("429")
            return self._too_many_requests(outcome, 1.0)
        if draw.kind == "5xx":
            outcome.faults.append("5xx")
            return outcome.fail(ApiError(draw.server_error_status, *SERVER_ERRORS[draw.server_error_status]))
        if draw.kind == "reset":
            outcome.faults.append("reset")
            outcome.status = None
            return outcome
        if draw.kind in ("truncate", "reset_mid_body"):
            outcome.faults.append(draw.kind)
            outcome.cut = draw.kind
        if self.vanishing.hides(route, number):
            outcome.faults.append("vanished")
            return outcome.fail(ApiError(*PROFILE_NOT_FOUND))

        try:
            request, resumed = resume_skipped_page(ApiRequest(route, outcome.query, headers.get("Host") or self.url[7:]))
            outcome.status = 200
            outcome.body = self.api.answer(request)
            if not resumed and settings.fault_empty_has_more and route.resource in PAGED_RESOURCES:
                cursor = json.loads(outcome.body).get("cursor")
                if cursor is not None and self.empty_pages.strikes(settings, route):
                    outcome.faults.append("empty_has_more")
                    outcome.body = self.api.skipped_page(request, cursor)
        except ApiError as error:
            outcome.fail(error)
        return outcome

    def _too_many_requests(self, outcome: Outcome, wait_seconds: float) -> Outcome:
        outcome.fail(ApiError(429, "rate_limit_error", "Too many requests"))
        outcome.retry_after = RetryAfter.for_wait(self.settings, wait_seconds)
        return outcome


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header accepts gzip: listed (or `*`) with a q-value above 0."""
    if not accept_encoding:
        return False
    weights = {}
    for item in accept_encoding.split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.lower()] = weight
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


class RequestHeaders(dict):
    """Request headers by lower-cased name; `get` takes any casing, as http.server's message does."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


MAX_REQUEST_HEADERS = 100


class ProfileApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # else keep-alive requests stall ~40 ms on delayed ACKs
    server: EmulatorServer

    def parse_request(self) -> bool:
        """http.server's parse_request without its email-parser pass over the headers.

        That pass was a fifth of the emulator's CPU per request, and the emulator shares the
        machine with the connector it measures (benchmarks/run.py). Anything but a plain
        `METHOD /path HTTP/1.x` line goes to http.server's own parser and its error answers.
        """
        words = self.raw_requestline.decode("latin-1").rstrip("\r\n").split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            return super().parse_request()
        self.command, self.path, self.request_version = words
        headers = RequestHeaders()
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(headers) >= MAX_REQUEST_HEADERS or len(line) > 65536:
                self.send_error(431, "Request header fields too large")
                return False
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment] # only .get is used
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (self.request_version == "HTTP/1.0" and connection != "keep-alive")
        return True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would cost more than answering it."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        request_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query_string = self.path.partition("?")
        if path.startswith(ADMIN_PREFIX):
            self._serve_admin(method, path, query_string, request_body)
        elif method == "GET":
            self._serve_profile_api(path, query_string)
        else:
            self._send(405, error_body("method_not_allowed", "Only GET is supported."))

    def _serve_profile_api(self, path: str, query_string: str) -> None:
        server = self.server
        stats = server.stats
        arrival = time.time()
        number = stats.request_started(arrival)
        try:
            outcome = server.decide(path, query_string, self.headers, arrival, number)
        except Exception:
            traceback.print_exc()
            outcome = Outcome(status=500, body=error_body(*SERVER_ERRORS[500]))
        if outcome.delay_seconds > 0:
            time.sleep(outcome.delay_seconds)
        # Counted before answering: a client that reads the stats after its answer finds it there.
        stats.request_finished(outcome, arrival)
        if outcome.status is None:
            self.close_connection = True  # a reset: hang up without a word
            return
        body, headers = outcome.body, list(outcome.headers)
        if server.settings.gzip:
            headers.append(("Vary", "Accept-Encoding"))
            if accepts_gzip(self.headers.get("Accept-Encoding")):
                body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
                headers.append(("Content-Encoding", "gzip"))
        window = None
        if outcome.retry_after is not None:
            window = stats.open_wait_window(outcome.space_id, outcome.retry_after)
            headers.append(("Retry-After", outcome.retry_after.header(window and window.until)))
        try:
            self._send(outcome.status, body, headers, outcome.cut)
        except ConnectionError:
            self.close_connection = True
            if window is not None:
                stats.withdraw_wait_window(outcome.space_id, window)

    def _serve_admin(self, method: str, path: str, query_string: str, request_body: bytes) -> None:
        server = self.server
        route = (method, path.removeprefix(ADMIN_PREFIX))
        query = _parse_query(query_string)
        try:
            if route == ("GET", "stats"):
                answer = server.stats_snapshot()
            elif route == ("POST", "stats/reset"):
                server.reset_stats()
                answer = server.stats_snapshot()
            elif route == ("GET", "requests"):
                answer = server.stats.requests()
            elif route == ("GET", "clock"):
                answer = {"now": format_timestamp(server.clock.now_ms)}
            elif route == ("POST", "clock"):
                answer = {"now": format_timestamp(server.clock.advance(float(query.get("advance_seconds", "0"))))}
            elif route == ("GET", "ground-truth"):
                self._send_chunked(ground_truth_chunks(server.dataset, server.clock.now_ms))
                return
            elif route == ("GET", "lookup-ids"):
                # what a connector config lists, without the ground truth's events (a space of
                # 100,000 users has millions)
                answer = {
                    "users": server.dataset.user_lookup_ids,
                    "accounts": [account.lookup_id for account in server.dataset.accounts],
                }
            elif route == ("GET", "vanishing-profiles"):
                answer = server.vanishing.describe()
            elif route == ("GET", "faults"):
                answer = server.settings.runtime_knobs()
            elif route == ("POST", "faults"):
                server.settings.update(**json.loads(request_body or b"{}"))
                answer = server.settings.runtime_knobs()
            elif route == ("POST", "shutdown"):
                # Answered before the shutdown starts: once serve_forever returns, the process may
                # exit before this thread has written anything (the caller saw RemoteDisconnected).
                self.close_connection = True
                self._send(200, to_json_bytes({"shutting_down": True}))
                threading.Thread(target=server.shutdown, daemon=True).start()
                return
            else:
                self._send(404, error_body("not_found", f"No admin route {method} {path}."))
                return
        except (ValueError, TypeError) as error:
            self._send(400, error_body("validation_error", str(error)))
            return
        self._send(200, to_json_bytes(answer))

    def _send_chunked(self, chunks: Iterator[bytes]) -> None:
        """A 200 JSON answer too big to hold whole, sent in chunks as it is produced."""
        head = ["HTTP/1.1 200 OK", "Content-Type: application/json", "Transfer-Encoding: chunked"]
        head += [f"Request-Id: {uuid.uuid4().hex}", f"Date: {self.server.http_date()}"]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        for chunk in _coalesce(chunks, 1 << 18):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (malformed request, unsupported method) as JSON errors too."""
        self.close_connection = True
        try:
            self._send(code, error_body("invalid_request_error", message or HTTPStatus(code).phrase))
        except ConnectionError:
            pass

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] = (), cut: str | None = None) -> None:
        """One write per response. A `cut` response announces the full length and sends half of
        the body: "truncate" then hangs up as announced (Connection: close, FIN), "reset_mid_body"
        aborts unannounced (RST). The one Date header is the emulated clock's (the response is
        written here, not through http.server's send_response, which would add the wall clock's)."""
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"Request-Id: {uuid.uuid4().hex}",
            f"Date: {self.server.http_date()}",
        ]
        lines += [f"{name}: {value}" for name, value in headers]
        if cut:
            body = body[: len(body) // 2]
        if cut == "truncate":
            self.close_connection = True
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if cut == "reset_mid_body":
            self._abort()

    def _abort(self) -> None:
        """Hangs up with RST: with SO_LINGER 0 a close aborts the connection, and the client's
        next read fails with ECONNRESET, where a plain close (FIN) would read as a clean end."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.rfile.close()  # the socket's last reference: the close happens now
