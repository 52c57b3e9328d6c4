"""Sending one Profile API request: pace, send, classify, then retry, step the page size down or raise.

This is the only place that talks HTTP (through one `requests.Session`). A stream asks for a page
and gets either the 2xx `requests.Response` (its body decoded by pages.py when the stream reads
it) or one of the typed errors of `errors.py`.

Not the CDK's HttpClient, ErrorHandler and BackoffStrategy: a 429 here cuts a rate shared by every
stream before anyone waits, a Retry-After is checked against a wait allowed across one request's
429s, a refused page size is stepped down for the endpoint, and every message masks the profile
id; the CDK's ErrorResolution has no place for these, so its interfaces would only be called
from this loop, as a second vocabulary for the same decisions.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from source_segment_profile.config import ConnectorConfig
from source_segment_profile.errors import (
    CredentialsRejected,
    FeatureUnavailable,
    ProfileNotFound,
    RateLimitExhausted,
    TransientApiError,
    TransportMisconfigured,
    UnexpectedResponse,
    body_excerpt,
    describe_request,
)
from source_segment_profile.masking import redact_profile_ids
from source_segment_profile.profile_reader import ReadingStopped
from source_segment_profile.rate_budget import RateBudget, wait_unless_stopped

CONNECT_TIMEOUT_SECONDS = 10.0
USER_AGENT = "source-segment-profile (Airbyte connector)"
RETRY_BASE_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# No Retry-After is documented for the Profile API. A 429 cuts the shared rate (rate_budget); a
# request that draws 429s again and again also backs off on its own, from 1 s, capped.
RATE_LIMIT_BASE_SECONDS = 1.0
RATE_LIMIT_MAX_BACKOFF_SECONDS = 60.0
# 408 Request Timeout: the server gave up waiting for a request that a proxy or an idle
# kept-alive connection delayed; like a 5xx, a new attempt usually succeeds.
RETRIED_STATUSES = frozenset({408})
# A 400 whose error names `limit` (e.g. "limit must be between 1 and 100"): the endpoint takes
# smaller pages than asked for. Segment's docs say 1..100 for list methods, the seed spec 1..200.
# Only a message about the parameter itself ("limit must be between 1 and 100", "'limit' is
# invalid"), not one that merely mentions a limit ("include exceeds the limit of 50 traits").
LIMIT_REFUSED = re.compile(r"^\W*limit\b|['\"`]limit['\"`]|\blimit\s*(must|should|is|exceeds|=|:)", re.IGNORECASE)

logger = logging.getLogger("airbyte")


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


class PageSizes:
    """The page size each endpoint is asked for: the configured one until the API refuses it.

    A refusal halves that endpoint's size for the rest of the sync (200 -> 100 -> 50 ...), logged
    once per step; requests already in flight with the old size simply retry with the new one.
    """

    def __init__(self, configured: int):
        self._configured = configured
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()

    def limit(self, endpoint: str, cap: int) -> int:
        with self._lock:
            return min(self._sizes.get(endpoint, self._configured), cap)

    def refused(self, endpoint: str, refused_limit: int, describe: str) -> None:
        with self._lock:
            current = self._sizes.get(endpoint, self._configured)
            if refused_limit > current:
                return  # another worker already stepped down past it
            smaller = max(1, refused_limit // 2)
            self._sizes[endpoint] = smaller
        logger.warning(
            f"The Profile API refused limit={refused_limit} on {describe}; {endpoint} asks for {smaller} items "
            "per page for the rest of this sync (set 'page_size' to skip this step next time)."
        )


@dataclass
class Attempts:
    """What one request met so far: retried failures and 429s."""

    failures: int = 0
    rate_limited: int = 0
    rate_limited_since: Optional[float] = None


@dataclass(frozen=True)
class PageRequest:
    url: str
    params: Mapping[str, Any]
    endpoint: str  # the stream (or "check", "list_users"): what messages and counters name
    external_id: str  # "" when the request is not about one profile
    page_size_cap: Optional[int]  # None: not paginated; else the client adds `limit`, at most this

    def describe(self, request_id: Optional[str] = None) -> str:
        return describe_request(self.endpoint, self.external_id, request_id)


class ProfileApiClient:
    def __init__(
        self,
        config: ConnectorConfig,
        budget: RateBudget,
        sleep: Callable[[float, Optional[threading.Event]], None] = wait_unless_stopped,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._config = config
        self.budget = budget
        self._sleep = sleep
        self._clock = clock
        self.counters = RequestCounters()
        self.page_sizes = PageSizes(config.page_size)
        self._session = build_session(config)

    def get(self, request: PageRequest, stopping: Optional[threading.Event] = None) -> requests.Response:
        """GETs one page, retrying what can be retried; raises a typed error for everything else.

        `stopping`: once set (the stream failed, or its reader left), nothing more is sent and the
        request ends with ReadingStopped.
        """
        attempts = Attempts()
        while True:
            params = self._with_page_size(request)
            sent_at = self._pace(stopping)
            try:
                response = self._send(request, params, sent_at)
            except requests.RequestException as error:
                failure, response = self._transport_failure(request, error), None
            if response is None:
                # Outside the `except`: requests' exception, chained, would print the URL and the id.
                self._retry_or_raise(request, failure, None, attempts, stopping)
                continue
            if response.status_code == 429:
                self._slow_down(request, response, sent_at, attempts, stopping)
                continue
            self.budget.accepted()
            if 200 <= response.status_code < 300:
                return response
            if self._page_size_refused(request, params, response):
                continue
            self._retry_or_raise(request, self._failure_of(request, response), response.headers.get("request-id"), attempts, stopping)

    def _with_page_size(self, request: PageRequest) -> dict[str, Any]:
        if not request.page_size_cap:
            return dict(request.params)
        return {**request.params, "limit": self.page_sizes.limit(request.endpoint, request.page_size_cap)}

    def _pace(self, stopping: Optional[threading.Event]) -> float:
        """Waits for the budget's next slot; raises ReadingStopped if the reading stopped meanwhile."""
        sent_at = self.budget.acquire(stopping)
        if stopping is not None and stopping.is_set():
            raise ReadingStopped()
        return sent_at

    def _send(self, request: PageRequest, params: Mapping[str, Any], sent_at: float) -> requests.Response:
        self.counters.add(request.endpoint, "requests")
        try:
            response = self._session.get(request.url, params=params, timeout=self._timeouts, allow_redirects=False)
            response.content  # the whole body, gunzipped: a cut-short body raises here  # noqa: B018
        except requests.RequestException as error:
            self._log_request(request, f"failed ({type(error).__name__})", sent_at, None)
            raise
        self._log_request(request, response.status_code, sent_at, response.headers.get("request-id"))
        return response

    def _slow_down(self, request: PageRequest, response: requests.Response, sent_at: float, attempts: Attempts, stopping: Optional[threading.Event]) -> None:
        """A 429: the shared rate is cut (and paused for a Retry-After); a request refused again and
        again also backs off on its own, since the space may have less left than the budget's floor."""
        now = self._clock()
        attempts.rate_limited += 1
        attempts.rate_limited_since = now if attempts.rate_limited_since is None else attempts.rate_limited_since
        self.counters.add(request.endpoint, "rate_limited")
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        own_wait = 0.0
        if retry_after is None and attempts.rate_limited > 1:
            own_wait = exponential_backoff(RATE_LIMIT_BASE_SECONDS, attempts.rate_limited - 1, RATE_LIMIT_MAX_BACKOFF_SECONDS)
        # Checked before anything waits: a wait that would end past the maximum fails now.
        self._fail_if_waiting_too_long(request, now - attempts.rate_limited_since, retry_after, own_wait, response.headers.get("request-id"))
        self.budget.throttled(sent_at, retry_after)
        if own_wait:
            self._sleep(own_wait, stopping)

    def _page_size_refused(self, request: PageRequest, params: Mapping[str, Any], response: requests.Response) -> bool:
        """True (and the endpoint's page size halved) when a 400 refuses the `limit` asked for."""
        limit = params.get("limit")
        if response.status_code != 400 or not limit or limit <= 1 or not refuses_page_size(response.content):
            return False
        self.page_sizes.refused(request.endpoint, limit, request.describe(response.headers.get("request-id")))
        return True

    def _failure_of(self, request: PageRequest, response: requests.Response) -> str:
        """A retried answer's description (5xx, 408); raises the typed error of every other one."""
        status, request_id = response.status_code, response.headers.get("request-id")
        if status >= 500 or status in RETRIED_STATUSES:
            return f"HTTP {status}"
        if status == 404:
            raise ProfileNotFound(request_id)
        if status == 400 and "class" in request.params and names_the_parameter(response.content, "class"):
            raise FeatureUnavailable(
                f"The Profile API refused class={request.params['class']} for {request.describe(request_id)} (HTTP 400: "
                f"{body_excerpt(response.content)!r}): this space does not filter traits by that class (no Unify audiences "
                f"or computed traits). Deselect the stream '{request.endpoint}' in the connection."
            )
        if status in (401, 403):
            raise CredentialsRejected(
                f"The Profile API answered {status} for space '{self._config.space_id}' ({request.describe(request_id)}): "
                "check the access token and the space id in Unify > Unify settings > API access; the token must belong to this space."
            )
        raise UnexpectedResponse(
            f"The Profile API refused {request.describe(request_id)} with HTTP {status}: {body_excerpt(response.content)!r}. "
            "This is not retried; check 'trait_names' and the id, or report it with the Request-Id.",
            status=status,
            request_id=request_id,
        )

    def _retry_or_raise(self, request: PageRequest, failure: str, request_id: Optional[str], attempts: Attempts, stopping: Optional[threading.Event]) -> None:
        """Backs off before the next attempt, or raises TransientApiError once the retries are spent."""
        attempts.failures += 1
        if attempts.failures > self._config.max_retries:
            raise TransientApiError(
                f"{request.describe(request_id)} at {self._config.host} failed {attempts.failures} times, last with {failure}. "
                "The Profile API or the network is unstable; the sync can be retried, and if this persists, report it to "
                "Segment support with the Request-Id."
            )
        self.counters.add(request.endpoint, "retries")
        logger.info(f"Retrying {request.describe(request_id)} after {failure} (attempt {attempts.failures} of {self._config.max_retries}).")
        self._sleep(exponential_backoff(RETRY_BASE_SECONDS, attempts.failures, RETRY_MAX_SECONDS), stopping)

    def _fail_if_waiting_too_long(self, request: PageRequest, waited: float, retry_after: Optional[float], own_wait: float, request_id: Optional[str]) -> None:
        """Raises RateLimitExhausted when the next wait would end past 'rate_limit_max_wait_minutes'."""
        max_wait = self._config.rate_limit_max_wait_seconds
        if waited + (retry_after if retry_after is not None else own_wait) <= max_wait:
            return
        what = (
            f"asked to wait Retry-After {retry_after:.3g} s, more than 'rate_limit_max_wait_minutes' allows ({max_wait:.3g} s)"
            if retry_after is not None and retry_after > max_wait
            else f"kept answering 429 for {waited:.0f} s, and the next wait would pass 'rate_limit_max_wait_minutes' ({max_wait:.3g} s)"
        )
        raise RateLimitExhausted(
            f"Segment's rate limit for space '{self._config.space_id}' (100 requests/s per space, shared with every "
            f"other caller) {what} on {request.describe(request_id)}. Lower 'requests_per_second', "
            "sync when the space is less busy, or raise the maximum wait."
        )

    def _transport_failure(self, request: PageRequest, error: requests.RequestException) -> str:
        """The failure in words that hold no URL; raises TransportMisconfigured for what no retry fixes."""
        reason, misconfigured = transport_failure_reason(error, self._config.request_timeout_seconds)
        if misconfigured:
            raise TransportMisconfigured(
                f"Could not connect to the Profile API at {self._config.host} for {request.describe()}: {reason}. This is a "
                "configuration problem, not retried: check 'api_base_url' and 'region', and the proxy and CA settings of the "
                "machine that runs the connector (HTTPS_PROXY, REQUESTS_CA_BUNDLE)."
            ) from None  # requests' exception, chained, would print the URL and so the id
        return reason

    @property
    def _timeouts(self) -> tuple[float, float]:
        return (min(CONNECT_TIMEOUT_SECONDS, self._config.request_timeout_seconds), self._config.request_timeout_seconds)

    def _log_request(self, request: PageRequest, outcome: Any, sent_at: float, request_id: Optional[str]) -> None:
        """One debug line per request (`read --debug`): never the token, the header or an id in clear."""
        if not logger.isEnabledFor(logging.DEBUG):
            return
        path = redact_profile_ids(urlsplit(request.url).path)
        milliseconds = (self._clock() - sent_at) * 1000
        logger.debug(f"GET {path} -> {outcome} in {milliseconds:.0f} ms (Request-Id {request_id or 'none'})")


def build_session(config: ConnectorConfig) -> requests.Session:
    """One Session for the sync: kept-alive connections pooled for every worker, gzip, no redirects.

    urllib3's own retries stay off: every retry goes through the budget and the classification
    above. Proxies and the CA bundle come from the environment, as requests does by default.
    """
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=config.max_concurrency + 1, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.update(
        {
            "Authorization": basic_auth_header(config.access_token),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
    )
    return session


def refuses_page_size(body: bytes) -> bool:
    """True when a 400 is a `validation_error` whose message names `limit`."""
    error = error_of(body)
    return error.get("code") == "validation_error" and bool(LIMIT_REFUSED.search(str(error.get("message"))))


def names_the_parameter(body: bytes, parameter: str) -> bool:
    """True when an error body's message names `parameter` (e.g. "class must be audience or computed_trait")."""
    return re.search(rf"\b{re.escape(parameter)}\b", str(error_of(body).get("message", ""))) is not None


def error_of(body: bytes) -> dict[str, Any]:
    """The `{"code", "message"}` of an error body, or {} when it has none."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def basic_auth_header(access_token: str) -> str:
    """Profile API auth: HTTP Basic with the token as username and an empty password."""
    return "Basic " + base64.b64encode(f"{access_token}:".encode()).decode()


def retry_after_seconds(header: Optional[str]) -> Optional[float]:
    """A Retry-After header (seconds or an HTTP date) in seconds, by urllib3's parser; None when
    absent or unreadable (`1e9`, `inf`: a 429 without a usable Retry-After). A value however large
    is returned as it is: the caller compares it with the maximum wait before waiting at all."""
    if not header:
        return None
    try:
        seconds = Retry().parse_retry_after(header)
    except InvalidHeader:
        return None
    return float(seconds) if seconds > 0 else None


def transport_failure_reason(error: requests.RequestException, timeout_seconds: float) -> tuple[str, bool]:
    """(what failed on the wire, in words that hold no URL; whether it is a configuration problem).

    TLS, proxy and URL errors are configuration problems that no retry fixes; refused or reset
    connections, cut-short answers and timeouts are the network's weather, and are retried.
    """
    cause = root_cause(error)
    if isinstance(error, requests.exceptions.SSLError):
        detail = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or type(cause).__name__
        return f"the TLS handshake failed ({detail})", True
    if isinstance(error, requests.exceptions.ProxyError):
        return f"the proxy failed ({type(cause).__name__}: {getattr(cause, 'strerror', None) or 'no reason given'})", True
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema)):
        return f"the URL is not one requests can send ({type(error).__name__})", True
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return "no connection within the connect timeout", False
    if isinstance(error, requests.exceptions.ReadTimeout):
        return f"no answer within 'request_timeout_seconds' ({timeout_seconds:g} s)", False
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused", False
    if isinstance(cause, ConnectionResetError):
        return "connection reset", False
    if isinstance(cause, socket.gaierror):
        return f"the host name did not resolve ({cause.strerror})", False
    if isinstance(error, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return f"the answer was cut short ({type(cause).__name__})", False
    return f"{type(error).__name__} ({type(cause).__name__})", False


def root_cause(error: BaseException) -> BaseException:
    """The innermost exception under requests' and urllib3's wrappers (MaxRetryError.reason,
    ProtocolError's last argument, __cause__/__context__)."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        reason = getattr(error, "reason", None)
        inner = (
            reason
            if isinstance(reason, BaseException)
            else error.args[-1]
            if error.args and isinstance(error.args[-1], BaseException)
            else error.__cause__ or error.__context__
        )
        if inner is None:
            break
        error = inner
    return error


def exponential_backoff(base: float, attempt: int, cap: float) -> float:
    """base * 2^(attempt-1), capped, with jitter so that workers do not retry in lockstep."""
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
