"""Failure semantics (issue 4): rate limits, retries, answers that are not data, timeouts, pacing.

Waits run on the fake clock of conftest: `request.at` is the clock's time when a request was made,
so the gap between two requests is the wait the connector asked for.
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import json
import logging
import re
from datetime import datetime, timedelta, timezone

import pytest
import requests
from airbyte_cdk.models import FailureType, Level

from source_segment_profile.api_client import PageRequest, ProfileApiClient
from source_segment_profile.pages import page_of as decoded_page
from source_segment_profile.config import parse_config
from source_segment_profile.rate_budget import RateBudget
from unit_tests.builders import TOKEN, Reply, config, data_page, event, metadata_body, page_of, paged_answer, profile_url, traits_page
from unit_tests.conftest import check_status, run_read
from unit_tests.local_server import LocalProfileServer, RawHttpServer

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

EMAIL = "email:jane.doe@example.com"
MASKED = "email:j***@example.com"


def gaps(requests_seen) -> list[float]:
    return [later.at - earlier.at for earlier, later in zip(requests_seen, requests_seen[1:])]


# --- 429 ------------------------------------------------------------------------------------


def test_retry_after_in_seconds_is_waited_before_the_retry(api, clock):
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After="2"), traits_page({"a": 1}))

    result = run_read(config(), ["user_traits"])

    seen = api.requests_to("user_traits")
    assert len(seen) == 2
    assert gaps(seen) == [pytest.approx(2.0)]
    assert result.records() == [{"external_id": "user_id:u1", "traits": {"a": 1}}]
    assert result.errors() == []


def test_retry_after_as_an_http_date_is_waited_before_the_retry(api, clock):
    until = datetime.now(timezone.utc) + timedelta(seconds=30)
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After=email.utils.format_datetime(until, usegmt=True)), traits_page({"a": 1}))

    result = run_read(config(), ["user_traits"])

    (gap,) = gaps(api.requests_to("user_traits"))
    assert 28.0 <= gap <= 30.0  # the date has one-second resolution
    assert len(result.records()) == 1


def test_429_without_retry_after_backs_off_exponentially_with_jitter(api, clock):
    api.replies("user_traits", "user_id:u1", *[Reply.error(429)] * 5, traits_page({"a": 1}))

    result = run_read(config(), ["user_traits"])

    waits = gaps(api.requests_to("user_traits"))
    assert len(waits) == 5
    # The first 429 only cuts the shared rate: the retry takes the budget's next slot. A request
    # refused again backs off on its own, from 1 s, doubling, with jitter.
    assert waits[0] < 0.5
    ratios = [wait / 2 ** attempt for attempt, wait in enumerate(waits[1:])]
    assert all(0.5 <= ratio <= 1.0 for ratio in ratios), waits
    assert any(ratio < 0.999 for ratio in ratios), f"no jitter: {waits}"
    assert len(result.records()) == 1
    (budget,) = clock.budgets
    assert budget.cuts == 5 and budget.seconds_paused == 0  # each retry was sent after the last cut


def test_a_429_pauses_the_one_budget_every_stream_goes_through(api, clock):
    """The limit is per space: the pause is taken on the budget that paces every stream's requests."""
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After="30"), traits_page({"a": 1}))
    api.pages("account_traits", "group_id:g1", traits_page({"b": 2}))
    api.pages("account_external_ids", "group_id:g1", data_page([]))

    result = run_read(config(account_external_ids=["group_id:g1"]), ["user_traits", "account_traits", "account_external_ids"])

    assert len(result.records()) == 2
    (budget,) = clock.budgets  # one budget for the whole sync
    assert len(api.seen) == 4
    assert budget.seconds_paused == pytest.approx(30.0, abs=0.1)
    account_request = api.requests_to("account_traits")[0]
    assert account_request.at - api.seen[0].at >= 30.0


def test_rate_limit_waits_are_bounded_then_fail_with_a_transient_error_naming_the_space(api, clock):
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After="30"))

    result = run_read(config(rate_limit_max_wait_minutes=1), ["user_traits"])

    seen = api.requests_to("user_traits")
    assert len(seen) == 3  # waits of 30 + 30 s fit in one minute; a third would not
    assert seen[-1].at - seen[0].at == pytest.approx(60.0)
    error = result.stream_error("user_traits")
    assert error.failure_type == FailureType.transient_error
    assert "spa_unit" in error.message
    assert "rate limit" in error.message and "429" in error.message
    assert result.records() == []


def test_rate_limit_backoff_without_retry_after_is_bounded_too(api, clock):
    api.replies("user_traits", "user_id:u1", Reply.error(429))

    result = run_read(config(rate_limit_max_wait_minutes=0.25), ["user_traits"])

    seen = api.requests_to("user_traits")
    assert seen[-1].at - seen[0].at <= 15.0
    assert 3 <= len(seen) <= 10
    assert result.stream_error("user_traits").failure_type == FailureType.transient_error


def test_a_retry_after_in_the_past_does_not_retry_for_ever(api, clock):
    past = email.utils.format_datetime(datetime.now(timezone.utc) - timedelta(minutes=5), usegmt=True)

    def answer(request):
        # A safety valve so that the bug shows as a failed assertion, not a hung suite.
        return Reply.error(401) if len(api.seen) > 300 else Reply.error(429, Retry_After=past)

    api.handler("user_traits", "user_id:u1", answer)

    result = run_read(config(rate_limit_max_wait_minutes=1), ["user_traits"])

    assert len(api.seen) <= 100
    assert result.stream_error("user_traits").failure_type == FailureType.transient_error


# --- 5xx, resets, timeouts ------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504])
def test_a_5xx_or_408_is_retried_and_the_profile_is_read(api, clock, status):
    api.replies("user_events", "user_id:u1", Reply.error(status), data_page([event("m1")]))

    result = run_read(config(), ["user_events"])

    assert len(api.requests_to("user_events")) == 2
    assert [record["messageId"] for record in result.records()] == ["m1"]
    assert result.errors() == []


def test_5xx_beyond_max_retries_fails_with_a_transient_error_naming_endpoint_id_and_request_id(api, clock):
    api.replies(
        "user_events",
        EMAIL,
        Reply.error(500, Request_Id="rid-first"),
        Reply.error(502, Request_Id="rid-second"),
        Reply.error(503, Request_Id="rid-last"),
        data_page([event("never")]),
    )

    result = run_read(config(user_external_ids=[EMAIL], max_retries=2), ["user_events"])

    assert len(api.requests_to("user_events")) == 3
    error = result.stream_error("user_events")
    assert error.failure_type == FailureType.transient_error
    assert "user_events" in error.message
    assert MASKED in error.message
    assert "rid-last" in error.message
    assert "503" in error.message
    assert "jane.doe" not in result.all_text()
    assert result.records() == []


def test_retries_back_off_exponentially(api, clock):
    api.replies("user_traits", "user_id:u1", Reply.error(500), Reply.error(500), Reply.error(500), traits_page({}))

    run_read(config(), ["user_traits"])

    waits = gaps(api.requests_to("user_traits"))
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):
        assert 0.5 * 0.5 * 2**attempt <= wait <= 0.5 * 2**attempt + 0.05


# Refused, reset, cut-short and silent connections: test_transport_failures.py, on real sockets.


def test_max_retries_zero_fails_on_the_first_5xx(api, clock):
    api.replies("user_traits", "user_id:u1", Reply.error(500), traits_page({}))

    result = run_read(config(max_retries=0), ["user_traits"])

    assert len(api.requests_to("user_traits")) == 1
    assert result.stream_error("user_traits").failure_type == FailureType.transient_error


# --- answers that are not data --------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 405, 409, 422])
def test_a_4xx_fails_once_with_endpoint_id_status_request_id_and_body(api, clock, status):
    api.replies(
        "user_traits",
        EMAIL,
        Reply(status, {"error": {"code": "validation_error", "message": "include is too long"}}, {"Request-Id": "rid-400"}),
        traits_page({}),
    )

    result = run_read(config(user_external_ids=[EMAIL]), ["user_traits"])

    assert len(api.requests_to("user_traits")) == 1
    error = result.stream_error("user_traits")
    assert error.failure_type == FailureType.system_error
    for part in ("user_traits", MASKED, str(status), "rid-400", "include is too long"):
        assert part in error.message
    assert "jane.doe" not in result.all_text()


def test_a_long_error_body_is_cut_in_the_message(api, clock):
    api.replies("user_traits", "user_id:u1", Reply(400, "x" * 5000))

    result = run_read(config(), ["user_traits"])

    message = result.stream_error("user_traits").message
    assert "x" * 100 in message
    assert len(message) < 1000


NOT_DATA = [
    ("user_traits", Reply(200, "<html>maintenance</html>", {"Content-Type": "text/html"}), "<html>maintenance"),
    ("user_events", Reply(200, b"{\"data\": [", {}), "{\"data\": ["),
    ("user_events", Reply(200, {"data": "not a list"}), "not a list"),
    ("user_external_ids", Reply(200, {"data": [1, 2]}), "[1, 2]"),
    ("user_traits", Reply(200, {"traits": ["a", "b"]}), "traits"),
    ("user_links", Reply(200, [{"to_collection": "accounts"}]), "to_collection"),
    ("user_metadata", Reply(200, {"metadata": "soon"}), "soon"),
]


@pytest.mark.parametrize("stream, reply, body_start", NOT_DATA, ids=[f"{case[0]}-{index}" for index, case in enumerate(NOT_DATA)])
def test_a_200_that_is_not_the_documented_json_fails_clearly(api, clock, stream, reply, body_start):
    reply.headers["Request-Id"] = "rid-bad"
    api.replies(stream, EMAIL, reply)

    result = run_read(config(user_external_ids=[EMAIL]), [stream])

    error = result.stream_error(stream)
    assert error.failure_type == FailureType.system_error
    for part in (stream, MASKED, "rid-bad", body_start):
        assert part in error.message, part
    assert result.records() == []


def test_a_non_json_answer_names_its_status(api, clock):
    api.replies("user_traits", "user_id:u1", Reply(200, "<html>captive portal</html>"))

    result = run_read(config(), ["user_traits"])

    assert "200" in result.stream_error("user_traits").message


# --- every request has a timeout, and requests are paced --------------------------------------


def test_every_request_carries_the_configured_timeout(api, clock):
    for stream in ("user_traits", "user_events", "user_external_ids", "user_links"):
        api.replies(stream, "user_id:u1", Reply.error(500), page_of(stream, 1))
    api.pages("user_metadata", "user_id:u1", metadata_body())

    run_read(config(request_timeout_seconds=7), ["user_traits", "user_events", "user_external_ids", "user_metadata", "user_links"])

    assert len(api.seen) == 9
    for request in api.seen:
        connect, read_timeout = request.timeout
        assert read_timeout == 7.0
        assert 0 < connect <= 30


def test_requests_are_paced_at_the_budget_across_streams(api, clock):
    ids = [f"user_id:u{n}" for n in range(4)]
    for profile in ids:
        api.pages("user_traits", profile, traits_page({"a": 1}))
        api.pages("user_external_ids", profile, data_page([]))

    run_read(config(user_external_ids=ids, requests_per_second=4, max_concurrency=1), ["user_traits", "user_external_ids"])

    times = [request.at for request in api.seen]
    assert len(times) == 8
    assert all(gap >= 0.25 - 1e-9 for gap in gaps(api.seen)), gaps(api.seen)
    assert times[-1] - times[0] == pytest.approx(7 * 0.25)


def test_an_unreadable_retry_after_is_taken_as_none(api, clock):
    api.replies("user_traits", "user_id:u1", *[Reply.error(429, Retry_After="soon")] * 2, traits_page({"a": 1}))

    result = run_read(config(), ["user_traits"])

    first, second = gaps(api.requests_to("user_traits"))
    assert first < 0.5 and 0.5 <= second <= 1.0  # as without Retry-After: the own backoff from the second 429
    (budget,) = clock.budgets
    assert budget.seconds_paused == 0
    assert len(result.records()) == 1


def test_a_retry_after_longer_than_the_maximum_wait_fails_at_once(api, clock):
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After="3600"), traits_page({"a": 1}))

    result = run_read(config(rate_limit_max_wait_minutes=10), ["user_traits"])

    assert len(api.seen) == 1
    assert sum(clock.sleeps) < 1.0  # it did not sit through the hour
    error = result.stream_error("user_traits")
    assert error.failure_type == FailureType.transient_error
    assert "rate_limit_max_wait_minutes" in error.message


# --- answers the real API gives that a strict client trips on --------------------------------

# A JavaScript client wrote half a surrogate pair into a trait; orjson rejects the whole body.
LONE_SURROGATE_BODY = (
    b'{"traits": {"nickname": "Jo \\ud83d", "emoji": "\\ud83d\\ude00", "\\udc00key": 1},'
    b' "cursor": {"url": "", "has_more": false, "next": ""}}'
)


def test_a_lone_surrogate_in_a_trait_is_delivered_as_a_replacement_character(api):
    api.replies("user_traits", "user_id:u1", Reply(200, LONE_SURROGATE_BODY))

    result = run_read(config(), ["user_traits"])

    assert result.errors() == []
    assert result.records() == [
        {"external_id": "user_id:u1", "traits": {"nickname": "Jo \ufffd", "emoji": "\U0001f600", "\ufffdkey": 1}}
    ]


def test_check_succeeds_on_a_probe_answer_with_a_lone_surrogate(api):
    api.replies("user_traits", "user_id:u1", Reply(200, LONE_SURROGATE_BODY))

    assert check_status(config())[:2] == ("SUCCEEDED", None)


def test_integers_beyond_64_bits_are_decoded_exactly(api):
    """The records of such traits are checked on the command line's output in test_streams."""
    body = b'{"traits": {"big": 123456789012345678901234567890, "negative": -18446744073709551617, "max": 18446744073709551615}}'
    api.replies("user_traits", "user_id:u1", Reply(200, body))
    client = ProfileApiClient(parse_config(config()), RateBudget(1000))

    response = client.get(PageRequest(profile_url("user_traits", "user_id:u1"), {}, "user_traits", "user_id:u1", 200))
    page = decoded_page(response, "user_traits", "user_id:u1")

    assert page.body["traits"] == {"big": 123456789012345678901234567890, "negative": -(2**64) - 1, "max": 2**64 - 1}
    assert all(isinstance(value, int) for value in page.body["traits"].values())


def test_a_retry_is_not_sent_once_the_reading_has_stopped(api, clock):
    """A stream that failed elsewhere must not keep one worker retrying for its own maximum wait."""
    import threading

    from source_segment_profile.profile_reader import ReadingStopped

    stopping = threading.Event()
    answers = []

    def fail_then_stop(request):
        answers.append(request)
        stopping.set()  # another profile failed while this request was out
        return Reply.error(503)

    api.handler("user_traits", "user_id:u1", fail_then_stop)
    client = ProfileApiClient(parse_config(config()), RateBudget(1000, clock=clock.now, sleep=clock.sleep), sleep=clock.sleep, clock=clock.now)

    with pytest.raises(ReadingStopped):
        client.get(PageRequest(profile_url("user_traits", "user_id:u1"), {}, "user_traits", "user_id:u1", 200), stopping)

    assert len(answers) == 1


# --- page size -------------------------------------------------------------------------------

LIMIT_REFUSED = {"error": {"code": "validation_error", "message": "limit must be between 1 and 100"}}


def refusing_limits_above(most: int, answer):
    return lambda request: Reply(400, LIMIT_REFUSED) if int(request.param("limit")) > most else answer(request)


def test_an_endpoint_that_refuses_the_page_size_is_asked_for_half_for_the_rest_of_the_sync(api):
    ids = [f"user_id:s{n}" for n in range(8)]
    for profile in ids:
        api.handler("user_events", profile, refusing_limits_above(100, paged_answer("user_events", profile, pages=2)))
        api.pages("user_traits", profile, traits_page({"a": 1}))

    result = run_read(config(user_external_ids=ids, max_concurrency=3), ["user_events", "user_traits"])

    assert result.errors() == []
    events = [(record["external_id"], record["messageId"]) for record in result.records("user_events")]
    assert sorted(events) == sorted((profile, f"{profile}-m{n}") for profile in ids for n in (1, 2))  # each once
    refused = [request for request in api.requests_to("user_events") if request.param("limit") == "200"]
    assert 1 <= len(refused) <= 3  # only what was in flight when the first refusal came
    answered = [request for request in api.requests_to("user_events") if request.param("limit") != "200"]
    assert {request.param("limit") for request in answered} == {"100"} and len(answered) == 16
    assert {request.param("limit") for request in api.requests_to("user_traits")} == {"200"}  # other endpoints keep theirs
    (warning,) = [line for line in result.logs(Level.WARN) if "limit=200" in line]
    assert "user_events" in warning and "100" in warning and "page_size" in warning


def test_the_page_size_steps_down_again_if_half_is_refused_too(api):
    api.handler("user_external_ids", "user_id:u1", refusing_limits_above(25, paged_answer("user_external_ids", "user_id:u1", pages=2)))

    result = run_read(config(), ["user_external_ids"])

    assert [request.param("limit") for request in api.seen] == ["200", "100", "50", "25", "25"]
    assert len(result.records()) == 2
    assert len([line for line in result.logs(Level.WARN) if "refused limit=" in line]) == 3


@pytest.mark.parametrize(
    "error",
    [
        {"code": "validation_error", "message": "include must name at most 50 traits"},
        {"code": "invalid_request_error", "message": "limit is not supported with verbose"},
    ],
    ids=["validation-error-not-about-limit", "other-code-naming-limit"],
)
def test_a_400_that_is_not_a_page_size_refusal_fails_after_one_request(api, error):
    api.replies("user_events", "user_id:u1", Reply(400, {"error": error}), data_page([event("m1")]))

    result = run_read(config(), ["user_events"])

    assert [request.param("limit") for request in api.seen] == ["200"]
    assert result.stream_error("user_events").failure_type == FailureType.system_error
    assert error["message"] in result.stream_error("user_events").message
    assert not [line for line in result.logs(Level.WARN) if "refused limit=" in line]


# --- --debug ---------------------------------------------------------------------------------


@pytest.fixture
def restores_the_log_level():
    """`--debug` sets the airbyte logger to DEBUG for the process; other tests expect it back."""
    logger = logging.getLogger("airbyte")
    level = logger.level
    yield
    logger.setLevel(level)


def test_debug_logs_one_line_per_request_with_masked_id_status_time_and_request_id(api, capfd, restores_the_log_level):
    api.pages("user_traits", EMAIL, traits_page({"a": 1}, next="b"), traits_page({"b": 2}))
    api.replies("user_events", EMAIL, Reply.error(503, Request_Id="rid-503"), data_page([event("m1")]))

    result = run_read(config(user_external_ids=[EMAIL]), ["user_traits", "user_events"], debug=True)

    printed = capfd.readouterr().out  # the CDK prints debug lines itself, beside the messages
    debug_lines = [json.loads(line)["message"] for line in printed.splitlines() if line.startswith('{"type": "DEBUG"')]
    request_lines = [line for line in debug_lines if line.startswith("GET ")]
    assert len(request_lines) == len(api.seen) == 4
    pattern = r"GET /v1/spaces/spa_unit/collections/users/profiles/email:j\*\*\*@example\.com \(user_external_ids\[0\]\)/(traits|events) -> (200|503) in \d+ ms \(Request-Id ([\w-]+)\)"
    assert all(re.fullmatch(pattern, line) for line in request_lines), request_lines
    request_ids = [re.fullmatch(pattern, line).group(3) for line in request_lines]
    assert "rid-503" in request_ids and len(set(request_ids)) == 4
    assert len(result.records()) == 2
    for secret in (TOKEN, base64.b64encode(f"{TOKEN}:".encode()).decode()):
        assert secret not in printed + result.all_text()
    for line in debug_lines + result.logs():
        assert "jane.doe" not in line  # records carry the id as configured; logs never


def test_without_debug_no_request_line_is_logged(api, capfd):
    api.pages("user_traits", "user_id:u1", traits_page({"a": 1}))

    result = run_read(config(), ["user_traits"])

    assert "GET /v1/" not in capfd.readouterr().out + result.all_text()


# --- real sockets: gzip (its failures: test_transport_failures.py) ---------------------------


def test_a_gzip_answer_is_asked_for_and_decoded():
    body = gzip.compress(json.dumps(traits_page({"plan": "pro", "city": "Zürich"})).encode())
    server = LocalProfileServer().replies("user_traits", "user_id:u1", Reply(200, body, {"Content-Encoding": "gzip"}))

    with server.running():
        result = run_read(config(api_base_url=server.url), ["user_traits"])

    assert result.records() == [{"external_id": "user_id:u1", "traits": {"plan": "pro", "city": "Zürich"}}]
    ((_, headers),) = server.seen
    assert "gzip" in headers["Accept-Encoding"]
