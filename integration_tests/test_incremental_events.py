"""Incremental user_events against the emulator: history beyond the API's 14 days, nothing lost."""

import json
import subprocess
from collections import Counter
from datetime import datetime, timedelta

import pytest

from integration_tests.conftest import FIXED_NOW, emulator_config
from integration_tests.connector_cli import configured_catalog, connector_command, parse_messages, run_connector
from segment_profile_emulator.testing import running_emulator
from source_segment_profile.streams import profile_state_key

EVENTS_ONLY = configured_catalog(("user_events",))
LOOKBACK_MINUTES = 10


def parse(timestamp):
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def event_keys(records):
    return Counter((record["external_id"], record["messageId"]) for record in records)


def truth_events(truth):
    return {
        (user["lookup_id"], event.get("messageId") or event.get("message_id")): event["timestamp"]
        for user in truth["users"]
        for event in user["events"]
    }


def test_second_sync_reads_only_new_events_plus_the_lookback_and_one_request_per_unchanged_profile(tmp_path):
    with running_emulator(users=120, accounts=2, seed=5, now=FIXED_NOW, rate_limit=0) as emulator:
        truth = emulator.ground_truth()
        config = emulator_config(emulator, truth, events_lookback_minutes=LOOKBACK_MINUTES)
        first = run_connector("read", tmp_path, config, EVENTS_ONLY)
        assert first.returncode == 0
        assert event_keys(first.records["user_events"]) == Counter(truth_events(truth).keys())
        state = first.last_state_of("user_events")
        cursors = state["stream"]["stream_state"]["profiles"]
        # State holds ids and cursors only.
        assert set(state["stream"]["stream_state"]) == {"state_version", "profiles"}
        assert all(isinstance(cursor, str) for cursor in cursors.values())

        emulator.advance_clock(6 * 3600)
        later = emulator.ground_truth()
        emulator.reset_stats()
        second = run_connector("read", tmp_path, config, EVENTS_ONLY, state=[state])
        assert second.returncode == 0

        lookback = timedelta(minutes=LOOKBACK_MINUTES)
        expected = {
            key
            for key, timestamp in truth_events(later).items()
            if profile_state_key(key[0]) not in cursors
            or parse(timestamp) >= parse(cursors[profile_state_key(key[0])]) - lookback
        }
        got = event_keys(second.records["user_events"])
        assert set(got) == expected and max(got.values()) == 1
        new_events = {key for key in truth_events(later) if key not in truth_events(truth)}
        assert new_events and new_events <= set(got)
        # Nothing lost: every event the API still holds was delivered by one of the two syncs.
        assert set(truth_events(later)) <= set(first_keys := event_keys(first.records["user_events"])) | set(got)
        assert first_keys

        changed = {key[0] for key in new_events}
        requests = Counter(entry["external_id"] for entry in emulator.requests() if entry["endpoint"] == "user_events")
        unchanged = [user["lookup_id"] for user in later["users"] if user["lookup_id"] not in changed]
        assert unchanged and all(requests[lookup] == 1 for lookup in unchanged)


def test_interrupted_sync_resumes_from_its_last_state_and_delivers_the_rest(tmp_path):
    with running_emulator(users=450, accounts=1, seed=9, now=FIXED_NOW, rate_limit=0) as emulator:
        truth = emulator.ground_truth()
        # Paced so that the kill lands mid-stream: 450 profiles at 100 requests/s take ~5 s.
        config = emulator_config(emulator, truth, requests_per_second=100)
        (tmp_path / "config.json").write_text(json.dumps(config))
        (tmp_path / "catalog.json").write_text(json.dumps(EVENTS_ONLY))
        process = subprocess.Popen(
            [*connector_command(), "read", "--config", str(tmp_path / "config.json"), "--catalog", str(tmp_path / "catalog.json")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        lines = []
        for line in process.stdout:
            lines.append(line)
            if '"type":"STATE"' in line.replace(" ", ""):
                process.kill()
                break
        process.wait()
        partial = parse_messages("".join(lines))
        states = [message["state"] for message in partial if message["type"] == "STATE"]
        assert states, "the sync finished before it could be interrupted"
        checkpointed = states[-1]["stream"]["stream_state"]["profiles"]
        assert 0 < len(checkpointed) < len(truth["users"])

        resumed = run_connector("read", tmp_path, config, EVENTS_ONLY, state=[states[-1]])
        assert resumed.returncode == 0
        delivered = event_keys(
            [m["record"]["data"] for m in partial if m["type"] == "RECORD"] + resumed.records["user_events"]
        )
        assert set(delivered) == set(truth_events(truth))
        # The resumed sync did not start over: checkpointed profiles only re-read their lookback.
        assert len(resumed.records["user_events"]) < len(truth_events(truth))


def test_state_from_the_future_yields_no_records(tmp_path):
    with running_emulator(users=20, accounts=1, seed=5, now=FIXED_NOW, rate_limit=0) as emulator:
        truth = emulator.ground_truth()
        config = emulator_config(emulator, truth)
        future = {"state_version": 1, "profiles": {profile_state_key(user["lookup_id"]): "2099-01-01T00:00:00.000Z" for user in truth["users"]}}
        state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "user_events"}, "stream_state": future}}]
        run = run_connector("read", tmp_path, config, EVENTS_ONLY, state=state)
        assert run.returncode == 0
        assert run.records["user_events"] == []


@pytest.mark.parametrize("stream_state", [{"cursor": 5}, {"state_version": 1, "profiles": {"user_id:x": "yesterday"}}])
def test_unreadable_state_fails_with_a_config_error_that_says_to_reset(tmp_path, stream_state):
    with running_emulator(users=5, accounts=1, seed=5, now=FIXED_NOW, rate_limit=0) as emulator:
        truth = emulator.ground_truth()
        state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "user_events"}, "stream_state": stream_state}}]
        run = run_connector("read", tmp_path, emulator_config(emulator, truth), EVENTS_ONLY, state=state)
        assert run.returncode != 0
        errors = [error for error in run.errors if "Reset the user_events stream" in error["message"]]
        assert errors and errors[0]["failure_type"] == "config_error"
        assert "Traceback" not in run.stderr
