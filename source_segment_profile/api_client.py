"""Sending one Profile API request: pacing, retries and the classification of every answer.

This is the only place that talks HTTP. Streams ask for a page and get either a decoded JSON body
or one of the typed errors of `errors.py`.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import json
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlencode

import orjson

from source_segment_profile.config import ConnectorConfig
from source_segment_profile.errors import (
    CredentialsRejected,
    ProfileNotFound,
    RateLimitExhausted,
    TransientApiError,
    UnexpectedResponse,
    body_excerpt,
    describe_request,
)
from source_segment_profile.http_transport import HttpTransport, RawResponse, TransportError
from source_segment_profile.rate_budget import RateBudget

# orjson parses integers exactly within [-2**63, 2**64) and silently turns the rest into floats;
# traits hold such numbers. Those have 20+ digits, or 19 after a minus sign. The body's digits are
# mapped to "0" and everything else but "-" to " " (bytes.translate, one C pass), and two substring
# searches decide: ~10 us on a 16 KB page, where the regex \d{20} took ~160 us. A match inside a
# string only costs the slower exact parser.
DIGITS_AS_ZEROS = bytes(b"0"[0] if chr(byte).isdigit() and byte < 128 else byte if byte == b"-"[0] else b" "[0] for byte in range(256))
TWENTY_DIGITS = b"0" * 20
NEGATIVE_NINETEEN_DIGITS = b"-" + b"0" * 19
CONNECT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "source-segment-profile (Airbyte connector)"
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# No Retry-After is documented for the Profile API: back off exponentially from 1 s, capped.
RATE_LIMIT_BASE_SECONDS = 1.0
RATE_LIMIT_MAX_BACKOFF_SECONDS = 60.0

logger = logging.getLogger("airbyte")


@dataclass(frozen=True)
class ApiPage:
    """A decoded 2xx answer, with what an error about it would need to name."""

    body: Any
    raw: bytes
    request_id: Optional[str]
    url: str
    endpoint: str
    external_id: str
    status: int

    def unexpected(self, reason: str) -> UnexpectedResponse:
        return UnexpectedResponse(
            f"Unexpected answer (HTTP {self.status}) from {describe_request(self.endpoint, self.external_id, self.request_id)}: "
            f"{reason}. Body starts: {body_excerpt(self.raw)!r}. If this persists, contact Segment support with the Request-Id."
        )


class RequestCounters:
    """Thread-safe counts of requests, 429s and retries per endpoint, for progress and summaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, endpoint: str, what: str) -> None:
        with self._lock:
            self._counts[(endpoint, what)] += 1

    def get(self, endpoint: str, what: str) -> int:
        with self._lock:
            return self._counts[(endpoint, what)]

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def restore(self, snapshot: Mapping[tuple[str, str], int]) -> None:
        """Takes over the counts of a reader process (which started from a copy of these)."""
        with self._lock:
            self._counts = Counter(snapshot)


class ProfileApiClient:
    def __init__(
        self,
        config: ConnectorConfig,
        budget: RateBudget,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._config = config
        self.budget = budget
        self._sleep = sleep
        self.counters = RequestCounters()
        self._transport = HttpTransport(
            headers={
                "Authorization": basic_auth_header(config.access_token),
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=config.request_timeout_seconds,
        )

    def get_page(self, url: str, params: Mapping[str, Any], endpoint: str, external_id: str) -> ApiPage:
        """GETs one page, retrying what can be retried; raises a typed error for everything else."""
        failed_attempts = 0
        rate_limit_waited = 0.0
        rate_limit_attempts = 0
        while True:
            self.budget.acquire()
            self.counters.add(endpoint, "requests")
            try:
                response = self._transport.get(url_with_params(url, params))
            except TransportError as error:
                failure, request_id = str(error), None
            else:
                request_id = response.headers.get("request-id")
                status = response.status
                if 200 <= status < 300:
                    return self._decoded(response, url, endpoint, external_id, request_id)
                if status == 404:
                    raise ProfileNotFound(request_id)
                if status in (401, 403):
                    raise CredentialsRejected(
                        f"The Profile API answered {status} for space '{self._config.space_id}' "
                        f"({describe_request(endpoint, external_id, request_id)}): check the access token and "
                        "the space id in Unify > Unify settings > API access; the token must belong to this space."
                    )
                if status == 429:
                    rate_limit_attempts += 1
                    wait = retry_after_seconds(response.headers.get("retry-after"))
                    if not wait:
                        # Absent, or 0 / a date already past (clock skew): retrying at once
                        # would hammer the limit and never reach the total-wait bound.
                        wait = exponential_backoff(RATE_LIMIT_BASE_SECONDS, rate_limit_attempts, RATE_LIMIT_MAX_BACKOFF_SECONDS)
                    if rate_limit_waited + wait > self._config.rate_limit_max_wait_seconds:
                        raise RateLimitExhausted(
                            f"Segment's rate limit for space '{self._config.space_id}' (100 requests/s per space, "
                            f"shared with every other caller) kept answering 429 for {rate_limit_waited:.0f} s on "
                            f"{describe_request(endpoint, external_id, request_id)}, and the next wait ({wait:.0f} s) "
                            "would pass 'rate_limit_max_wait_minutes'. Lower 'requests_per_second', sync when the "
                            "space is less busy, or raise the maximum wait."
                        )
                    rate_limit_waited += wait
                    self.counters.add(endpoint, "rate_limited")
                    # The limit is per space: every worker waits, not only this one.
                    self.budget.pause_for(wait)
                    continue
                if status >= 500:
                    failure = f"HTTP {status}"
                else:
                    raise UnexpectedResponse(
                        f"The Profile API refused {describe_request(endpoint, external_id, request_id)} with "
                        f"HTTP {status}: {body_excerpt(response.body)!r}. This is not retried; check "
                        "'trait_names' and the id, or report it with the Request-Id."
                    )
            failed_attempts += 1
            if failed_attempts > self._config.max_retries:
                raise TransientApiError(
                    f"{describe_request(endpoint, external_id, request_id)} failed {failed_attempts} times, "
                    f"last with {failure}. The Profile API or the network is unstable; the sync can be retried, "
                    "and if this persists, report it to Segment support with the Request-Id."
                )
            self.counters.add(endpoint, "retries")
            logger.info(
                f"Retrying {describe_request(endpoint, external_id, request_id)} after {failure} "
                f"(attempt {failed_attempts} of {self._config.max_retries})."
            )
            self._sleep(exponential_backoff(RETRY_BASE_SECONDS, failed_attempts, RETRY_MAX_SECONDS))

    @staticmethod
    def _decoded(response: RawResponse, url: str, endpoint: str, external_id: str, request_id: Optional[str]) -> ApiPage:
        page = ApiPage(None, response.body, request_id, url, endpoint, external_id, response.status)
        return dataclasses.replace(page, body=decode_json_object(page))


def url_with_params(url: str, params: Mapping[str, Any]) -> str:
    """`url` with `params` as its query, encoded as requests encodes them (spaces as '+')."""
    return f"{url}?{urlencode(params)}" if params else url


def decode_json_object(page: ApiPage) -> dict[str, Any]:
    """The page's raw body as a JSON object, or the error that says it is not one.

    orjson is several times faster, but turns integers beyond 64 bits into floats, and traits
    hold such numbers; a body that may hold one takes the exact stdlib parser instead.
    """
    try:
        digits = page.raw.translate(DIGITS_AS_ZEROS)
        may_overflow = TWENTY_DIGITS in digits or NEGATIVE_NINETEEN_DIGITS in digits
        body = json.loads(page.raw) if may_overflow else orjson.loads(page.raw)
    except (orjson.JSONDecodeError, json.JSONDecodeError, UnicodeDecodeError):
        raise page.unexpected("the body is not JSON") from None
    if not isinstance(body, dict):
        raise page.unexpected("the body is not a JSON object")
    return body


def basic_auth_header(access_token: str) -> str:
    """Profile API auth: HTTP Basic with the token as username and an empty password."""
    return "Basic " + base64.b64encode(f"{access_token}:".encode()).decode()


def retry_after_seconds(header: Optional[str]) -> Optional[float]:
    """A Retry-After header in seconds or as an HTTP date; None when absent or unreadable."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        until = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if until.tzinfo is None:
        until = until.replace(tzinfo=timezone.utc)
    return max(0.0, (until - datetime.now(timezone.utc)).total_seconds())


def exponential_backoff(base: float, attempt: int, cap: float) -> float:
    """base * 2^(attempt-1), capped, with jitter so that workers do not retry in lockstep."""
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
