"""Incremental user_events against the emulator: history beyond the API's 14 days, nothing lost.

The state says, for each profile, the watermark its events were read through: the
API's clock (its Date header) when the sync started, less a small margin. The next sync asks for
events from that watermark less the lookback (`events_lookback_hours`, default 24).
"""

import hashlib
import json
import subprocess
from collections import Counter
from datetime import datetime, timedelta

import pytest

from integration_tests.conftest import FIXED_NOW, emulator_config
from integration_tests.connector_cli import configured_catalog, connector_command, parse_messages, run_connector
from segment_profile_emulator.testing import running_emulator
from source_segment_profile.read_through_state import STATE_VERSION, profiles_read_through
from source_segment_profile.masking import profile_state_key

EVENTS_ONLY = configured_catalog(("user_events",))
DEFAULT_LOOKBACK = timedelta(hours=24)


def parse(timestamp):
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def event_keys(records):
    return Counter((record["external_id"], record["messageId"]) for record in records)


def read_through(state):
    """Profile key -> the watermark the state says its events were read through."""
    return profiles_read_through(state["stream"]["stream_state"])


def events_state(stream_state):
    return [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "user_events"}, "stream_state": stream_state}}]


def truth_events(truth):
    return {
        (user["lookup_id"], event.get("messageId") or event.get("message_id")): event["timestamp"]
        for user in truth["users"]
        for event in user["events"]
    }


@pytest.mark.parametrize(
    "lookback_option", [{"events_lookback_hours": 1}, {"events_lookback_minutes": 60}], ids=["hours", "minutes-of-older-configs"]
)
def test_second_sync_reads_only_new_events_plus_the_lookback_and_one_request_per_unchanged_profile(tmp_path, lookback_option):
    lookback = timedelta(hours=1)
    with running_emulator(users=120, accounts=2, seed=5, now=FIXED_NOW, rate_limit=0) as emulator:
        truth = emulator.ground_truth()
        config = emulator_config(emulator, truth, **lookback_option)
        first = run_connector("read", tmp_path, config, EVENTS_ONLY)
        assert first.returncode == 0
        assert event_keys(first.records["user_events"]) == Counter(truth_events(truth).keys())
        state = first.last_state_of("user_events")
        watermarks = read_through(state)
        assert set(watermarks) == {profile_state_key(user["lookup_id"]) for user in truth["users"]}
        # One watermark for the sync, on the API's clock (its Date header), not this machine's:
        # the emulator's clock stands at FIXED_NOW whatever the date here.
        (watermark,) = set(watermarks.values())
        api_clock = parse(truth["now"])
        assert api_clock - timedelta(minutes=10) <= watermark <= api_clock
        # The state holds no profile id in clear (ids are often emails).
        assert not any(user["lookup_id"] in json.dumps(state, ensure_ascii=False) for user in truth["users"])

        emulator.advance_clock(6 * 3600)
        later = emulator.ground_truth()
        emulator.reset_stats()
        second = run_connector("read", tmp_path, config, EVENTS_ONLY, state=[state])
        assert second.returncode == 0

        expected = {key for key, timestamp in truth_events(later).items() if parse(timestamp) >= watermark - lookback}
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
        checkpointed = read_through(states[-1])
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
        keys = sorted(profile_state_key(user["lookup_id"]) for user in truth["users"])
        future = {"state_version": 2, "read_through": [{"watermark": "2099-01-01T00:00:00.000Z", "profiles": keys}]}
        run = run_connector("read", tmp_path, config, EVENTS_ONLY, state=events_state(future))
        assert run.returncode == 0
        assert run.records["user_events"] == []


def test_state_of_the_previous_version_carries_over_without_losing_events(tmp_path):
    """Version 1 kept each profile's newest event timestamp under a 20-digit key: after the
    upgrade, that timestamp is where the profile was read through."""
    with running_emulator(users=30, accounts=1, seed=5, now=FIXED_NOW, rate_limit=0) as emulator:
        truth = emulator.ground_truth()
        config = emulator_config(emulator, truth)
        newest = {}
        for user in truth["users"]:
            if user["events"]:
                newest[user["lookup_id"]] = max(parse(event["timestamp"]) for event in user["events"])
        old_key = lambda lookup: hashlib.sha256(lookup.encode("utf-8")).hexdigest()[:20]  # noqa: E731
        v1 = {"state_version": 1, "profiles": {old_key(lookup): format_v1(moment) for lookup, moment in newest.items()}}

        emulator.advance_clock(6 * 3600)
        later = emulator.ground_truth()
        run = run_connector("read", tmp_path, config, EVENTS_ONLY, state=events_state(v1))
        assert run.returncode == 0 and run.errors == [], run.stderr[-2000:]

        got = event_keys(run.records["user_events"])
        expected = {
            key
            for key, timestamp in truth_events(later).items()
            if key[0] not in newest or parse(timestamp) >= newest[key[0]] - DEFAULT_LOOKBACK
        }
        assert set(got) == expected and max(got.values()) == 1
        new_events = {key for key in truth_events(later) if key not in truth_events(truth)}
        assert new_events and new_events <= set(got)
        # Not a full re-read, and the state is written in the current version.
        assert len(got) < len(truth_events(later))
        assert run.last_state_of("user_events")["stream"]["stream_state"]["state_version"] == STATE_VERSION
        assert set(read_through(run.last_state_of("user_events"))) == {profile_state_key(user["lookup_id"]) for user in truth["users"]}


def format_v1(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.mark.parametrize(
    "stream_state",
    [
        {"cursor": 5},
        {"state_version": 1, "profiles": {"user_id:x": "yesterday"}},
        {"state_version": 2, "read_through": [{"watermark": "yesterday", "profiles": ["0123456789abcdef"]}]},
    ],
    ids=["unknown-shape", "version-1-without-a-timestamp", "version-2-without-a-timestamp"],
)
def test_a_state_with_no_usable_watermark_fails_with_a_config_error_that_keeps_the_data(tmp_path, stream_state):
    with running_emulator(users=5, accounts=1, seed=5, now=FIXED_NOW, rate_limit=0) as emulator:
        truth = emulator.ground_truth()
        run = run_connector("read", tmp_path, emulator_config(emulator, truth), EVENTS_ONLY, state=events_state(stream_state))
        assert run.returncode != 0
        errors = [error for error in run.errors if "Retain records" in error["message"]]
        assert errors and errors[0]["failure_type"] == "config_error"
        # Issue 21: Reset (now Airbyte's Clear action) deletes the only copy of old events.
        assert all("reset" not in error["message"].lower() for error in run.errors)
        assert "Traceback" not in run.stderr
