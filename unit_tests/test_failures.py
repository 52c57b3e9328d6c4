"""Failure semantics (issue 4): rate limits, retries, answers that are not data, timeouts, pacing.

Waits run on the fake clock of conftest: `request.at` is the clock's time when a request was made,
so the gap between two requests is the wait the connector asked for.
"""

from __future__ import annotations

import email.utils
from datetime import datetime, timedelta, timezone

import pytest
from airbyte_cdk.models import FailureType

from source_segment_profile.http_transport import TransportError
from unit_tests.builders import Reply, config, data_page, event, metadata_body, page_of, traits_page
from unit_tests.conftest import run_read

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
    ratios = [wait / 2 ** attempt for attempt, wait in enumerate(waits)]  # base 1 s, doubling
    assert all(0.5 <= ratio <= 1.0 for ratio in ratios), waits
    assert any(ratio < 0.999 for ratio in ratios), f"no jitter: {waits}"
    assert len(result.records()) == 1


def test_a_429_pauses_the_one_budget_every_stream_goes_through(api, clock):
    """The limit is per space: the pause is taken on the budget that paces every stream's requests."""
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After="30"), traits_page({"a": 1}))
    api.pages("account_traits", "group_id:g1", traits_page({"b": 2}))
    api.pages("account_external_ids", "group_id:g1", data_page([]))

    result = run_read(config(account_external_ids=["group_id:g1"]), ["user_traits", "account_traits", "account_external_ids"])

    assert len(result.records()) == 2
    (budget,) = clock.budgets  # one budget for the whole sync
    assert budget.requests_granted == len(api.seen) == 4  # every stream's requests went through it
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


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_is_retried_and_the_profile_is_read(api, clock, status):
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


@pytest.mark.parametrize(
    "failure",
    [
        TransportError("ConnectionRefusedError: [Errno 111] Connection refused"),
        TransportError("ConnectionResetError: [Errno 104] Connection reset by peer"),
        TransportError("timed out"),
        TransportError("body cut short (512 bytes of 2048)"),
    ],
    ids=["refused", "reset", "timeout", "cut-short"],
)
def test_connection_failures_and_timeouts_are_retried(api, clock, failure):
    api.replies("user_external_ids", "user_id:u1", failure, failure, page_of("user_external_ids", 1))

    result = run_read(config(), ["user_external_ids"])

    assert len(api.requests_to("user_external_ids")) == 3
    assert len(result.records()) == 1
    assert result.errors() == []
    # The retry is logged with the transport's own description of the fault.
    assert len([line for line in result.logs() if line.startswith("Retrying") and f"after {failure}" in line]) == 2


def test_timeouts_beyond_max_retries_fail_with_a_transient_error(api, clock):
    api.replies("user_external_ids", "user_id:u1", TransportError("timed out"))

    result = run_read(config(max_retries=1), ["user_external_ids"])

    assert len(api.requests_to("user_external_ids")) == 2
    error = result.stream_error("user_external_ids")
    assert error.failure_type == FailureType.transient_error
    assert "user_external_ids" in error.message and "user_id:u1" in error.message
    assert "last with timed out" in error.message


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


def test_an_unreadable_retry_after_falls_back_to_backoff(api, clock):
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After="soon"), traits_page({"a": 1}))

    result = run_read(config(), ["user_traits"])

    (gap,) = gaps(api.requests_to("user_traits"))
    assert 0.5 <= gap <= 1.0
    assert len(result.records()) == 1


def test_a_retry_after_longer_than_the_maximum_wait_fails_at_once(api, clock):
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After="3600"), traits_page({"a": 1}))

    result = run_read(config(rate_limit_max_wait_minutes=10), ["user_traits"])

    assert len(api.seen) == 1
    assert sum(clock.sleeps) < 1.0  # it did not sit through the hour
    error = result.stream_error("user_traits")
    assert error.failure_type == FailureType.transient_error
    assert "rate_limit_max_wait_minutes" in error.message
