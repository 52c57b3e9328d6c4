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
import os
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional

import orjson
import requests
from requests.adapters import HTTPAdapter

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
from source_segment_profile.rate_budget import RateBudget

# Failures that a later attempt can get past: the request never got a complete answer.
RETRYABLE_EXCEPTIONS = (
    requests.exceptions.ConnectionError,  # resets, refused connections, connect timeouts
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,  # a body cut short of its Content-Length
    requests.exceptions.ContentDecodingError,
)
# orjson parses integers exactly within [-2**63, 2**64) and silently turns the rest into floats;
# traits hold such numbers. Those have 20+ digits, or 19 after a minus sign. Two plain searches
# (~30 us on a 90 KB page) decide; a match inside a string only costs the slower exact parser.
TWENTY_DIGITS = re.compile(rb"\d{20}")
NEGATIVE_NINETEEN_DIGITS = re.compile(rb"-\d{19}")
CONNECT_TIMEOUT_SECONDS = 10.0
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


class ProfileApiClient:
    def __init__(
        self,
        config: ConnectorConfig,
        budget: RateBudget,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._config = config
        self._budget = budget
        self._sleep = sleep
        self.counters = RequestCounters()
        self._session = requests.Session()
        # Proxies and CA bundle from the environment are resolved once, here, not per request:
        # with trust_env on, requests looks up ~/.netrc and the proxy settings for every request,
        # which cost more CPU than the rest of the request put together.
        self._session.proxies = requests.utils.get_environ_proxies(config.base_url)
        self._session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._session.trust_env = False
        pool_size = config.max_concurrency + 2
        self._session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=pool_size))
        self._session.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=pool_size))
        self._session.headers.update(
            {"Authorization": basic_auth_header(config.access_token), "Accept": "application/json"}
        )

    def get_page(self, url: str, params: Mapping[str, Any], endpoint: str, external_id: str) -> ApiPage:
        """GETs one page, retrying what can be retried; raises a typed error for everything else."""
        failed_attempts = 0
        rate_limit_waited = 0.0
        rate_limit_attempts = 0
        while True:
            self._budget.acquire()
            self.counters.add(endpoint, "requests")
            try:
                response = self._send(url, params)
                response.content  # reads the whole body now, so a truncated one fails here
            except RETRYABLE_EXCEPTIONS as error:
                failure, request_id = f"{type(error).__name__}", None
            else:
                request_id = response.headers.get("Request-Id")
                status = response.status_code
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
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
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
                    self._budget.pause_for(wait)
                    continue
                if status >= 500:
                    failure = f"HTTP {status}"
                else:
                    raise UnexpectedResponse(
                        f"The Profile API refused {describe_request(endpoint, external_id, request_id)} with "
                        f"HTTP {status}: {body_excerpt(response.content)!r}. This is not retried; check "
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

    def _send(self, url: str, params: Mapping[str, Any]) -> requests.Response:
        """One GET, prepared here and handed to Session.send.

        Session.request would merge environment settings, cookies, auth and hooks into every
        request, none of which this API needs: a quarter of a request's CPU, on the interpreter
        lock that the whole sync shares. Redirects are not followed: the API does not redirect,
        and a redirect is answered as an unexpected status rather than followed with the token.
        """
        request = requests.PreparedRequest()
        request.prepare(method="GET", url=url, headers=self._session.headers, params=params)
        return self._session.send(
            request,
            timeout=(CONNECT_TIMEOUT_SECONDS, self._config.request_timeout_seconds),
            allow_redirects=False,
        )

    @staticmethod
    def _decoded(response: requests.Response, url: str, endpoint: str, external_id: str, request_id: Optional[str]) -> ApiPage:
        page = ApiPage(None, response.content, request_id, url, endpoint, external_id, response.status_code)
        return dataclasses.replace(page, body=decode_json_object(page))


def decode_json_object(page: ApiPage) -> dict[str, Any]:
    """The page's raw body as a JSON object, or the error that says it is not one.

    orjson is several times faster, but turns integers beyond 64 bits into floats, and traits
    hold such numbers; a body that may hold one takes the exact stdlib parser instead.
    """
    try:
        may_overflow = TWENTY_DIGITS.search(page.raw) or NEGATIVE_NINETEEN_DIGITS.search(page.raw)
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
