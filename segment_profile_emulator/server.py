"""The HTTP server: Segment Profile API routes over a synthetic dataset, with auth, a per-space rate
limit, injectable faults, and admin routes (under /_emulator/, no auth, not counted) for stats, the
clock, fault knobs, ground truth, lookup ids, the profiles that vanish and messages delivered to
users while running (faults.py holds how the faults work, messages.py the messages).

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
import json
import sys
import time
from email.utils import formatdate
from http.server import ThreadingHTTPServer

from .answers import PROFILE_NOT_FOUND, SERVER_ERRORS, ApiError, Outcome
from .clock import EmulatorClock
from .dataset import Dataset
from .faults import (
    PAGED_RESOURCES,
    EmptyPageDraws,
    FaultInjector,
    RetryAfter,
    VanishingProfiles,
    resume_skipped_page,
    skipped_page,
)
from .formats import format_timestamp
from .handler import ProfileApiHandler
from .messages import parse_delivery
from .rate_limit import SpaceRateLimiter, parse_rate_limit_schedule
from .routes import ApiRequest, ProfileApi, parse_query, parse_route
from .settings import EmulatorSettings
from .stats import EmulatorStats


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
        self._apply_data_knobs()
        super().__init__((settings.host, settings.port), ProfileApiHandler)

    def update_knobs(self, **knobs) -> None:
        """POST /_emulator/faults: change runtime knobs (see EmulatorSettings.update)."""
        self.settings.update(**knobs)
        self._apply_data_knobs()

    def _apply_data_knobs(self) -> None:
        """The runtime knobs that change what the dataset serves, from the clock at the change."""
        self.dataset.set_computed_traits_epoch(self.settings.computed_traits_epoch, self.clock.now_ms)

    def deliver_messages(self, body: object) -> dict:
        """POST /_emulator/messages: deliver the messages `body` asks for (see messages.py), arriving
        at the clock's now, which then moves 1 ms on so that they have arrived."""
        delivery = parse_delivery(body, self.dataset)

        def deliver(now_ms: int) -> dict:
            users = self.dataset.deliver_messages(delivery, now_ms)
            return {
                "kind": delivery.kind,
                "arrival": format_timestamp(now_ms),
                "now": format_timestamp(now_ms + 1),
                "messages": len(users) * delivery.count,
                "users": users,
            }

        return self.clock.tick_after(deliver)

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
        outcome = Outcome(query=parse_query(query_string), delay_seconds=draw.latency_seconds)
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
                    outcome.body = skipped_page(request, cursor, self.clock.now_ms)
        except ApiError as error:
            outcome.fail(error)
        return outcome

    def _too_many_requests(self, outcome: Outcome, wait_seconds: float) -> Outcome:
        outcome.fail(ApiError(429, "rate_limit_error", "Too many requests"))
        outcome.retry_after = RetryAfter.for_wait(self.settings, wait_seconds)
        return outcome
