"""What the emulator does wrong on purpose: the per-request fault draws, what a 429's Retry-After
says, profiles that vanish mid-run and empty pages that say has_more. server.py decides when each
applies; this module holds how."""

from __future__ import annotations

import math
import random
import threading
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, NamedTuple

from .formats import to_json_bytes
from .paging import EventsSelection, cursor_state, encode_cursor, page_url
from .randomness import stable_hash

if TYPE_CHECKING:
    from .dataset import Dataset
    from .routes import ApiRequest, Route
    from .settings import EmulatorSettings

# The exclusive faults, in the order their probabilities share one roll.
EXCLUSIVE_FAULTS = ("429", "5xx", "reset", "truncate", "reset_mid_body")
# What the stats count under "faults": the exclusive ones, slow answers, and the answers changed
# by vanish_* and fault_empty_has_more.
FAULT_NAMES = (*EXCLUSIVE_FAULTS, "slow", "vanished", "empty_has_more")
# The resources whose answers carry a cursor (user links sometimes do not).
PAGED_RESOURCES = ("traits", "events", "external_ids", "links")
# A fixed Retry-After's wait is counted for at most this long: "inf" and a date in year 9999 stay
# finite arithmetic, and a year outlasts any run.
MAX_WAIT_WINDOW_SECONDS = 365 * 24 * 3600.0


class FaultDraw(NamedTuple):
    kind: str | None  # one of EXCLUSIVE_FAULTS, or None
    server_error_status: int
    slow: bool
    latency_seconds: float


class FaultInjector:
    """Draws each request's faults and latency from one seeded RNG, so a run can be replayed."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self, settings: EmulatorSettings) -> FaultDraw:
        with self._lock:
            kind_roll, slow_roll, latency_roll, status_roll = (self._rng.random() for _ in range(4))
        kind = None
        threshold = 0.0
        for name in EXCLUSIVE_FAULTS:
            threshold += getattr(settings, f"fault_{name}")
            if kind_roll < threshold:
                kind = name
                break
        latency = settings.latency_ms / 1000 * (1 + settings.latency_spread * (2 * latency_roll - 1))
        return FaultDraw(kind, (500, 502, 503)[int(status_roll * 3)], slow_roll < settings.fault_slow, latency)


# --- Retry-After --------------------------------------------------------------------------------


class RetryAfter(NamedTuple):
    """What a 429 says about when to come back, settled when the 429 is sent (after any latency),
    so that the wait it tells starts when the client can read it.

    "seconds" tells the rate limit's wait in whole seconds; "http-date" the wall-clock instant it
    ends, on a whole second; "fixed" is retry_after_value's text, sent as is whatever it says."""

    mode: str  # "seconds", "http-date" or "fixed"
    seconds: int = 0
    text: str = ""

    @classmethod
    def for_wait(cls, settings: EmulatorSettings, wait_seconds: float) -> RetryAfter | None:
        """What a 429 whose client should wait `wait_seconds` carries; None: no Retry-After."""
        if settings.retry_after_value:
            return cls("fixed", text=settings.retry_after_value)
        if settings.retry_after == "none":
            return None
        return cls(settings.retry_after, max(1, math.ceil(wait_seconds)))

    def window_end(self, start: float) -> float | None:
        """When the wait this Retry-After tells, sent at `start` (wall clock), is over; None if
        it tells no wait."""
        if self.mode == "seconds":
            return start + self.seconds
        if self.mode == "http-date":
            return math.ceil(start + self.seconds)
        return fixed_wait_end(self.text, start)

    def header(self, window_end: float | None) -> str:
        if self.mode == "fixed":
            return self.text
        if self.mode == "http-date":
            return formatdate(window_end, usegmt=True)
        return str(self.seconds)


def fixed_wait_end(text: str, start: float) -> float | None:
    """When the wait a Retry-After `text` sent at `start` tells is over, read as leniently as a
    client may read it: a number of seconds in any float syntax ("40", "1e9", "inf") or an HTTP
    date, capped at MAX_WAIT_WINDOW_SECONDS. None for anything else, and for a wait already over."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - start
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not seconds > 0:  # NaN too
        return None
    return start + min(seconds, MAX_WAIT_WINDOW_SECONDS)


def check_header_text(name: str, text: str) -> None:
    """Raises ValueError unless `text` can be a header's value as is: Latin-1 without controls."""
    if not isinstance(text, str) or any(
        (ord(character) < 0x20 and character != "\t") or 0x7F <= ord(character) < 0xA0 or ord(character) > 0xFF
        for character in text
    ):
        raise ValueError(f"{name} must be header text: Latin-1, without line breaks or control characters")


# --- profiles that vanish -----------------------------------------------------------------------


class VanishingProfiles:
    """The vanish_* knobs: the first vanish_users users and the first vanish_accounts accounts,
    in the ground truth's order, answer 404 not_found on their profile routes, under every id,
    once vanish_after_requests profile requests have arrived (counted since startup or the last
    stats reset; 0: from the first)."""

    def __init__(self, dataset: Dataset, settings: EmulatorSettings):
        self._dataset = dataset
        self._settings = settings

    def hides(self, route: Route, request_number: int) -> bool:
        """Whether the `request_number`th profile request (1 for the first) finds its profile gone."""
        settings = self._settings
        count = settings.vanish_accounts if route.collection == "accounts" else settings.vanish_users
        if not count or request_number <= settings.vanish_after_requests or route.external_id is None:
            return False
        profile = self._dataset.find(route.collection, route.external_id)
        return profile is not None and profile.index < count

    def describe(self) -> dict:
        """Which profiles vanish (by lookup id) and after how many requests."""
        settings = self._settings
        return {
            "after_requests": settings.vanish_after_requests,
            "users": self._dataset.user_lookup_ids[: settings.vanish_users],
            "accounts": [account.lookup_id for account in self._dataset.accounts[: settings.vanish_accounts]],
        }


# --- empty pages that say has_more --------------------------------------------------------------


class EmptyPageDraws:
    """Which answers with a cursor fault_empty_has_more empties. Drawn from an RNG of their own
    (seeded from fault_seed), so that turning the fault on leaves the other faults' draws as they
    were. With empty_has_more_once, a profile's route is emptied at most once since startup or
    the last stats reset."""

    def __init__(self, seed: int, dataset: Dataset):
        self._rng = random.Random(stable_hash(seed, "empty_has_more"))
        self._dataset = dataset
        self._lock = threading.Lock()
        self._emptied: set[tuple[str, int, str]] = set()

    def forget(self) -> None:
        """A new run (a stats reset): no route has been emptied yet."""
        with self._lock:
            self._emptied.clear()

    def strikes(self, settings: EmulatorSettings, route: Route) -> bool:
        """Whether this answer of `route` (a found profile's paged resource) is emptied."""
        profile = self._dataset.find(route.collection, route.external_id)
        key = (route.collection, profile.index, route.resource)
        with self._lock:
            if settings.empty_has_more_once and key in self._emptied:
                return False
            if self._rng.random() >= settings.fault_empty_has_more:
                return False
            if settings.empty_has_more_once:
                self._emptied.add(key)
            return True


# The kind of the `next` of an empty page (fault_empty_has_more): it holds the `next` the page was
# asked with, null for a first page.
SKIPPED_PAGE = "skipped_page"


def resume_skipped_page(request: ApiRequest) -> tuple[ApiRequest, bool]:
    """A request that follows an empty page's `next` asks again for the page that was emptied: its
    query with the `next` that page was asked with. True if it is such a request."""
    token = request.query.get("next")
    state = cursor_state(token) if token else None
    if not (isinstance(state, dict) and state.keys() == {"kind", "next"} and state["kind"] == SKIPPED_PAGE):
        return request, False
    query = {name: value for name, value in request.query.items() if name != "next"}
    if isinstance(state["next"], str):
        query["next"] = state["next"]
    return request._replace(query=query), True


def skipped_page(request: ApiRequest, cursor: dict, now_ms: int) -> bytes:
    """The page `request` was answered with (`cursor` its cursor), emptied: no items, and a
    cursor that says has_more with a `next` that serves the page again (resume_skipped_page).
    A first page of events is served again from a cursor pinned at the clock it was served
    at, as its later pages are."""
    replay = request.query.get("next") or None
    if replay is None and request.route.resource == "events":
        replay = EventsSelection.from_query(request.query, now_ms).cursor_at(0)
    token = encode_cursor({"kind": SKIPPED_PAGE, "next": replay})
    page: dict = {"traits": {}} if request.route.resource == "traits" else {"data": []}
    page["cursor"] = {**cursor, "url": page_url(request, next=token), "has_more": True, "next": token}
    return to_json_bytes(page)
