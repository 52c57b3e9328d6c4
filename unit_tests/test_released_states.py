"""States that released versions wrote, read back by this version (issue 21).

resource/states/ holds STATE messages as versions 0.1.0 (user_events state version 1), 0.2.0
(version 2, and `reading` checkpoints naming profiles by id) and HEAD (version 3) emitted them,
written by scripts/write_released_states.py; its manifest.json says what wrote each file, with
which emulator and config. Each test starts today's emulator with those flags (every version so
far serves the same space for the same flags) and reads with the file as the state, as the
platform hands a stored state back.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from airbyte_cdk.models import AirbyteStateMessageSerializer, SyncMode

from segment_profile_emulator.testing import RunningEmulator, running_emulator
from source_segment_profile.read_through_state import SKEW_MARGIN, profiles_read_through
from source_segment_profile.masking import profile_state_key
from unit_tests.conftest import ReadResult, run_read

pytestmark = pytest.mark.usefixtures("clock")  # no test waits on the budget

STATES_DIR = Path(__file__).parent / "resource" / "states"
MANIFEST = json.loads((STATES_DIR / "manifest.json").read_text())


def stream_state(name: str) -> dict[str, Any]:
    return json.loads((STATES_DIR / name).read_text())["stream"]["stream_state"]


def fixtures(stream: str, reading: Optional[bool] = None) -> list[str]:
    """The fixture files of `stream`: those with a reading position, those without, or (None) all."""
    return [
        name for name, about in MANIFEST["fixtures"].items()
        if about["stream"] == stream and reading in (None, "reading" in stream_state(name))
    ]


def timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@contextmanager
def emulator_for(name: str, later: timedelta) -> Iterator[RunningEmulator]:
    """The emulator the fixture was written against, its clock `later` than during the sync that wrote it."""
    about = MANIFEST["fixtures"][name]
    flags = MANIFEST["emulators"][about["emulator"]]
    with running_emulator(**flags) as emulator:
        emulator.advance_clock((timestamp(about["emulator_clock"]) + later - timestamp(flags["now"])).total_seconds())
        yield emulator


@dataclass
class ReadBack:
    result: ReadResult
    profile_ids: list[str]  # every profile the config reads: the configured ids, then every listed user
    first_event_starts: dict[str, list]  # external id -> `start` of each first events page asked (None: no start)
    lookback: timedelta


def read_back(name: str) -> ReadBack:
    """A sync with the fixture as its state; it must succeed."""
    about = MANIFEST["fixtures"][name]
    with emulator_for(name, later=timedelta(hours=1)) as emulator:  # a later sync runs later
        config = {**MANIFEST["configs"][about["config"]], "api_base_url": emulator.url}
        state = AirbyteStateMessageSerializer.load(json.loads((STATES_DIR / name).read_text()))
        result = run_read(config, [about["stream"]], SyncMode(about["sync_mode"]), state=[state])
        starts: dict[str, list] = {}
        for request in emulator.requests():
            if request["endpoint"] == "user_events" and "next" not in request["query"]:
                starts.setdefault(request["external_id"], []).append(request["query"].get("start"))
        listed = [f"segment_id:{user['segment_id']}" for user in emulator.ground_truth()["users"]] if config.get("read_all_users") else []
    assert result.errors() == [], [error.message for error in result.errors()]
    assert result.statuses(about["stream"])[-1] == "COMPLETE"
    return ReadBack(result, [*config["user_external_ids"], *listed], starts, timedelta(hours=config.get("events_lookback_hours", 24)))


def watermarks_lost(old: dict[str, datetime], new: dict[str, datetime]) -> list[str]:
    """Keys the new state forgets or sets back: the next sync would read their events again from further back."""
    return [key for key, watermark in old.items() if key not in new or new[key] < watermark]


@pytest.mark.parametrize("name", fixtures("user_events", reading=False))
def test_each_watermark_decodes_to_what_the_writing_sync_read_through(name):
    """Version 1 kept each profile's newest event; later versions, the sync's start on the API's clock
    less SKEW_MARGIN, for every profile read. Known here from the emulator, not from the file."""
    about = MANIFEST["fixtures"][name]
    external_ids = MANIFEST["configs"][about["config"]]["user_external_ids"]
    if about["state_version"] == 1:
        with emulator_for(name, later=timedelta(0)) as emulator:
            users = emulator.ground_truth()["users"]  # the events there were when the state was written
        expected = {
            profile_state_key(user["lookup_id"]): max(timestamp(event["timestamp"]) for event in user["events"])
            for user in users if user["lookup_id"] in external_ids and user["events"]
        }
    else:
        expected = {profile_state_key(external_id): timestamp(about["emulator_clock"]) - SKEW_MARGIN for external_id in external_ids}
    assert profiles_read_through(stream_state(name)) == expected


@pytest.mark.parametrize("name", fixtures("user_events", reading=False))
def test_each_profile_the_state_names_is_read_from_its_watermark_less_the_lookback(name):
    old = profiles_read_through(stream_state(name))
    assert old, "the checks below would pass on a state that names nobody"
    read = read_back(name)
    keys = {profile_state_key(external_id): external_id for external_id in read.profile_ids}
    # A key no configured id has would go unchecked below: the fixture's config must read them all.
    assert set(old) <= set(keys)
    for key, watermark in old.items():
        assert [timestamp(start) if start else None for start in read.first_event_starts[keys[key]]] == [watermark - read.lookback], keys[key]
    new = profiles_read_through(read.result.states()[-1])
    assert set(new) == set(keys)
    assert watermarks_lost(old, new) == []


@pytest.mark.parametrize("name", fixtures("user_events", reading=True))
def test_an_interrupted_user_events_pass_loses_no_profile_and_keeps_every_watermark(name):
    old = profiles_read_through(stream_state(name))
    # What the interrupted attempt had read: the profiles it wrote at its own watermark. Whether a
    # resumed attempt skips them or reads them again is not this test's business.
    read_before = {key for key, watermark in old.items() if watermark == timestamp(stream_state(name)["reading"]["watermark"])}
    read = read_back(name)
    missing = [external_id for external_id in read.profile_ids if external_id not in read.first_event_starts and profile_state_key(external_id) not in read_before]
    assert missing == []
    assert watermarks_lost(old, profiles_read_through(read.result.states()[-1])) == []


@pytest.mark.parametrize("name", fixtures("user_traits"))
def test_an_interrupted_or_finished_user_traits_pass_loses_no_profile(name):
    delivered_before = set(MANIFEST["fixtures"][name].get("profiles_delivered_before", []))
    read = read_back(name)
    delivered_now = {profile_state_key(record["external_id"]) for record in read.result.records("user_traits")}
    assert {profile_state_key(external_id) for external_id in read.profile_ids} - delivered_now - delivered_before == set()
    assert read.result.states("user_traits")[-1] == {"__ab_full_refresh_sync_complete": True}
