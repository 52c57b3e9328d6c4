"""Sending one Profile API request: pacing, retries and the classification of every answer.

This is the only place that talks HTTP (through one `requests.Session`). Streams ask for a page and
get either a decoded JSON body or one of the typed errors of `errors.py`.
"""

from __future__ import annotations

import base64
import dataclasses
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
from urllib.parse import quote, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from source_segment_profile.config import ConnectorConfig
from source_segment_profile.errors import (
    CredentialsRejected,
    ProfileNotFound,
    RateLimitExhausted,
    TransientApiError,
    TransportMisconfigured,
    UnexpectedResponse,
    body_excerpt,
    describe_request,
)
from source_segment_profile.masking import mask_external_id
from source_segment_profile.profile_reader import ReadingStopped
from source_segment_profile.rate_budget import RateBudget, wait_unless_stopped

# orjson parses integers exactly within [-2**63, 2**64) and silently turns the rest into floats;
# traits hold such numbers. Those have 20+ digits, or 19 after a minus sign. The body's digits are
# mapped to "0" and everything else but "-" to " " (bytes.translate, one C pass), and two substring
# searches decide. A match inside a string only costs the slower exact parser.
DIGITS_AS_ZEROS = bytes(b"0"[0] if chr(byte).isdigit() and byte < 128 else byte if byte == b"-"[0] else b" "[0] for byte in range(256))
TWENTY_DIGITS = b"0" * 20
NEGATIVE_NINETEEN_DIGITS = b"-" + b"0" * 19
# A JSON text can only carry a lone UTF-16 surrogate as an escape, \uD800 to \uDFFF.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
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
    server_date: Optional[str] = None  # the answer's Date header: the API's clock

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

    def get_page(
        self,
        url: str,
        params: Mapping[str, Any],
        endpoint: str,
        external_id: str,
        page_size_cap: Optional[int] = None,
        stopping: Optional[threading.Event] = None,
    ) -> ApiPage:
        """GETs one page, retrying what can be retried; raises a typed error for everything else.

        `stopping`: once set (the sync failed elsewhere), no further attempt is made: ReadingStopped.

        `page_size_cap`: the endpoint is paginated and takes at most this `limit`; the client adds
        `limit` itself, so that a refused page size is stepped down in one place.
        """
        failed_attempts = 0
        rate_limited_since: Optional[float] = None
        rate_limit_attempts = 0
        while True:
            query = dict(params)
            if page_size_cap:
                query["limit"] = self.page_sizes.limit(endpoint, page_size_cap)
            sent_at = self.budget.acquire(stopping)
            if stopping is not None and stopping.is_set():
                raise ReadingStopped()  # the stream failed or its reader left while this request waited
            self.counters.add(endpoint, "requests")
            try:
                response = self._session.get(url, params=query, timeout=self._timeouts, allow_redirects=False)
                body = response.content  # the whole body, gunzipped; a cut-short body raises here
            except requests.RequestException as error:
                # requests' own message quotes the URL, and the URL holds the profile id: only
                # the failure's kind and reason go further.
                failure, request_id = self._transport_failure(error, endpoint, external_id), None
                self._log_request(url, external_id, f"failed ({failure})", sent_at, None)
            else:
                request_id = response.headers.get("request-id")
                status = response.status_code
                self._log_request(url, external_id, status, sent_at, request_id)
                if status == 429:
                    now = self._clock()
                    rate_limited_since = now if rate_limited_since is None else rate_limited_since
                    rate_limit_attempts += 1
                    self.counters.add(endpoint, "rate_limited")
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
                    # Beyond the shared pause and cut, a request refused again and again backs off
                    # on its own: the space may have less left than the budget's floor.
                    own_wait = 0.0
                    if retry_after is None and rate_limit_attempts > 1:
                        own_wait = exponential_backoff(RATE_LIMIT_BASE_SECONDS, rate_limit_attempts - 1, RATE_LIMIT_MAX_BACKOFF_SECONDS)
                    # Checked before anything waits: a wait that would end past the maximum fails now.
                    self._fail_if_waiting_too_long(now - rate_limited_since, retry_after, own_wait, endpoint, external_id, request_id)
                    self.budget.throttled(sent_at, retry_after)
                    if own_wait:
                        self._sleep(own_wait, stopping)
                    continue
                self.budget.accepted()
                if 200 <= status < 300:
                    return decoded_page(body, url, endpoint, external_id, request_id, status, response.headers.get("date"))
                if status == 404:
                    raise ProfileNotFound(request_id)
                if status in (401, 403):
                    raise CredentialsRejected(
                        f"The Profile API answered {status} for space '{self._config.space_id}' "
                        f"({describe_request(endpoint, external_id, request_id)}): check the access token and "
                        "the space id in Unify > Unify settings > API access; the token must belong to this space."
                    )
                if status == 400 and "limit" in query and query["limit"] > 1 and refuses_page_size(body):
                    self.page_sizes.refused(endpoint, query["limit"], describe_request(endpoint, external_id, request_id))
                    continue
                if status >= 500 or status in RETRIED_STATUSES:
                    failure = f"HTTP {status}"
                else:
                    raise UnexpectedResponse(
                        f"The Profile API refused {describe_request(endpoint, external_id, request_id)} with "
                        f"HTTP {status}: {body_excerpt(body)!r}. This is not retried; check "
                        "'trait_names' and the id, or report it with the Request-Id.",
                        status=status,
                        request_id=request_id,
                    )
            failed_attempts += 1
            if failed_attempts > self._config.max_retries:
                raise TransientApiError(
                    f"{describe_request(endpoint, external_id, request_id)} at {self._config.host} failed {failed_attempts} times, "
                    f"last with {failure}. The Profile API or the network is unstable; the sync can be retried, "
                    "and if this persists, report it to Segment support with the Request-Id."
                )
            self.counters.add(endpoint, "retries")
            logger.info(
                f"Retrying {describe_request(endpoint, external_id, request_id)} after {failure} "
                f"(attempt {failed_attempts} of {self._config.max_retries})."
            )
            self._sleep(exponential_backoff(RETRY_BASE_SECONDS, failed_attempts, RETRY_MAX_SECONDS), stopping)
            if stopping is not None and stopping.is_set():
                raise ReadingStopped()

    def _fail_if_waiting_too_long(
        self, waited: float, retry_after: Optional[float], own_wait: float, endpoint: str, external_id: str, request_id: Optional[str]
    ) -> None:
        """Raises RateLimitExhausted when the next wait would end past 'rate_limit_max_wait_minutes'."""
        max_wait = self._config.rate_limit_max_wait_seconds
        told = f"Retry-After {retry_after:.0f} s" if retry_after is not None and retry_after > max_wait else None
        if waited + (retry_after if retry_after is not None else own_wait) <= max_wait:
            return
        what = (
            f"asked to wait {told}, more than 'rate_limit_max_wait_minutes' allows ({max_wait:.0f} s)"
            if told
            else f"kept answering 429 for {waited:.0f} s, and the next wait would pass 'rate_limit_max_wait_minutes' ({max_wait:.0f} s)"
        )
        raise RateLimitExhausted(
            f"Segment's rate limit for space '{self._config.space_id}' (100 requests/s per space, shared with every "
            f"other caller) {what} on {describe_request(endpoint, external_id, request_id)}. Lower 'requests_per_second', "
            "sync when the space is less busy, or raise the maximum wait."
        )

    def _transport_failure(self, error: requests.RequestException, endpoint: str, external_id: str) -> str:
        """The failure in words that hold no URL; raises TransportMisconfigured for what no retry fixes."""
        reason, misconfigured = transport_failure_reason(error, self._config.request_timeout_seconds)
        if misconfigured:
            raise TransportMisconfigured(
                f"Could not connect to the Profile API at {self._config.host} for {describe_request(endpoint, external_id, None)}: "
                f"{reason}. This is a configuration problem, not retried: check 'api_base_url' and 'region', and the "
                "proxy and CA settings of the machine that runs the connector (HTTPS_PROXY, REQUESTS_CA_BUNDLE)."
            ) from None  # requests' exception, chained, would print the URL and so the id
        return reason

    @property
    def _timeouts(self) -> tuple[float, float]:
        return (min(CONNECT_TIMEOUT_SECONDS, self._config.request_timeout_seconds), self._config.request_timeout_seconds)

    def _log_request(self, url: str, external_id: str, outcome: Any, sent_at: float, request_id: Optional[str]) -> None:
        """One debug line per request (`read --debug`): never the token, the header or an email in clear."""
        if not logger.isEnabledFor(logging.DEBUG):
            return
        path = urlsplit(url).path
        if external_id:
            path = path.replace(f"/{quote(external_id, safe=':')}/", f"/{mask_external_id(external_id)}/")
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


def decoded_page(
    body: bytes, url: str, endpoint: str, external_id: str, request_id: Optional[str], status: int, server_date: Optional[str]
) -> ApiPage:
    page = ApiPage(None, body, request_id, url, endpoint, external_id, status, server_date)
    return dataclasses.replace(page, body=decode_json_object(page))


def decode_json_object(page: ApiPage) -> dict[str, Any]:
    """The page's raw body as a JSON object, or the error that says it is not one.

    orjson is several times faster; the stdlib parser takes the bodies orjson cannot read exactly
    (integers beyond 64 bits) or at all (lone UTF-16 surrogate escapes, which JavaScript clients
    send in traits, and bytes that are not UTF-8). Strings that cannot be UTF-8 are delivered
    with U+FFFD in place of what cannot be encoded, so that one odd trait never fails a sync.
    """
    raw = page.raw
    digits = raw.translate(DIGITS_AS_ZEROS)
    body: Any = None
    if TWENTY_DIGITS not in digits and NEGATIVE_NINETEEN_DIGITS not in digits:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    if body is None:
        try:
            body = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            raise page.unexpected("the body is not JSON") from None
        if SURROGATE_ESCAPE.search(raw):
            body = without_lone_surrogates(body)
    if not isinstance(body, dict):
        raise page.unexpected("the body is not a JSON object")
    return body


def without_lone_surrogates(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            # Through UTF-16, valid pairs join into one character; lone halves become U+FFFD.
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, dict):
        return {without_lone_surrogates(key): without_lone_surrogates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    return value


def refuses_page_size(body: bytes) -> bool:
    """True when a 400 is a `validation_error` whose message names `limit`."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("code") == "validation_error" and bool(LIMIT_REFUSED.search(str(error.get("message"))))


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
