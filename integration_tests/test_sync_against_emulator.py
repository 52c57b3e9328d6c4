"""The installed connector CLI against the emulator over 127.0.0.1, compared with the ground truth."""

import pytest

from integration_tests.conftest import FIXED_NOW, emulator_config
from integration_tests.connector_cli import STREAMS, configured_catalog, run_connector
from integration_tests.ground_truth import as_multiset, expected_records
from segment_profile_emulator.testing import running_emulator

USERS, ACCOUNTS = 300, 30
PAGE_SIZE = 100


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(users=USERS, accounts=ACCOUNTS, seed=7, now=FIXED_NOW, rate_limit=0) as running:
        yield running


@pytest.fixture(scope="module")
def truth(emulator):
    return emulator.ground_truth()


@pytest.mark.parametrize("max_concurrency", [16, 1], ids=["concurrent", "sequential"])
def test_full_sync_delivers_every_record_of_all_seven_streams_exactly_once(
    emulator, truth, tmp_path, assert_valid_records, max_concurrency
):
    """In both modes that ship (a pool of workers, and one request at a time), every page of every profile."""
    emulator.reset_stats()
    # Pages of 100 give the heavy profiles 3+ pages of traits, events and external ids.
    config = emulator_config(emulator, truth, page_size=PAGE_SIZE, max_concurrency=max_concurrency)
    run = run_connector("read", tmp_path, config, configured_catalog(incremental=False))

    assert run.returncode == 0, run.stderr[-2000:] + "\n".join(run.logs[-20:])
    assert run.errors == []
    expected = expected_records(truth)
    for stream in STREAMS:
        missing = as_multiset(expected[stream]) - as_multiset(run.records[stream])
        extra = as_multiset(run.records[stream]) - as_multiset(expected[stream])
        assert not missing and not extra, f"{stream}: {len(missing)} missing, {len(extra)} extra"
        assert len(run.records[stream]) == len(expected[stream])
    assert_valid_records(run.records)


def test_dataset_exercises_many_pages_and_ids_needing_encoding(truth):
    """Guards the test above: it only proves pagination and encoding if the data needs them."""
    lookups = [user["lookup_id"] for user in truth["users"]]
    assert any(lookup.startswith("email:") and "+" in lookup for lookup in lookups)
    assert any(lookup.startswith("anonymous_id:") for lookup in lookups)
    assert any(any(char in lookup for char in "/?#% ") or not lookup.isascii() for lookup in lookups)
    assert max(len(user["events"]) for user in truth["users"]) > 3 * PAGE_SIZE
    assert max(len(user["traits"]) for user in truth["users"]) > 3 * PAGE_SIZE
    assert max(len(user["external_ids"]) for user in truth["users"]) > 2 * PAGE_SIZE


def test_request_count_is_one_per_profile_per_stream_plus_extra_pages(emulator, truth, tmp_path):
    emulator.reset_stats()
    run = run_connector("read", tmp_path, emulator_config(emulator, truth), configured_catalog(incremental=False))
    assert run.returncode == 0

    by_endpoint = emulator.stats()["by_endpoint"]
    pages = lambda items, size: max(1, -(-items // size))  # noqa: E731
    users = truth["users"]
    # The traits path serves user_traits, and user_audiences and user_computed_traits (class=...).
    of_class = lambda user, trait_class: sum(detail["class"] == trait_class for detail in user["trait_details"].values())  # noqa: E731
    assert by_endpoint["user_traits"] == sum(
        pages(len(user["traits"]), 200) + pages(of_class(user, "audience"), 200) + pages(of_class(user, "computed_trait"), 200) for user in users
    )
    assert by_endpoint["user_events"] == sum(pages(len(user["events"]), 200) for user in users)
    assert by_endpoint["user_external_ids"] == sum(pages(len(user["external_ids"]), 200) for user in users)
    assert by_endpoint["user_metadata"] == len(users)
    assert by_endpoint["user_links"] == sum(pages(len(user["links"]), 20) for user in users)
    assert by_endpoint["account_traits"] == sum(pages(len(account["traits"]), 200) for account in truth["accounts"])


def test_unselected_streams_make_no_request(emulator, truth, tmp_path):
    emulator.reset_stats()
    run = run_connector("read", tmp_path, emulator_config(emulator, truth), configured_catalog(("user_metadata",)))
    assert run.returncode == 0
    by_endpoint = {endpoint: count for endpoint, count in emulator.stats()["by_endpoint"].items() if count}
    assert by_endpoint == {"user_metadata": USERS}


def test_check_and_discover_against_the_emulator(emulator, truth, tmp_path):
    config = emulator_config(emulator, truth)
    check = run_connector("check", tmp_path, config)
    assert [m["connectionStatus"]["status"] for m in check.messages if m["type"] == "CONNECTION_STATUS"] == ["SUCCEEDED"]

    bad_token = run_connector("check", tmp_path, {**config, "access_token": "wrong-token"})
    status = [m["connectionStatus"] for m in bad_token.messages if m["type"] == "CONNECTION_STATUS"][0]
    assert status["status"] == "FAILED" and "token" in status["message"]

    discover = run_connector("discover", tmp_path, config)
    catalog = [m["catalog"] for m in discover.messages if m["type"] == "CATALOG"][0]
    streams = {stream["name"]: stream for stream in catalog["streams"]}
    assert set(streams) == set(STREAMS)
    assert streams["user_events"]["supported_sync_modes"] == ["full_refresh", "incremental"]
    assert streams["user_events"]["default_cursor_field"] == ["timestamp"]
    assert streams["user_events"]["source_defined_primary_key"] == [["external_id"], ["messageId"]]


def test_a_sync_of_several_seconds_logs_progress_lines_and_a_summary(emulator, truth, tmp_path):
    # 300 profiles at 40 requests/s: ~7.5 s, past the 5 s between progress lines.
    config = emulator_config(emulator, truth, requests_per_second=40)
    run = run_connector("read", tmp_path, config, configured_catalog(("user_metadata",)))
    assert run.returncode == 0

    progress = [line for line in run.logs if line.startswith("Progress user_metadata: ")]
    summary = [line for line in run.logs if line.startswith("Summary user_metadata: ")]
    assert progress, run.logs[-10:]
    assert all("/300 profiles" in line and "requests/s of a 40/s budget" in line and "left" in line for line in progress)
    assert summary == [summary[0]] and "300 profiles read, 0 not found, 300 records, 300 requests, 300 pages" in summary[0]
