"""Profiles nobody listed (issue 16), against the emulator: every account the users link to, every
user the space lists, a listing interrupted and resumed from its checkpoint, and a space without
the list method.

The installed connector runs as a subprocess; what it read is compared with the emulator's ground
truth, and what it requested with the emulator's request log.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from integration_tests.conftest import FIXED_NOW
from integration_tests.connector_cli import ConnectorRun, configured_catalog, connector_command, parse_messages, run_connector
from integration_tests.ground_truth import as_multiset, expected_records
from segment_profile_emulator.testing import running_emulator
from source_segment_profile.read_through_state import profiles_read_through
from source_segment_profile.masking import profile_state_key

USER_STREAMS = ("user_traits", "user_events", "user_external_ids", "user_metadata", "user_links")
ACCOUNT_STREAMS = ("account_traits", "account_external_ids")
# More than two checkpoints' worth of users (a checkpoint every 200 profiles), listed 100 a page.
LISTED_USERS = 450
# Enough accounts that some are linked only by users read before an interruption.
LISTED_ACCOUNTS = 300
NO_FAULTS = dict(fault_5xx=0.0)
FULL_REFRESH_COMPLETE = {"__ab_full_refresh_sync_complete": True}


# --- the spaces ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linked_space():
    with running_emulator(users=30, accounts=12, seed=21, now=FIXED_NOW, rate_limit=0) as running:
        yield running, running.ground_truth()


@pytest.fixture(scope="module")
def listed_space():
    # Segment's docs: list methods take limit 1..100; the emulator refuses more, as they say.
    with running_emulator(
        users=LISTED_USERS, accounts=LISTED_ACCOUNTS, seed=16, now=FIXED_NOW, rate_limit=0, max_list_limit=100
    ) as running:
        yield running, running.ground_truth()


@pytest.fixture
def faults_cleared(listed_space):
    emulator, _ = listed_space
    emulator.set_faults(**NO_FAULTS)
    yield
    emulator.set_faults(**NO_FAULTS)


def base_config(emulator, **overrides) -> dict[str, Any]:
    return {
        "space_id": emulator.space_id,
        "access_token": emulator.token,
        "api_base_url": emulator.url,
        "user_external_ids": [],
        "account_external_ids": [],
        "requests_per_second": 500,
        "max_concurrency": 16,
        **overrides,
    }


# --- what the ground truth says --------------------------------------------------------------


def link_id(link: dict[str, Any]) -> str:
    """The id an account is read by: the smallest `type:id` of the link (user_links' linked_external_id)."""
    return min(f"{entry['type']}:{entry['id']}" for entry in link["external_ids"])


def account_of(truth: dict[str, Any], external_id: str) -> dict[str, Any]:
    found = [account for account in truth["accounts"] if external_id in {f"{e['type']}:{e['id']}" for e in account["external_ids"]}]
    assert len(found) == 1, f"{external_id} names {len(found)} accounts in the ground truth"
    return found[0]


def linked_accounts(truth: dict[str, Any], users: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every account linked to `users`, by the id it is read by."""
    return {
        link_id(link): account_of(truth, link_id(link))
        for user in users
        for link in user["links"]
        if link["to_collection"] == "accounts" and link["external_ids"]
    }


def expected_account_records(accounts_by_id: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return expected_records({"users": [], "accounts": [{**account, "lookup_id": read_by} for read_by, account in accounts_by_id.items()]})


def as_listed(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The users as read_all_users reads them: by `segment_id:<id>`."""
    return [{**user, "lookup_id": f"segment_id:{user['segment_id']}"} for user in users]


# --- running the connector --------------------------------------------------------------------


def run_read_watching(
    tmp_path: Path,
    config: dict[str, Any],
    catalog: dict[str, Any],
    on_message: Callable[[dict[str, Any]], None],
    timeout: float = 300,
) -> ConnectorRun:
    """`read` with the installed connector, calling `on_message` with each message as it is printed."""
    paths = {name: tmp_path / f"{name}.json" for name in ("config", "catalog")}
    paths["config"].write_text(json.dumps(config))
    paths["catalog"].write_text(json.dumps(catalog))
    stderr_path = tmp_path / "stderr.txt"
    lines = []
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            [*connector_command(), "read", "--config", str(paths["config"]), "--catalog", str(paths["catalog"])],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            for line in process.stdout:
                lines.append(line)
                if line.startswith("{"):
                    on_message(json.loads(line))
            process.wait(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    stdout = "".join(lines)
    return ConnectorRun(process.returncode, stdout, stderr_path.read_text(), parse_messages(stdout))


def stream_state(message: dict[str, Any], stream: str) -> Optional[dict[str, Any]]:
    """The state of `stream` if `message` is its STATE message."""
    if message["type"] != "STATE":
        return None
    state = message["state"].get("stream") or {}
    return state.get("stream_state") if state.get("stream_descriptor", {}).get("name") == stream else None


def fail_after_first_checkpoint(emulator, stream: str) -> Callable[[dict[str, Any]], None]:
    """Once `stream` has checkpointed part of its reading, every request fails: the attempt stops there."""
    failing = []

    def on_message(message: dict[str, Any]) -> None:
        state = stream_state(message, stream)
        if not failing and state and "reading" in state:
            emulator.set_faults(fault_5xx=1.0)
            failing.append(state)

    return on_message


def records_committed(run: ConnectorRun, stream: str) -> list[dict[str, Any]]:
    """Records of `stream` printed before its last STATE: what a failed attempt hands on."""
    last_state = max(index for index, message in enumerate(run.messages) if stream_state(message, stream) is not None)
    return [
        message["record"]["data"]
        for message in run.messages[:last_state]
        if message["type"] == "RECORD" and message["record"]["stream"] == stream
    ]


def state_message(run: ConnectorRun, stream: str) -> dict[str, Any]:
    state = run.last_state_of(stream)
    assert state is not None, f"no STATE for {stream}"
    return state


def answered(log: list[dict[str, Any]], endpoint: str) -> list[dict[str, Any]]:
    return [entry for entry in log if entry["endpoint"] == endpoint and entry["status"] == 200]


def assert_each_page_answered_once(log: list[dict[str, Any]], endpoint: str) -> None:
    pages = Counter((entry["external_id"], entry["query"].get("next")) for entry in answered(log, endpoint))
    twice = {page: count for page, count in pages.items() if count > 1}
    assert not twice, f"{endpoint} pages answered more than once in one attempt: {list(twice.items())[:5]}"


def failure_text(run: ConnectorRun) -> str:
    return "\n".join(error["message"] for error in run.errors) or run.stderr[-2000:]


# --- accounts from the users' links -----------------------------------------------------------


CATALOG_ORDERS = {
    "user-links-first": ("user_links", "account_traits", "account_external_ids"),
    "account-streams-first": ("account_traits", "account_external_ids", "user_links"),
    "without-user-links": ("account_traits", "account_external_ids"),
}


@pytest.mark.parametrize("streams", CATALOG_ORDERS.values(), ids=CATALOG_ORDERS.keys())
def test_account_streams_read_exactly_the_accounts_linked_to_the_configured_users_once_each(linked_space, tmp_path, streams):
    emulator, truth = linked_space
    users = [user for user in truth["users"] if user["links"]][:3]
    linked = linked_accounts(truth, users)
    # Guards: the test proves something only if the users link some accounts but not all, some by
    # an id other than the account's first, and an account is linked by more than one link.
    assert 0 < len(linked) < len(truth["accounts"])
    assert any(read_by != account["lookup_id"] for read_by, account in linked.items())
    assert len({account["segment_id"] for account in linked.values()}) == len(linked), "one account read by two ids"
    assert sum(len(user["links"]) for user in users) > len(linked)
    user_ids = [user["lookup_id"] for user in users]
    emulator.reset_stats()

    config = base_config(emulator, user_external_ids=user_ids, accounts_from_user_links=True)
    run = run_connector("read", tmp_path, config, configured_catalog(streams, incremental=False))

    assert run.returncode == 0, failure_text(run)
    expected = expected_account_records(linked)
    for stream in ACCOUNT_STREAMS:
        assert as_multiset(run.records[stream]) == as_multiset(expected[stream]), f"{stream} differs from the accounts linked"
    if "user_links" in streams:
        expected_links = expected_records({"users": users, "accounts": []})["user_links"]
        assert as_multiset(run.records["user_links"]) == as_multiset(expected_links)
    # The links are read once in the sync, whether user_links is selected or not, whatever its place.
    links_requested = Counter(entry["external_id"] for entry in emulator.requests() if entry["endpoint"] == "user_links")
    assert links_requested == Counter(user_ids)


def test_linked_accounts_come_in_addition_to_the_configured_ones_without_reading_one_twice(linked_space, tmp_path):
    emulator, truth = linked_space
    users = [user for user in truth["users"] if user["links"]][:2]
    linked = linked_accounts(truth, users)
    also_linked = next(read_by for read_by, account in linked.items() if read_by == account["lookup_id"])
    not_linked = next(account for account in truth["accounts"] if account["segment_id"] not in {a["segment_id"] for a in linked.values()})
    config = base_config(
        emulator,
        user_external_ids=[user["lookup_id"] for user in users],
        account_external_ids=[not_linked["lookup_id"], also_linked],
        accounts_from_user_links=True,
    )
    emulator.reset_stats()

    run = run_connector("read", tmp_path, config, configured_catalog(ACCOUNT_STREAMS, incremental=False))

    assert run.returncode == 0, failure_text(run)
    expected = expected_account_records({**linked, not_linked["lookup_id"]: not_linked})
    for stream in ACCOUNT_STREAMS:
        assert as_multiset(run.records[stream]) == as_multiset(expected[stream]), stream
    traits_requested = Counter(entry["external_id"] for entry in emulator.requests() if entry["endpoint"] == "account_traits")
    assert max(traits_requested.values()) == 1


def test_without_accounts_from_user_links_only_the_configured_accounts_are_read(linked_space, tmp_path):
    emulator, truth = linked_space
    account = truth["accounts"][0]
    config = base_config(emulator, user_external_ids=[truth["users"][0]["lookup_id"]], account_external_ids=[account["lookup_id"]])
    emulator.reset_stats()

    run = run_connector("read", tmp_path, config, configured_catalog(ACCOUNT_STREAMS, incremental=False))

    assert run.returncode == 0, failure_text(run)
    assert [record["external_id"] for record in run.records["account_traits"]] == [account["lookup_id"]]
    assert emulator.stats()["by_endpoint"]["user_links"] == 0


# --- every user the space lists ---------------------------------------------------------------


def test_read_all_users_delivers_every_user_of_the_space_once_in_every_user_stream(listed_space, tmp_path, faults_cleared):
    emulator, truth = listed_space
    config = base_config(emulator, read_all_users=True)

    run = run_connector("read", tmp_path, config, configured_catalog(USER_STREAMS, incremental=False))

    assert run.returncode == 0, failure_text(run)
    assert run.errors == []
    expected = expected_records({"users": as_listed(truth["users"]), "accounts": []})
    assert sorted(record["external_id"] for record in run.records["user_traits"]) == sorted(
        f"segment_id:{user['segment_id']}" for user in truth["users"]
    )
    for stream in USER_STREAMS:
        missing = as_multiset(expected[stream]) - as_multiset(run.records[stream])
        extra = as_multiset(run.records[stream]) - as_multiset(expected[stream])
        assert not missing and not extra, f"{stream}: {sum(missing.values())} missing, {sum(extra.values())} extra"
    for stream in ("user_traits", "user_external_ids", "user_metadata", "user_links"):
        assert state_message(run, stream)["stream"]["stream_state"] == FULL_REFRESH_COMPLETE, stream
    # While reading, the resumable streams said how far they were.
    readings = [state["reading"] for message in run.messages if (state := stream_state(message, "user_traits")) and "reading" in state]
    assert readings and all(reading["position"].startswith("listed:") for reading in readings)


def test_read_all_users_comes_in_addition_to_the_configured_users(listed_space, tmp_path, faults_cleared):
    emulator, truth = listed_space
    configured = truth["users"][0]["lookup_id"]
    config = base_config(emulator, read_all_users=True, user_external_ids=[configured])

    run = run_connector("read", tmp_path, config, configured_catalog(("user_traits",), incremental=False))

    assert run.returncode == 0, failure_text(run)
    read = Counter(record["external_id"] for record in run.records["user_traits"])
    assert read == Counter([configured, *(f"segment_id:{user['segment_id']}" for user in truth["users"])])


# --- an interrupted listing, resumed ----------------------------------------------------------


def interrupted_then_resumed(emulator, tmp_path, stream, incremental):
    """A read of `stream` with read_all_users that fails once its first checkpoint is out (one
    worker, no retries), then a read from that checkpoint: (first run, its request log, the
    checkpoint, second run, its request log). Both attempts are checked to end as they must."""
    config = base_config(emulator, read_all_users=True, max_concurrency=1, max_retries=0, requests_per_second=100)
    catalog = configured_catalog((stream,), incremental=incremental)
    emulator.reset_stats()
    first = run_read_watching(tmp_path, config, catalog, fail_after_first_checkpoint(emulator, stream))
    first_log = emulator.requests()
    emulator.set_faults(**NO_FAULTS)
    emulator.reset_stats()
    checkpoint = state_message(first, stream)
    second = run_connector("read", tmp_path, config, catalog, state=[checkpoint])
    second_log = emulator.requests()
    assert first.returncode != 0 and first.errors, "the first attempt should have failed"
    assert second.returncode == 0, failure_text(second)
    return first, first_log, checkpoint, second, second_log


def test_an_interrupted_listing_resumes_from_its_checkpoint_without_reading_a_profile_it_covers_again(
    listed_space, tmp_path, faults_cleared
):
    """One worker, so that the records printed before a checkpoint are exactly the profiles it
    covers; every request fails once the first checkpoint is out, and no request is retried."""
    emulator, truth = listed_space
    listed = [f"segment_id:{user['segment_id']}" for user in truth["users"]]
    first, first_log, checkpoint, second, second_log = interrupted_then_resumed(emulator, tmp_path, "user_traits", incremental=False)

    # The checkpoint: the listing page to start again from, and, in the pages open from it on,
    # the profiles still to read (issue 21: those done would grow with one slow profile).
    reading = checkpoint["stream"]["stream_state"]["reading"]
    start = int(reading["position"].removeprefix("listed:"))
    assert reading["position"] == f"listed:{start}" and start % 100 == 0
    covered = {record["external_id"] for record in records_committed(first, "user_traits")}
    assert len(covered) >= 200
    window = listed[start : start + 100 * reading["open_pages"]]
    assert set(listed[:start]) <= covered <= set(listed[:start]) | set(window)
    assert {profile_state_key(external_id) for external_id in window if external_id not in covered} == set(reading["pending"])
    # Together, the attempts hand on every user exactly once.
    expected = expected_records({"users": as_listed(truth["users"]), "accounts": []})["user_traits"]
    assert as_multiset(records_committed(first, "user_traits") + second.records["user_traits"]) == as_multiset(expected)
    assert second.last_state_of("user_traits")["stream"]["stream_state"] == FULL_REFRESH_COMPLETE
    # No profile the checkpoint covers is requested again; within an attempt, no page twice.
    requested_again = {entry["external_id"] for entry in second_log if entry["endpoint"] == "user_traits"}
    assert not covered & requested_again
    assert requested_again == set(listed) - covered
    for log in (first_log, second_log):
        assert_each_page_answered_once(log, "user_traits")
    # The second attempt lists users from the checkpoint's page on, not from the start.
    listing = [entry["query"] for entry in second_log if entry["endpoint"] == "list_users" and entry["query"].get("limit") != "1"]
    assert listing[0]["next"] == str(start)


def test_an_interrupted_incremental_events_listing_resumes_with_its_watermark_without_reading_a_profile_it_covers_again(
    listed_space, tmp_path, faults_cleared
):
    emulator, truth = listed_space
    listed = [f"segment_id:{user['segment_id']}" for user in truth["users"]]
    first, _, checkpoint, second, second_log = interrupted_then_resumed(emulator, tmp_path, "user_events", incremental=True)

    reading = checkpoint["stream"]["stream_state"]["reading"]
    assert reading["position"].startswith("listed:") and reading["watermark"]
    committed = records_committed(first, "user_events")
    expected = expected_records({"users": as_listed(truth["users"]), "accounts": []})["user_events"]
    assert as_multiset(committed + second.records["user_events"]) == as_multiset(expected)
    start = int(reading["position"].removeprefix("listed:"))
    window = listed[start : start + 100 * reading["open_pages"]]
    covered = set(listed[:start]) | {external_id for external_id in window if profile_state_key(external_id) not in set(reading["pending"])}
    requested_again = {entry["external_id"] for entry in second_log if entry["endpoint"] == "user_events"}
    assert len(covered) >= 200 and not covered & requested_again
    final = second.last_state_of("user_events")["stream"]["stream_state"]
    assert "reading" not in final
    # The pass the second attempt finished is the first's: one watermark for every user.
    assert [entry["watermark"] for entry in final["read_through"]] == [reading["watermark"]]
    assert set(profiles_read_through(final)) == {profile_state_key(external_id) for external_id in listed}


def test_accounts_linked_to_users_read_before_an_interruption_are_still_read_after_resuming(
    listed_space, tmp_path, faults_cleared
):
    emulator, truth = listed_space
    config = base_config(
        emulator, read_all_users=True, accounts_from_user_links=True, max_concurrency=1, max_retries=0, requests_per_second=100
    )
    catalog = configured_catalog(("user_links", "account_traits"), incremental=False)
    emulator.reset_stats()

    first = run_read_watching(tmp_path, config, catalog, fail_after_first_checkpoint(emulator, "user_links"))
    emulator.set_faults(**NO_FAULTS)
    checkpoint = state_message(first, "user_links")
    second = run_connector("read", tmp_path, config, catalog, state=[checkpoint])

    assert first.returncode != 0 and first.errors, "the first attempt should have failed"
    assert second.returncode == 0, failure_text(second)
    expected = expected_account_records(linked_accounts(truth, truth["users"]))["account_traits"]
    read = {record["external_id"] for record in second.records["account_traits"]}
    missing = sorted({record["external_id"] for record in expected} - read)
    assert not missing, f"{len(missing)} linked accounts not read after resuming, e.g. {missing[:3]}"
    assert as_multiset(second.records["account_traits"]) == as_multiset(expected)


# --- a space without the list method ---------------------------------------------------------


@pytest.fixture(scope="module")
def unlisted_space():
    with running_emulator(users=5, accounts=2, seed=3, now=FIXED_NOW, rate_limit=0, no_list_method=True) as running:
        yield running, running.ground_truth()


def test_a_space_without_the_list_method_fails_check_with_a_message_saying_to_list_ids(unlisted_space, tmp_path):
    emulator, truth = unlisted_space
    config = base_config(emulator, read_all_users=True)

    run = run_connector("check", tmp_path, config)

    statuses = [message["connectionStatus"] for message in run.messages if message["type"] == "CONNECTION_STATUS"]
    assert [status["status"] for status in statuses] == ["FAILED"]
    assert "listing is not available for this space" in statuses[0]["message"]
    assert emulator.space_id in statuses[0]["message"] and "user_external_ids" in statuses[0]["message"]


def test_a_space_without_the_list_method_fails_read_with_a_config_error_before_any_profile_request(unlisted_space, tmp_path):
    emulator, truth = unlisted_space
    config = base_config(
        emulator,
        read_all_users=True,
        user_external_ids=[truth["users"][0]["lookup_id"]],
        account_external_ids=[truth["accounts"][0]["lookup_id"]],
    )
    emulator.reset_stats()

    run = run_connector("read", tmp_path, config, configured_catalog(USER_STREAMS + ACCOUNT_STREAMS))

    assert run.returncode != 0
    assert not run.records
    assert run.errors and all(error["failure_type"] == "config_error" for error in run.errors)
    assert any("listing is not available for this space" in error["message"] for error in run.errors)
    by_endpoint = emulator.stats()["by_endpoint"]
    assert {endpoint: count for endpoint, count in by_endpoint.items() if count} == {"list_users": 1}
