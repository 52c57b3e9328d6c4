"""The emulator as a process: its command line, ready file, ground truth file, clock and shutdown."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

import pytest
import requests

from segment_profile_emulator.dataset import build_dataset
from segment_profile_emulator.ground_truth import ground_truth
from segment_profile_emulator.testing import emulator_command, running_emulator

NOW = "2026-11-20T10:00:00Z"


def test_the_ground_truth_file_matches_the_admin_route_and_the_python_api(tmp_path):
    truth_file = tmp_path / "truth.json"
    options = dict(users=30, accounts=3, seed=9, now=NOW, space_id="spa_test", token="secret")
    with running_emulator(**options, ground_truth=truth_file) as emulator:
        assert (emulator.space_id, emulator.token) == ("spa_test", "secret")
        served = emulator.ground_truth()
    expected = ground_truth(build_dataset(users=30, accounts=3, seed=9, space_id="spa_test", now=NOW))
    assert json.loads(truth_file.read_text()) == served == json.loads(json.dumps(expected))


def test_the_clock_defaults_to_the_current_second():
    with running_emulator(users=2, accounts=0) as emulator:
        now = emulator.ground_truth()["now"]
    assert now.endswith(".000Z")
    moment = datetime.fromisoformat(now.replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - moment).total_seconds()) < 30


def test_advancing_the_clock_serves_new_events_and_keeps_the_ids_of_old_ones():
    with running_emulator(users=20, accounts=0, now=NOW, rate_limit=0) as emulator:
        before = emulator.ground_truth()["users"]
        assert emulator.advance_clock(12 * 3600) == "2026-11-20T22:00:00.000Z"
        after = emulator.ground_truth()["users"]
        busy = max(range(len(after)), key=lambda index: len(after[index]["events"]))
        served = requests.get(
            emulator.profile_url("users", after[busy]["lookup_id"], "events"),
            params={"limit": 200, "start": NOW},
            auth=(emulator.token, ""),
            timeout=10,
        ).json()["data"]
    new_events = [event for event in after[busy]["events"] if event["timestamp"] >= "2026-11-20T10:00:00.000Z"]
    assert new_events and served == new_events
    old_ids = {json.dumps(event) for user in before for event in user["events"]}
    kept = [event for user in after for event in user["events"] if event["timestamp"] < "2026-11-20T10:00:00.000Z"]
    assert kept and all(json.dumps(event) in old_ids for event in kept)


def test_an_events_cursor_keeps_its_window_when_the_clock_moves():
    with running_emulator(users=20, accounts=0, now=NOW, rate_limit=0) as emulator, requests.Session() as session:
        session.auth = (emulator.token, "")
        user = max(emulator.ground_truth()["users"], key=lambda user: len(user["events"]))
        first = session.get(emulator.profile_url("users", user["lookup_id"], "events"), params={"limit": 50}, timeout=10).json()
        emulator.advance_clock(6 * 3600)
        served = first["data"]
        cursor = first["cursor"]
        while cursor["has_more"]:
            page = session.get(emulator.url + cursor["url"], timeout=10).json()
            served += page["data"]
            cursor = page["cursor"]
    assert served == user["events"]


def test_the_ready_file_names_the_url_and_pid_and_shutdown_stops_the_process(tmp_path):
    ready_file = tmp_path / "ready.json"
    process = subprocess.Popen(emulator_command(users=3, accounts=0, ready_file=ready_file), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not ready_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        ready = json.loads(ready_file.read_text())
        assert ready["pid"] == process.pid and ready["url"].startswith("http://127.0.0.1:")
        request = urllib.request.Request(ready["url"] + "/_emulator/shutdown", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response) == {"shutting_down": True}
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()


def test_invalid_options_are_refused_with_a_message():
    result = subprocess.run(
        [*emulator_command(fault_5xx=0.7, fault_reset=0.7)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "must not exceed 1" in result.stderr
    result = subprocess.run([sys.executable, "-m", "segment_profile_emulator", "--retry-after", "never"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--retry-after" in result.stderr


def test_switches_are_bare_flags_and_false_leaves_them_out():
    command = emulator_command(gzip=True, future_events=False, no_list_method=True, max_list_limit=100, late_events="6,23")
    assert command[3:] == ["--gzip", "--no-list-method", "--max-list-limit", "100", "--late-events", "6,23"]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(max_list_limit=0), "max_list_limit must be a whole number between 1 and 200"),
        (dict(rate_limit_schedule="30"), "rate_limit_schedule must be SECONDS:RATE"),
        (dict(late_events="6,x"), "late_events must be hours"),
        (dict(late_events="400"), "late_events hours must be above 0 and below 336"),
        (dict(events_per_user=-1), "events_per_user must be a whole number"),
        (dict(vanish_users=-1), "vanish_users must be a whole number >= 0"),
        (dict(fault_truncate=0.6, fault_reset_mid_body=0.6), "fault_reset_mid_body must not exceed 1"),
        (dict(retry_after_value="40\nX-Injected: 1"), "retry_after_value must be header text"),
    ],
)
def test_invalid_new_options_are_refused_with_a_message(options, message):
    result = subprocess.run(emulator_command(**options), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_data_options_reach_the_dataset_and_its_ground_truth_file(tmp_path):
    truth_file = tmp_path / "truth.json"
    options = dict(users=15, accounts=1, seed=9, now=NOW, events_per_user=30, late_events="5", future_events=True,
                   lone_surrogate_trait=True)
    with running_emulator(**options, ground_truth=truth_file) as emulator:
        served = emulator.ground_truth()
    expected = ground_truth(build_dataset(
        users=15, accounts=1, seed=9, now=NOW, events_per_user=30, late_event_hours=(5,), future_events=True,
        lone_surrogate_trait=True,
    ))
    assert json.loads(truth_file.read_text()) == served == expected
    assert [len(user["events"]) for user in served["users"]][:5] == [30, 30 + 336 - 5, 30, 30, 31]
    assert served["users"][3]["traits"]["nickname"] == "\ufffd rocket"
