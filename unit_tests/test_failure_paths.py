"""Failure paths a user can trust (issue 21): no hang on a long Retry-After, no green sync where
nothing was found, no silent phase, no incoming state logged whole. (Transport failures on real
sockets: test_transport_failures.py; reading positions: test_profile_ids.py; state errors:
test_incremental_events.py.)"""

from __future__ import annotations

import json
import threading
import time

import pytest
from airbyte_cdk.models import FailureType, Level, SyncMode
from airbyte_cdk.test.state_builder import StateBuilder

import source_segment_profile.run as run_module
from source_segment_profile.rate_budget import RateBudget
from source_segment_profile.source import SourceSegmentProfile
from unit_tests.builders import Reply, config, data_page, event, link, traits_page
from unit_tests.conftest import events_state, run_read, write_json
from unit_tests.local_server import LocalProfileServer

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

IDS = [f"user_id:u{n}" for n in range(50)]


# --- Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["40", "1000000000", "Fri, 31 Dec 9999 23:59:59 GMT"], ids=["40s", "1e9-as-digits", "year-9999"])
def test_a_retry_after_beyond_the_max_wait_fails_at_once_without_pausing_or_sending_more(api, clock, retry_after):
    # Issue 21: with 16 workers and 'rate_limit_max_wait_minutes' 0.1, 0.2.0 failed after 202 s.
    for external_id in IDS:
        api.replies("user_traits", external_id, Reply.error(429, Retry_After=retry_after))

    result = run_read(config(user_external_ids=IDS, max_concurrency=16, rate_limit_max_wait_minutes=0.1), ["user_traits"])

    error = result.stream_error("user_traits")
    assert error.failure_type == FailureType.transient_error
    assert "asked to wait Retry-After" in error.message and "'rate_limit_max_wait_minutes' allows (6 s)" in error.message
    assert len(api.seen) <= 16  # what the workers had on the way; nothing after the failure
    assert sum(clock.sleeps) < 6
    (budget,) = clock.budgets
    assert budget.seconds_paused == 0


@pytest.mark.parametrize("retry_after", ["1e9", "inf", "-5", "soon"])
def test_a_retry_after_that_is_no_number_of_seconds_is_taken_as_absent_and_the_wait_stays_bounded(api, clock, retry_after):
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After=retry_after))

    result = run_read(config(rate_limit_max_wait_minutes=0.5), ["user_traits"])

    assert "kept answering 429" in result.stream_error("user_traits").message
    (budget,) = clock.budgets
    assert budget.seconds_paused == 0
    assert 0 < sum(clock.sleeps) <= 30 + 1  # its own backoff, within the 30 s allowed (the budget's floor spacing aside)


def test_a_thread_waiting_out_a_pause_wakes_as_soon_as_the_reading_stops():
    budget = RateBudget(10.0)  # the real clock: the point is that a real wait ends
    budget.throttled(sent_at=time.monotonic(), retry_after_seconds=60)
    stopping = threading.Event()
    waiter = threading.Thread(target=budget.acquire, args=(stopping,), daemon=True)
    waiter.start()

    stopping.set()
    waiter.join(timeout=10)

    assert not waiter.is_alive(), "acquire slept through the stop"


# --- nothing found --------------------------------------------------------------------------


def test_a_stream_whose_every_profile_answers_404_fails_with_a_config_error_naming_space_and_region(api):
    ids = [f"user_id:u{n}" for n in range(12)]
    for external_id in ids:
        api.replies("user_traits", external_id, Reply.error(404))
        api.replies("user_events", external_id, Reply.error(404))

    result = run_read(config(user_external_ids=ids), ["user_traits", "user_events"], SyncMode.incremental)

    for stream in ("user_traits", "user_events"):
        error = result.stream_error(stream)
        assert error.failure_type == FailureType.config_error
        assert f"None of the 12 profiles {stream} looked up was found in space 'spa_unit' (region us, profiles.segment.com)" in error.message
        assert "'space_id' and 'region'" in error.message


def test_some_profiles_answering_404_are_warnings_counted_in_the_summary(api):
    api.replies("user_traits", "user_id:u1", traits_page({"a": 1}))
    api.replies("user_traits", "user_id:u2", Reply.error(404))

    result = run_read(config(user_external_ids=["user_id:u1", "user_id:u2"]), ["user_traits"])

    assert result.errors() == []
    assert [record["external_id"] for record in result.records()] == ["user_id:u1"]
    (summary,) = [line for line in result.logs() if line.startswith("Summary user_traits")]
    assert "1 profiles read, 1 not found (user_id:*** (user_external_ids[1]))" in summary
    assert len([line for line in result.logs(Level.WARN) if "404" in line]) == 1


# --- what is logged -------------------------------------------------------------------------


def test_the_incoming_state_is_logged_as_a_summary_not_in_full(api):
    api.pages("user_events", "user_id:u1", data_page([event("m1")]))
    state = {
        "state_version": 3,
        "read_through": [{"watermark": "2026-11-20T10:00:00.000Z", "profile_count": 0, "profile_keys": ""}],
        "full_pass_at": "2026-11-19T10:00:00.000Z",
    }

    result = run_read(config(), ["user_events"], SyncMode.incremental, state=events_state(state))

    assert not any(line.startswith("Setting state of") for line in result.logs())
    (summary,) = [line for line in result.logs() if line.startswith("Incoming state of user_events")]
    assert "state_version 3, 0 profiles in 1 watermark groups, last full pass at '2026-11-19T10:00:00.000Z'" in summary and "bytes" in summary
    assert "profile_keys" not in summary


def test_reading_links_for_the_account_streams_reports_progress_and_a_summary(api):
    # Reading every user's links can take hours at a million users: never silent.
    api.pages("user_links", "user_id:u1", data_page([link("accounts", ("group_id", "g1"))]))
    api.pages("account_traits", "group_id:g1", traits_page({"plan": "pro"}))

    result = run_read(config(accounts_from_user_links=True), ["account_traits"])

    assert [record["external_id"] for record in result.records()] == ["group_id:g1"]
    (summary,) = [line for line in result.logs() if line.startswith("Summary user links for the account streams")]
    assert "1 profiles read" in summary and "1 records" in summary


def test_events_are_asked_for_newest_first_explicitly(api):
    # Paging stops at the first page older than the lower bound: that relies on the order.
    api.pages("user_events", "user_id:u1", data_page([event("m1")]))

    run_read(config(), ["user_events"])

    assert [request.param("sort") for request in api.requests_to("user_events")] == ["desc"]


def test_a_0_2_0_checkpoint_inside_the_configured_ids_reads_them_all_again_rather_than_skip_any(api):
    ids = [f"user_id:u{n}" for n in range(3)]
    for external_id in ids:
        api.pages("user_traits", external_id, traits_page({"a": 1}))
    api._handlers["/v1/spaces/spa_unit/collections/users/profiles"] = lambda _request: Reply(200, {"data": [], "cursor": {"has_more": False, "next": ""}})
    # 0.2.0 named positions by index alone: with ids added since, index 100 of 3 ids read none.
    state = StateBuilder().with_stream_state("user_traits", {"reading": {"position": "configured:100", "done": []}}).build()

    result = run_read(config(user_external_ids=ids, read_all_users=True), ["user_traits"], state=state)

    assert result.errors() == []
    assert sorted(record["external_id"] for record in result.records()) == ids
    assert any("is not used" in line for line in result.logs(Level.WARN))


def test_a_silent_wait_on_the_api_prints_a_heartbeat(monkeypatch, capfd, tmp_path):
    # Airbyte's platform ends a source silent for too long; a slow answer must not look like a hang.
    monkeypatch.setattr(run_module, "HEARTBEAT_SECONDS", 0.3)
    server = LocalProfileServer().handler("user_traits", "user_id:u1", lambda _request: (time.sleep(1.5), traits_page({}))[1])

    with server.running():
        run_module.launch(SourceSegmentProfile(), ["check", "--config", write_json(tmp_path / "config.json", config(api_base_url=server.url))])

    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert any(line["type"] == "LOG" and line["log"]["message"].startswith("Heartbeat: still running") for line in lines)
    assert [line["connectionStatus"]["status"] for line in lines if line["type"] == "CONNECTION_STATUS"] == ["SUCCEEDED"]
