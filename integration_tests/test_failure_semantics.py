"""A bad day at the API: each sync delivers every record exactly once, or fails with a typed error.

Faults are injected by the emulator (issue 4's "done when"); the rate limit is the emulator's
token bucket, so a Retry-After the connector ignores would show up as requests that arrived
while the wait was still running.
"""

import pytest

from source_segment_profile.read_through_state import profiles_read_through
from source_segment_profile.masking import profile_state_key

from integration_tests.conftest import FIXED_NOW, emulator_config
from integration_tests.connector_cli import STREAMS, configured_catalog, run_connector
from integration_tests.ground_truth import as_multiset, expected_records
from segment_profile_emulator.testing import running_emulator

USERS, ACCOUNTS = 40, 5
NO_FAULTS = dict(
    fault_429=0, fault_5xx=0, fault_reset=0, fault_truncate=0, fault_slow=0, retry_after="none", rate_limit=0, latency_ms=0,
    fault_reset_mid_body=0, fault_empty_has_more=0, empty_has_more_once=False, retry_after_value="",
    vanish_users=0, vanish_accounts=0, vanish_after_requests=0,
)


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(users=USERS, accounts=ACCOUNTS, seed=11, now=FIXED_NOW, rate_limit=0, fault_seed=3) as running:
        yield running


@pytest.fixture(scope="module")
def truth(emulator):
    return emulator.ground_truth()


@pytest.fixture
def faults(emulator):
    def inject(**knobs):
        emulator.set_faults(**{**NO_FAULTS, **knobs})
        emulator.reset_stats()

    yield inject
    emulator.set_faults(**NO_FAULTS)


def assert_exactly_once(run, truth):
    assert run.returncode == 0, "\n".join(error["message"] for error in run.errors) or run.stderr[-2000:]
    expected = expected_records(truth)
    for stream in STREAMS:
        assert as_multiset(run.records[stream]) == as_multiset(expected[stream]), f"{stream} differs from the ground truth"


def read_all(emulator, truth, tmp_path, **overrides):
    config = emulator_config(emulator, truth, **overrides)
    return run_connector("read", tmp_path, config, configured_catalog(incremental=False))


@pytest.mark.parametrize(
    "knobs, fault, retried_after",
    [
        ({"fault_5xx": 0.10}, "5xx", "after HTTP 5"),
        # Issue 21: headers and half the body, then a TCP reset.
        ({"fault_reset_mid_body": 0.05}, "reset_mid_body", "after connection reset"),
    ],
    ids=["ten-percent-5xx", "reset-mid-body"],
)
def test_faults_are_retried_and_nothing_is_lost(emulator, truth, tmp_path, faults, knobs, fault, retried_after):
    faults(**knobs)
    run = read_all(emulator, truth, tmp_path)
    assert_exactly_once(run, truth)
    assert emulator.stats()["faults"][fault] > 0
    assert any(line.startswith("Retrying ") and retried_after in line for line in run.logs)


@pytest.mark.parametrize("retry_after", ["seconds", "http-date"])
def test_429_storm_with_retry_after_is_honoured_by_every_worker(emulator, truth, tmp_path, faults, retry_after):
    # At the real API's pace (latency, at most 100 requests/s).
    faults(fault_429=0.03, retry_after=retry_after, latency_ms=20)
    run = read_all(emulator, truth, tmp_path, requests_per_second=100)
    assert_exactly_once(run, truth)
    stats = emulator.stats()
    told_to_wait = stats["faults"]["429"]
    assert told_to_wait > 0
    # Every request that arrives before a wait it was told is over counts, even one sent in the
    # millisecond between the 429 leaving the server and the client reading it (the emulator
    # allows no grace). A worker that ignored Retry-After would send dozens in each 1 s wait; an
    # honouring client sends at most the one already leaving. Issue 14's bar, 1% of requests, is
    # measured by make bench over 5,000+ requests: over ~230 here, 3 such requests (seen once in
    # a clean-clone run) already exceed it.
    assert stats["requests_during_retry_after"] <= told_to_wait, (
        f"{stats['requests_during_retry_after']} of {stats['requests_total']} requests arrived during the "
        f"{told_to_wait} Retry-After waits told"
    )


def test_429_storm_without_retry_after_backs_off_and_completes(emulator, truth, tmp_path, faults):
    faults(fault_429=0.03)
    run = read_all(emulator, truth, tmp_path)
    assert_exactly_once(run, truth)
    assert emulator.stats()["faults"]["429"] > 0
    assert any("rate-limited (429)" in line and not line.endswith("0 rate-limited (429), 0 retries") for line in run.logs)


def test_budget_at_the_limit_is_never_rate_limited(emulator, truth, tmp_path, faults):
    faults(rate_limit=50)
    run = read_all(emulator, truth, tmp_path, requests_per_second=50)
    assert_exactly_once(run, truth)
    assert emulator.stats()["rate_limited_429"] == 0


def test_connection_resets_are_retried(emulator, truth, tmp_path, faults):
    faults(fault_reset=0.05)
    run = read_all(emulator, truth, tmp_path)
    assert_exactly_once(run, truth)
    assert emulator.stats()["faults"]["reset"] > 0


def test_truncated_bodies_are_retried(emulator, truth, tmp_path, faults):
    faults(fault_truncate=0.05)
    run = read_all(emulator, truth, tmp_path)
    assert_exactly_once(run, truth)
    assert emulator.stats()["faults"]["truncate"] > 0


def test_responses_slower_than_the_timeout_are_retried(emulator, truth, tmp_path, faults):
    faults(fault_slow=0.03, slow_seconds=3)
    run = read_all(emulator, truth, tmp_path, request_timeout_seconds=1)
    assert_exactly_once(run, truth)
    assert emulator.stats()["faults"]["slow"] > 0


def test_persistent_5xx_fails_with_a_transient_error_naming_endpoint_profile_and_request_id(emulator, truth, tmp_path, faults):
    faults(fault_5xx=1.0)
    run = read_all(emulator, truth, tmp_path, max_retries=1)
    assert run.returncode != 0
    errors = [error for error in run.errors if "failed 2 times" in error["message"]]
    assert errors, [error["message"] for error in run.errors]
    message = errors[0]["message"]
    assert errors[0]["failure_type"] == "transient_error"
    assert "user_traits for profile " in message and "Request-Id " in message and "Request-Id none" not in message
    assert not any(truth_user["lookup_id"] in message for truth_user in truth["users"] if truth_user["lookup_id"].startswith("email:"))


def test_rate_limit_that_outlasts_the_maximum_wait_fails_naming_the_space(emulator, truth, tmp_path, faults):
    faults(fault_429=1.0, retry_after="seconds")
    # 0.05 minutes = 3 s. One stream: each stream of a sync meets the same limit and fails alike.
    config = emulator_config(emulator, truth, rate_limit_max_wait_minutes=0.05)
    run = run_connector("read", tmp_path, config, configured_catalog(("user_traits",)))
    assert run.returncode != 0
    messages = [error["message"] for error in run.errors]
    assert any(f"rate limit for space '{emulator.space_id}'" in message for message in messages), messages
    # The stream's own trace is transient; the CDK's closing "did not sync successfully" summary
    # is always labelled config_error by the CDK itself.
    stream_errors = [error for error in run.errors if error["message"].startswith("Segment's rate limit")]
    assert stream_errors and {error["failure_type"] for error in stream_errors} == {"transient_error"}


# --- issue 21: failure paths a user can trust --------------------------------------------------


def test_empty_pages_that_say_has_more_are_followed_and_nothing_is_lost(emulator, truth, tmp_path, faults):
    faults(fault_empty_has_more=1.0, empty_has_more_once=True)
    run = read_all(emulator, truth, tmp_path)
    assert_exactly_once(run, truth)
    assert emulator.stats()["faults"]["empty_has_more"] > 0


def test_a_retry_after_longer_than_the_maximum_wait_fails_at_once_and_nothing_is_sent_after(emulator, truth, tmp_path, faults):
    # 0.2.0 failed after 202 s here: the budget paused for the whole 40 s, again and again.
    faults(fault_429=1.0, retry_after_value="40")
    config = emulator_config(emulator, truth, rate_limit_max_wait_minutes=0.1, max_concurrency=16)
    run = run_connector("read", tmp_path, config, configured_catalog(("user_traits",)))
    assert run.returncode != 0
    stream_errors = [error for error in run.errors if error["message"].startswith("Segment's rate limit")]
    assert stream_errors and "asked to wait Retry-After 40 s" in stream_errors[0]["message"]
    assert emulator.stats()["requests_total"] <= 16  # each worker's first request, and nothing after the failure


def test_profiles_that_answer_404_for_one_sync_keep_their_watermark(emulator, truth, tmp_path, faults):
    faults()
    events = configured_catalog(("user_events",))
    first = run_connector("read", tmp_path, emulator_config(emulator, truth), events)
    assert first.returncode == 0
    before = profiles_read_through(first.last_state_of("user_events")["stream"]["stream_state"])

    faults(vanish_users=3)
    vanished = emulator.vanishing_profiles()["users"]
    second = run_connector("read", tmp_path, emulator_config(emulator, truth), events, state=[first.last_state_of("user_events")])

    assert second.returncode == 0, [error["message"] for error in second.errors]
    after = profiles_read_through(second.last_state_of("user_events")["stream"]["stream_state"])
    assert set(after) == set(before) and len(after) == USERS
    for lookup_id in vanished:
        assert after[profile_state_key(lookup_id)] == before[profile_state_key(lookup_id)]
    assert sum("answered 404" in line for line in second.logs) == 3
    (summary,) = [line for line in second.logs if line.startswith("Summary user_events")]
    assert "3 not found" in summary


def test_a_sync_where_no_profile_is_found_fails_check_and_read_with_a_config_error(emulator, truth, tmp_path, faults):
    faults(vanish_users=USERS, vanish_accounts=ACCOUNTS)
    config = emulator_config(emulator, truth)

    check = run_connector("check", tmp_path, config)
    (status,) = [message["connectionStatus"] for message in check.messages if message["type"] == "CONNECTION_STATUS"]
    assert status["status"] == "FAILED" and f"space '{emulator.space_id}'" in status["message"]

    run = run_connector("read", tmp_path, config, configured_catalog(("user_traits", "account_traits")))
    assert run.returncode != 0
    for stream, count in (("user_traits", USERS), ("account_traits", ACCOUNTS)):
        errors = [error for error in run.errors if error["message"].startswith(f"None of the {count} profiles {stream} looked up")]
        assert errors and errors[0]["failure_type"] == "config_error", [error["message"] for error in run.errors]
