"""Incremental user_events (issue 15): a watermark per profile on the API's clock, `start` and the
late-events window, the state's shape, its migrations, and checkpoints.

The fake server ignores `start` unless a test says otherwise, as a real one may: whatever the
connector must not emit, it has to filter itself. Events come newest first, as the API sends them.
Every answer carries the API clock's `Date` (`api_clock`), which sets the sync's watermark.
"""

from __future__ import annotations

import email.utils
import json
import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from airbyte_cdk.models import FailureType, Level, SyncMode, Type

from source_segment_profile import key_sets, stream_state, streams
from source_segment_profile import read_through_state
from source_segment_profile.read_through_state import ReadThroughState, format_timestamp, profiles_read_through
from source_segment_profile.masking import profile_key, profile_state_key
from unit_tests.builders import Reply, config, data_page, event, traits_page
from unit_tests.conftest import events_state, run_read

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

INCREMENTAL = SyncMode.incremental
SYNC_STARTS = "2026-11-20T12:00:00Z"  # the API's clock at the first answer of a sync
WATERMARK = "2026-11-20T11:55:00.000Z"  # ... less five minutes


def at(hhmm: str, day: int = 20) -> str:
    return f"2026-11-{day:02d}T{hhmm}:00Z"


def instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def http_date(value: str) -> str:
    return email.utils.format_datetime(instant(value), usegmt=True)


def api_clock(api, moment: str = SYNC_STARTS) -> None:
    """Every answer of the fake API says it is `moment` (its Date header)."""
    api.headers["Date"] = http_date(moment)


def key(external_id: str) -> str:
    return profile_state_key(external_id)


def v1_key(external_id: str) -> str:
    """Version 1 keyed a profile by 20 hex digits of the same digest."""
    return hashlib.sha256(external_id.encode()).hexdigest()[:20]


def state_with(*groups: tuple[str, list[str]]) -> dict:
    """A state of the current version: (watermark, profile ids) per group, keyed and coded as the connector does."""
    return {
        "state_version": 3,
        "read_through": [
            {"watermark": watermark, "profile_count": len(set(ids)), "profile_keys": key_sets.encode(key_sets.sorted_keys([profile_key(p) for p in ids]))}
            for watermark, ids in groups
        ],
    }


def state_v2(*groups: tuple[str, list[str]]) -> dict:
    """A version 2 state (connector 0.2.0): lists of 16-hex keys."""
    return {"state_version": 2, "read_through": [{"watermark": watermark, "profiles": sorted(key(p) for p in ids)} for watermark, ids in groups]}


def watermarks(state: dict) -> dict[str, str]:
    """key -> watermark of a state message, decoded."""
    return {profile: format_timestamp(watermark) for profile, watermark in profiles_read_through(state).items()}


def read_events(ids=("user_id:u1",), state=None, **overrides):
    return run_read(config(user_external_ids=list(ids), **overrides), ["user_events"], INCREMENTAL, state=events_state(state) if state else None)


def message_ids(result) -> list[str]:
    return [record["messageId"] for record in result.records()]


def starts(api, external_id: str = "user_id:u1") -> list:
    return [request.param("start") for request in api.requests_to("user_events", external_id)]


# --- the first sync and its watermark -------------------------------------------------------


def test_a_first_sync_reads_everything_and_saves_the_api_clock_less_five_minutes_for_every_profile(api):
    api_clock(api)
    api.pages("user_events", "user_id:u1", data_page([event("m3", at("10:30")), event("m2", at("10:20"))], next="p2"), data_page([event("m1", at("09:00"))]))
    api.pages("user_events", "email:a+b@x.com", data_page([event("e1", at("08:00"))]))

    result = read_events(ids=["user_id:u1", "email:a+b@x.com"])

    assert sorted(message_ids(result)) == ["e1", "m1", "m2", "m3"]
    assert all("start" not in request.params for request in api.seen)
    assert result.states()[-1] == state_with((WATERMARK, ["user_id:u1", "email:a+b@x.com"]))


def test_the_watermark_comes_from_the_first_answer_not_from_later_ones(api):
    dates = iter([SYNC_STARTS, "2026-11-20T12:30:00Z", "2026-11-20T13:00:00Z"])
    api.handler("user_events", "user_id:u1", lambda request: Reply(200, data_page([event("m1", at("10:00"))]), {"Date": http_date(next(dates))}))
    api.handler("user_events", "user_id:u2", lambda request: Reply(200, data_page([]), {"Date": http_date(next(dates))}))

    result = read_events(ids=["user_id:u1", "user_id:u2"], max_concurrency=1)

    assert watermarks(result.states()[-1]) == {key("user_id:u1"): WATERMARK, key("user_id:u2"): WATERMARK}


def test_without_a_date_header_the_watermark_is_the_local_clock_less_five_minutes(api):
    api.pages("user_events", "user_id:u1", data_page([event("m1", at("10:00"))]))
    before = datetime.now(timezone.utc)

    result = read_events()

    (watermark,) = watermarks(result.states()[-1]).values()
    assert before - timedelta(minutes=5, seconds=1) <= instant(watermark) <= datetime.now(timezone.utc) - timedelta(minutes=5)


def test_the_state_holds_only_digests_and_watermarks(api):
    api_clock(api)
    api.pages("user_events", "email:jane.doe@example.com", data_page([event("m1", at("10:00"), properties={"secret_order": 42})]))

    result = read_events(ids=["email:jane.doe@example.com"])

    assert result.states()
    for state in result.states():
        assert set(state) == {"state_version", "read_through"}
        for group in state["read_through"]:
            assert set(group) == {"watermark", "profile_count", "profile_keys"}
        assert watermarks(state) == {key("email:jane.doe@example.com"): WATERMARK}
        assert "jane" not in str(state) and "secret_order" not in str(state) and "m1" not in str(state)


# --- the next sync: start, the late-events window, filtering ---------------------------------


def test_a_second_sync_asks_from_the_watermark_less_24_hours_and_filters_older_events_itself(api):
    api_clock(api, "2026-11-21T12:00:00Z")
    # The server ignores `start`: page 1 holds a new event, a late one inside the window and an old one.
    api.pages(
        "user_events",
        "user_id:u1",
        data_page([event("new", at("10:05")), event("late", at("12:00", day=19)), event("old", at("09:00", day=19))], next="p2"),
        data_page([event("older", at("08:00", day=19))]),
    )

    result = read_events(state=state_with((at("10:00"), ["user_id:u1"])))

    assert [instant(start) for start in starts(api)] == [instant(at("10:00", day=19))]  # one request: page 1 reached older events
    assert message_ids(result) == ["new", "late"]
    assert result.states()[-1] == state_with(("2026-11-21T11:55:00.000Z", ["user_id:u1"]))


@pytest.mark.parametrize(
    "settings, expected_start",
    [
        ({"events_lookback_hours": 0}, at("10:00")),
        ({"events_lookback_hours": 48}, at("10:00", day=18)),
        ({"events_lookback_hours": 1.5}, at("08:30")),
        ({"events_lookback_minutes": 30}, at("09:30")),  # the older option, still read when hours is absent
        ({"events_lookback_minutes": 30, "events_lookback_hours": 2}, at("08:00")),  # hours wins
    ],
    ids=["0h", "48h", "1.5h", "minutes-only", "both"],
)
def test_the_late_events_window_is_configurable(api, settings, expected_start):
    api_clock(api)
    api.pages("user_events", "user_id:u1", data_page([]))

    read_events(state=state_with((at("10:00"), ["user_id:u1"])), **settings)

    assert [instant(start) for start in starts(api)] == [instant(expected_start)]


@pytest.mark.parametrize(
    "settings, field",
    [({"events_lookback_hours": 337}, "events_lookback_hours"), ({"events_lookback_minutes": 20161}, "events_lookback_minutes")],
    ids=["hours", "minutes"],
)
def test_a_window_longer_than_the_14_days_the_api_keeps_is_a_config_error_naming_the_field(api, settings, field):
    result = read_events(**settings)

    (error,) = result.errors()
    assert error.failure_type == FailureType.config_error
    assert field in error.message and "336" in error.message
    assert api.seen == []


def test_paging_stops_at_the_first_page_that_reaches_older_events(api):
    api_clock(api)
    api.pages(
        "user_events",
        "user_id:u1",
        data_page([event("a", at("12:00")), event("b", at("11:30"))], next="p2"),
        data_page([event("c", at("11:00", day=19)), event("d", at("09:00", day=19))], next="p3"),
        data_page([event("e", at("08:00", day=19))]),
    )

    result = read_events(state=state_with((at("10:00"), ["user_id:u1"])))

    assert [request.param("next") for request in api.seen] == [None, "p2"]
    assert all(request.param("start") for request in api.seen)  # `start` on every page
    assert message_ids(result) == ["a", "b", "c"]


def honouring_start(*events):
    """An events answer that applies `start` as the real API does."""

    def answer(request):
        start = instant(request.param("start")) if request.param("start") else None
        return data_page([item for item in events if start is None or instant(item["timestamp"]) >= start])

    return answer


def test_an_unchanged_profile_costs_one_request(api):
    api_clock(api, "2026-11-21T12:00:00Z")
    api.handler("user_events", "user_id:u1", honouring_start(event("m2", at("10:00")), event("m1", at("09:00", day=19))))

    result = read_events(state=state_with((at("10:00"), ["user_id:u1"])))

    assert len(api.seen) == 1
    assert message_ids(result) == ["m2"]  # the window's overlap, deduplicated downstream by primary key


def test_a_future_stamped_event_is_delivered_and_later_events_still_arrive_next_sync(api):
    """A device clock a year ahead: under a cursor of event timestamps it would hide every event
    until then. The watermark is the API's clock, so it hides nothing."""
    future = event("from-the-future", "2027-11-20T00:00:00Z")
    first = event("first", at("11:00"))
    api_clock(api, SYNC_STARTS)
    api.handler("user_events", "user_id:u1", honouring_start(future, first))

    first_sync = read_events()

    assert message_ids(first_sync) == ["from-the-future", "first"]
    state = first_sync.states()[-1]
    assert state == state_with((WATERMARK, ["user_id:u1"]))

    arrived_since = event("arrived-since", at("09:00", day=21))
    api_clock(api, "2026-11-21T12:00:00Z")
    api.handler("user_events", "user_id:u1", honouring_start(future, arrived_since, first))

    second_sync = read_events(state=state)

    assert "arrived-since" in message_ids(second_sync)
    assert second_sync.states()[-1] == state_with(("2026-11-21T11:55:00.000Z", ["user_id:u1"]))


# --- which profiles the state holds ----------------------------------------------------------


def test_a_profile_added_later_gets_its_full_history(api):
    api_clock(api)
    api.pages("user_events", "user_id:old", data_page([event("o2", at("10:30")), event("o1", at("09:00", day=10))]))
    api.pages("user_events", "user_id:new", data_page([event("n2", at("10:00"))], next="p2"), data_page([event("n1", at("01:00", day=10))]))

    result = read_events(ids=["user_id:old", "user_id:new"], state=state_with((at("10:00", day=19), ["user_id:old"])))

    assert starts(api, "user_id:new") == [None, None]
    assert [instant(start) for start in starts(api, "user_id:old")] == [instant(at("10:00", day=18))]
    assert sorted(message_ids(result)) == ["n1", "n2", "o2"]
    assert result.states()[-1] == state_with((WATERMARK, ["user_id:old", "user_id:new"]))


def test_profiles_no_longer_configured_leave_the_state(api):
    api_clock(api)
    api.pages("user_events", "user_id:kept", data_page([]))

    result = read_events(ids=["user_id:kept"], state=state_with((at("10:00"), ["user_id:kept", "user_id:removed"])))

    assert result.states()
    for state in result.states():
        assert key("user_id:removed") not in watermarks(state)
    assert result.states()[-1] == state_with((WATERMARK, ["user_id:kept"]))  # read through now, even without new events


def test_a_profile_that_answers_404_for_one_sync_keeps_its_watermark(api):
    # Issue 21: a profile missing for one sync (a merge, a lag, a wrong id fixed later) that answers
    # again must be read from where it was, not over its whole window.
    api_clock(api)
    api.pages("user_events", "user_id:u1", data_page([event("m1", at("11:00"))]))
    api.replies("user_events", "user_id:gone", Reply.error(404))

    result = read_events(ids=["user_id:u1", "user_id:gone"], state=state_with((at("10:00"), ["user_id:u1", "user_id:gone"])))

    assert result.errors() == []
    assert watermarks(result.states()[-1]) == {key("user_id:gone"): format_timestamp(instant(at("10:00"))), key("user_id:u1"): WATERMARK}


def test_a_profile_whose_reading_failed_keeps_its_old_watermark(api, monkeypatch):
    # A failed stream writes no final state: a checkpoint after each profile, with one worker
    # reading "ok" first, gives a state written while "broken" was being read.
    monkeypatch.setattr(stream_state, "CHECKPOINT_EVERY_PROFILES", 1)
    api_clock(api)
    api.pages("user_events", "user_id:ok", data_page([event("m1", at("11:00"))]))
    api.replies("user_events", "user_id:broken", Reply.error(500))

    result = read_events(
        ids=["user_id:ok", "user_id:broken"], state=state_with((at("10:00"), ["user_id:ok", "user_id:broken"])), max_retries=0, max_concurrency=1
    )

    assert result.stream_error("user_events").failure_type == FailureType.transient_error
    assert result.states(), "no state was written: nothing to check the failed profile's watermark in"
    for state in result.states():
        assert watermarks(state).get(key("user_id:broken")) == "2026-11-20T10:00:00.000Z"


# --- start_date -----------------------------------------------------------------------------


def test_start_date_bounds_the_first_sync(api):
    api.pages(
        "user_events",
        "user_id:u1",
        data_page([event("in", at("10:00")), event("edge", at("09:00")), event("before", at("08:59"))], next="p2"),
        data_page([event("ancient", at("01:00"))]),
    )

    result = read_events(start_date="2026-11-20T09:00:00Z")

    assert [instant(start) for start in starts(api)] == [instant("2026-11-20T09:00:00Z")]
    assert message_ids(result) == ["in", "edge"]


def test_start_date_later_than_the_watermark_less_the_window_wins(api):
    api.pages("user_events", "user_id:u1", data_page([event("in", at("12:00")), event("out", at("10:30"))]))

    result = read_events(state=state_with((at("10:00"), ["user_id:u1"])), start_date="2026-11-20T11:00:00Z")

    assert [instant(start) for start in starts(api)] == [instant(at("11:00"))]
    assert message_ids(result) == ["in"]


def test_start_date_bounds_full_refresh_too(api):
    api.pages("user_events", "user_id:u1", data_page([event("in", at("10:00")), event("out", at("08:00"))]))

    result = run_read(config(start_date="2026-11-20T09:00:00Z"), ["user_events"])

    assert message_ids(result) == ["in"]


@pytest.mark.parametrize(
    "settings, state",
    [
        ({"start_date": "2026-11-20T12:00:00+02:00"}, None),
        ({"events_lookback_hours": 0}, state_with(("2026-11-20T12:00:00+02:00", ["user_id:u1"]))),
    ],
    ids=["start_date-with-offset", "watermark-with-offset"],
)
def test_a_bound_with_a_utc_offset_is_sent_as_the_same_instant(api, settings, state):
    api.pages("user_events", "user_id:u1", data_page([]))

    read_events(state=state, **settings)

    assert instant(api.seen[0].param("start")) == instant("2026-11-20T10:00:00Z")


# --- older states ---------------------------------------------------------------------------


def test_a_version_1_state_is_migrated_with_its_keys_shortened_and_future_cursors_capped(api):
    """Version 1 kept each profile's newest event timestamp (which a future-stamped event could
    push a year ahead): it becomes the profile's watermark, never later than now."""
    api_clock(api)
    first_200 = [f"user_id:n{n:03d}" for n in range(200)]
    for profile in first_200 + ["user_id:v1-past", "user_id:v1-future"]:
        api.pages("user_events", profile, data_page([]))
    v1 = {"state_version": 1, "profiles": {v1_key("user_id:v1-past"): at("10:00"), v1_key("user_id:v1-future"): "2030-01-01T00:00:00Z"}}
    before = datetime.now(timezone.utc)

    # One worker: the first checkpoint (200 profiles) comes before the migrated profiles are read.
    result = read_events(ids=first_200 + ["user_id:v1-past", "user_id:v1-future"], state=v1, max_concurrency=1)

    assert result.errors() == []
    checkpoint = watermarks(result.states()[0])
    assert checkpoint[key("user_id:v1-past")] == "2026-11-20T10:00:00.000Z"
    capped = instant(checkpoint[key("user_id:v1-future")])
    assert before - timedelta(seconds=1) <= capped <= datetime.now(timezone.utc)
    assert [instant(start) for start in starts(api, "user_id:v1-past")] == [instant(at("10:00", day=19))]
    assert abs(instant(starts(api, "user_id:v1-future")[0]) - (capped - timedelta(hours=24))) < timedelta(seconds=1)
    assert result.states()[-1] == state_with((WATERMARK, first_200 + ["user_id:v1-past", "user_id:v1-future"]))


def test_a_legacy_stream_wide_timestamp_state_becomes_every_profiles_watermark(api):
    api_clock(api)
    for profile in ("user_id:a", "user_id:b"):
        api.pages("user_events", profile, data_page([event(profile + "-new", at("10:30")), event(profile + "-old", at("08:00", day=19))]))

    result = read_events(ids=["user_id:a", "user_id:b"], state={"timestamp": at("10:00")})

    assert [instant(request.param("start")) for request in api.seen] == [instant(at("10:00", day=19))] * 2
    assert sorted(message_ids(result)) == ["user_id:a-new", "user_id:b-new"]
    assert result.states()[-1] == state_with((WATERMARK, ["user_id:a", "user_id:b"]))


MALFORMED_STATES = [
    {"state_version": 2, "profiles": {}},
    {"state_version": 2, "read_through": {}},
    {"state_version": 2, "read_through": ["abc"]},
    {"state_version": 2, "read_through": [{"watermark": "2026-11-20T10:00:00Z", "profiles": "abc"}]},
    {"state_version": 2, "read_through": [{"watermark": "yesterday", "profiles": []}]},
    {"state_version": 2, "read_through": [{"profiles": ["0123456789abcdef"]}]},
    {"state_version": 4, "read_through": []},
    {"state_version": 3, "read_through": [{"watermark": "2026-11-20T10:00:00Z", "profiles": ["0123456789abcdef"]}]},
    {"state_version": 3, "read_through": [{"watermark": "2026-11-20T10:00:00Z", "profile_count": 2, "profile_keys": "d`HkM0CKXFfB"}]},
    {"state_version": 3, "read_through": [{"watermark": "2026-11-20T10:00:00Z", "profile_count": -1, "profile_keys": ""}]},
    {"state_version": 3, "read_through": [{"watermark": "2026-11-20T10:00:00Z", "profile_count": 1, "profile_keys": "not base85 \\"}]},
    {"state_version": 3, "read_through": [{"watermark": "yesterday", "profile_count": 0, "profile_keys": ""}]},
    {"state_version": 2, "read_through": [{"watermark": "2026-11-20T10:00:00Z", "profiles": ["user_id:u1"]}]},
    {"state_version": 1, "profiles": ["user_id:u1"]},
    {"state_version": 1},
    {"cursor": "2026-11-20T10:00:00Z"},
    {"timestamp": "last tuesday"},
    {"state_version": 1, "profiles": {"0123456789abcdef0123": "not a date"}},
    {"state_version": 1, "profiles": {"0123456789abcdef0123": 1700000000}},
    # Shapes the incoming state's summary line must survive too (it is logged before the state is read).
    {"state_version": 3, "read_through": [{"watermark": "2026-11-20T10:00:00Z", "profile_count": "two", "profile_keys": ""}]},
    {"state_version": 2, "read_through": [{"watermark": "2026-11-20T10:00:00Z", "profiles": 5}]},
]


@pytest.mark.parametrize("state", MALFORMED_STATES, ids=[str(index) for index in range(len(MALFORMED_STATES))])
def test_a_state_with_no_usable_watermark_is_a_config_error_that_never_advises_deleting_data(api, state):
    api.pages("user_traits", "user_id:u1", traits_page({"a": 1}))

    result = run_read(config(), ["user_events", "user_traits"], INCREMENTAL, state=events_state(state))

    error = result.stream_error("user_events")
    assert error.failure_type == FailureType.config_error
    assert "user_events" in error.message and "Retain records" in error.message
    # Issue 21: Reset (now Airbyte's Clear action) deletes the only copy of events older than 14 days.
    assert "reset" not in error.message.lower() and "Do not use Airbyte's Clear action" in error.message
    assert api.requests_to("user_events") == []
    # No crash: the other stream of the sync is read.
    assert [record["external_id"] for record in result.records("user_traits")] == ["user_id:u1"]


def test_a_state_entry_that_cannot_be_read_is_left_out_and_every_other_watermark_kept(api):
    api_clock(api)
    for profile in ("user_id:kept", "user_id:lost"):
        api.pages("user_events", profile, data_page([event(profile + "-new", at("11:00"))]))
    good = state_with((at("10:00"), ["user_id:kept"]))["read_through"][0]
    state = {"state_version": 3, "read_through": [good, {"watermark": "yesterday", "profile_count": 1, "profile_keys": "x"}]}

    result = read_events(ids=["user_id:kept", "user_id:lost"], state=state)

    assert result.errors() == []
    assert instant(starts(api, "user_id:kept")[0]) == instant(at("10:00")) - timedelta(hours=24)
    assert starts(api, "user_id:lost") == [None]  # read as a new profile: its whole window
    warnings = [line for line in result.logs(Level.WARN) if "cannot be read" in line]
    assert len(warnings) == 1 and "Every other watermark is kept" in warnings[0]
    assert watermarks(result.states()[-1]) == {key("user_id:kept"): WATERMARK, key("user_id:lost"): WATERMARK}


def test_an_unreadable_state_error_masks_email_ids(api):
    # A hand-edited state keyed by the raw id rather than its digest.
    hand_edited = {"state_version": 1, "profiles": {"email:jane.doe@example.com": "garbage"}}
    result = read_events(ids=["email:jane.doe@example.com"], state=hand_edited)

    message = result.stream_error("user_events").message
    assert "email:j***@example.com" in message
    assert "jane.doe" not in result.all_text()


def test_an_incremental_sync_does_not_log_email_ids(api):
    api.pages("user_events", "email:jane.doe@example.com", data_page([event("m1", at("10:30"))]))

    result = read_events(ids=["email:jane.doe@example.com"], state=state_with((at("10:00"), ["email:jane.doe@example.com"])))

    assert len(result.records()) == 1
    assert result.logs()
    for line in result.logs():
        assert "jane.doe" not in line, line


# --- checkpoints ----------------------------------------------------------------------------


def test_state_is_checkpointed_every_200_profiles_with_only_the_profiles_completed_before_it(api):
    api_clock(api)
    ids = [f"user_id:u{n:03d}" for n in range(450)]
    for profile in ids:
        api.pages("user_events", profile, data_page([event(f"{profile}-2", at("10:00"))], next="p2"), data_page([event(f"{profile}-1", at("09:00"))]))

    result = read_events(ids=ids, max_concurrency=8)

    emitted: dict[str, int] = {}
    checkpoints = []
    for message in result.output.records_and_state_messages:
        if message.type == Type.RECORD:
            emitted[message.record.data["external_id"]] = emitted.get(message.record.data["external_id"], 0) + 1
        elif message.state.stream and message.state.stream.stream_descriptor.name == "user_events":
            complete = {key(profile) for profile, records in emitted.items() if records == 2}
            checkpoints.append((set(watermarks(result.states()[len(checkpoints)])), complete))
    assert [len(in_state) for in_state, _ in checkpoints[:3]] == [200, 400, 450]
    for in_state, complete in checkpoints:
        assert in_state <= complete  # no profile is in the state before both its pages were emitted
    assert len(result.records()) == 900


def test_an_interrupted_sync_resumes_from_its_last_checkpoint(api):
    ids = [f"user_id:u{n:03d}" for n in range(250)]
    for profile in ids:
        api.pages("user_events", profile, data_page([event(profile, at("10:00"))]))
    api_clock(api)
    first = read_events(ids=ids)
    checkpoint = first.states()[0]  # as if the sync had been killed after its first checkpoint
    assert checkpoint == state_with((WATERMARK, [profile for profile in ids if key(profile) in watermarks(checkpoint)]))
    assert len(watermarks(checkpoint)) == 200

    api.seen.clear()
    api_clock(api, "2026-11-20T13:00:00Z")
    second = read_events(ids=ids, state=checkpoint)

    # Workers complete profiles in any order: the checkpoint holds whichever 200 were emitted first.
    not_checkpointed = [profile for profile in ids if key(profile) not in watermarks(checkpoint)]
    assert len(not_checkpointed) == 50
    fresh = [request for request in api.seen if request.param("start") is None]
    assert sorted(request.path.split("/profiles/")[1] for request in fresh) == sorted(f"{profile}/events" for profile in not_checkpointed)
    assert {instant(request.param("start")) for request in api.seen if request.param("start")} == {instant(WATERMARK) - timedelta(hours=24)}
    assert len(api.seen) == 250
    assert sorted(message_ids(second)) == sorted(ids)  # the first 200 again only through the window's overlap
    assert second.states()[-1] == state_with(("2026-11-20T12:55:00.000Z", ids))


def test_checkpoints_come_every_16th_of_the_profiles_in_the_state_so_a_sync_writes_under_20x_its_final_state(api, monkeypatch):
    """Every checkpoint names every profile (read now at the new watermark, or not yet at its old
    one), so it is as large as the final state: a sync writes at most ~17 of them."""
    monkeypatch.setattr(stream_state, "CHECKPOINT_EVERY_PROFILES", 10)  # the floor, for small states
    api_clock(api, "2026-11-21T12:00:00Z")
    ids = [f"user_id:u{n:03d}" for n in range(480)]
    for profile in ids:
        api.pages("user_events", profile, data_page([]))

    result = read_events(ids=ids, state=state_with((at("10:00"), ids)), max_concurrency=4)

    states = result.states()
    read_now = [sum(watermark == "2026-11-21T11:55:00.000Z" for watermark in watermarks(state).values()) for state in states]
    assert read_now[:16] == [30 * n for n in range(1, 17)]  # 480 / 16
    assert all(len(watermarks(state)) == 480 for state in states)
    sizes = [len(json.dumps(state)) for state in states]
    assert sum(sizes) <= 20 * sizes[-1]


def test_in_a_first_sync_checkpoints_space_out_as_the_state_grows(api, monkeypatch):
    monkeypatch.setattr(stream_state, "CHECKPOINT_EVERY_PROFILES", 10)
    api_clock(api)
    ids = [f"user_id:u{n:04d}" for n in range(1000)]
    for profile in ids:
        api.pages("user_events", profile, data_page([]))

    result = read_events(ids=ids, max_concurrency=4)

    in_state = [len(watermarks(state)) for state in result.states()]
    gaps = [after - before for before, after in zip([0] + in_state, in_state)]
    # max(10, profiles in the state / 16): 10 at a time up to 160, then a 16th more each time.
    assert gaps[:17] == [10] * 17
    assert all(gap == max(10, before // 16) for before, gap in zip([0] + in_state, gaps[:-1]))
    assert in_state[-1] == 1000
    sizes = [len(json.dumps(state)) for state in result.states()]
    assert sum(sizes) <= 20 * sizes[-1]


def test_a_version_2_state_is_migrated_exactly(api):
    api_clock(api)
    api.pages("user_events", "user_id:u1", data_page([event("new", at("10:30")), event("old", at("08:00", day=18))]))
    api.pages("user_events", "user_id:u2", data_page([event("u2-new", at("11:30")), event("u2-window", at("10:00"))]))

    result = read_events(ids=["user_id:u1", "user_id:u2"], state=state_v2((at("10:00", day=19), ["user_id:u1"]), (at("11:00"), ["user_id:u2"])))

    assert [instant(start) for start in starts(api, "user_id:u1")] == [instant(at("10:00", day=18))]
    assert [instant(start) for start in starts(api, "user_id:u2")] == [instant(at("11:00", day=19))]
    assert sorted(message_ids(result)) == ["new", "u2-new", "u2-window"]
    assert result.states()[-1] == state_with((WATERMARK, ["user_id:u1", "user_id:u2"]))


def test_a_version_1_state_with_a_watermark_per_profile_is_written_back_in_a_few_entries_that_only_lower_watermarks():
    """Migrated v1 cursors are each profile's own instant: written as they are, that would be an
    entry per profile. Past MAX_WATERMARK_GROUPS, each is lowered to the earliest of its bucket."""
    now = instant("2026-11-21T00:00:00Z")
    cursors = {f"user_id:u{n:03d}": instant("2026-11-20T00:00:00Z") + timedelta(minutes=7 * n) for n in range(200)}
    v1 = {"state_version": 1, "profiles": {v1_key(profile): format_timestamp(cursor) for profile, cursor in cursors.items()}}

    migrated = ReadThroughState.from_message(v1, (), now)
    written = migrated.message()

    assert all(migrated.read_through(profile) == cursor for profile, cursor in cursors.items())  # exact while reading
    assert len(written["read_through"]) == read_through_state.MAX_WATERMARK_GROUPS
    back = profiles_read_through(written)
    assert set(back) == {key(profile) for profile in cursors}
    assert all(back[key(profile)] <= cursor for profile, cursor in cursors.items())
    assert max(cursor - back[key(profile)] for profile, cursor in cursors.items()) < timedelta(minutes=7 * 7)
