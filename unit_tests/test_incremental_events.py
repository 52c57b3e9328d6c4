"""Incremental user_events (issue 5): per-profile cursors, `start` and lookback, state shape and checkpoints.

The fake server ignores `start` unless a test says otherwise, as a real one may: whatever the
connector must not emit, it has to filter itself. Events come newest first, as the API sends them.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from airbyte_cdk.models import FailureType, SyncMode, Type

from source_segment_profile.streams import profile_state_key
from unit_tests.builders import config, data_page, event, traits_page
from unit_tests.conftest import events_state, run_read

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

INCREMENTAL = SyncMode.incremental


def at(hhmm: str, day: int = 20) -> str:
    return f"2026-11-{day:02d}T{hhmm}:00Z"


def instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def keyed(cursors: dict[str, str]) -> dict[str, str]:
    """Cursors by profile id, as the state keys them: by profile_state_key (no id in clear)."""
    return {profile_state_key(external_id): cursor for external_id, cursor in cursors.items()}


def state_of(profiles: dict[str, str]) -> list:
    return events_state({"state_version": 1, "profiles": keyed(profiles)})


def read_events(ids=("user_id:u1",), state=None, **overrides):
    return run_read(config(user_external_ids=list(ids), **overrides), ["user_events"], INCREMENTAL, state=state)


def message_ids(result) -> list[str]:
    return [record["messageId"] for record in result.records()]


def test_a_first_sync_reads_everything_and_saves_the_newest_timestamp_per_profile(api):
    api.pages("user_events", "user_id:u1", data_page([event("m3", at("10:30")), event("m2", at("10:20"))], next="p2"), data_page([event("m1", at("09:00"))]))
    api.pages("user_events", "email:a+b@x.com", data_page([event("e1", at("08:00"))]))

    result = read_events(ids=["user_id:u1", "email:a+b@x.com"])

    assert sorted(message_ids(result)) == ["e1", "m1", "m2", "m3"]
    assert all("start" not in request.params for request in api.seen)
    final = result.states()[-1]
    assert final == {"state_version": 1, "profiles": keyed({"user_id:u1": at("10:30"), "email:a+b@x.com": at("08:00")})}


def test_the_state_holds_only_ids_and_cursors(api):
    api.pages("user_events", "user_id:u1", data_page([event("m1", at("10:00"), properties={"secret_order": 42})]))

    result = read_events()

    for state in result.states():
        assert set(state) == {"state_version", "profiles"}
        assert all(isinstance(key, str) and isinstance(value, str) for key, value in state["profiles"].items())
        assert "secret_order" not in str(state) and "m1" not in str(state)


def test_a_second_sync_sends_start_minus_lookback_and_filters_older_events_itself(api):
    # Server ignores `start`: page 1 holds new events, events inside the lookback and an old one.
    api.pages(
        "user_events",
        "user_id:u1",
        data_page([event("new", at("10:05")), event("late", at("09:55")), event("old", at("09:40"))], next="p2"),
        data_page([event("older", at("08:00"))]),
    )

    result = read_events(state=state_of({"user_id:u1": at("10:00")}))

    (request,) = api.requests_to("user_events")  # the first page already reached older events
    assert instant(request.param("start")) == instant(at("09:50"))  # default lookback: 10 minutes
    assert message_ids(result) == ["new", "late"]
    assert result.states()[-1]["profiles"] == keyed({"user_id:u1": at("10:05")})


@pytest.mark.parametrize("lookback, expected_start, expected_ids", [(0, "10:00", ["new", "same"]), (30, "09:30", ["new", "same", "late"])])
def test_the_lookback_window_is_configurable(api, lookback, expected_start, expected_ids):
    api.pages("user_events", "user_id:u1", data_page([event("new", at("10:05")), event("same", at("10:00")), event("late", at("09:45")), event("old", at("09:00"))]))

    result = read_events(state=state_of({"user_id:u1": at("10:00")}), events_lookback_minutes=lookback)

    assert instant(api.seen[0].param("start")) == instant(at(expected_start))
    assert message_ids(result) == expected_ids


def test_paging_stops_at_the_first_page_that_reaches_older_events(api):
    api.pages(
        "user_events",
        "user_id:u1",
        data_page([event("a", at("12:00")), event("b", at("11:30"))], next="p2"),
        data_page([event("c", at("11:00")), event("d", at("09:00"))], next="p3"),
        data_page([event("e", at("08:00"))]),
    )

    result = read_events(state=state_of({"user_id:u1": at("10:00")}))

    assert [request.param("next") for request in api.seen] == [None, "p2"]
    assert all(request.param("start") for request in api.seen)  # `start` on every page
    assert message_ids(result) == ["a", "b", "c"]


def test_an_unchanged_profile_costs_one_request(api):
    def honours_start(request):
        start = instant(request.param("start"))
        events = [item for item in [event("m2", at("10:00")), event("m1", at("09:00"))] if instant(item["timestamp"]) >= start]
        return data_page(events)

    api.handler("user_events", "user_id:u1", honours_start)

    result = read_events(state=state_of({"user_id:u1": at("10:00")}))

    assert len(api.seen) == 1
    assert message_ids(result) == ["m2"]  # only the lookback overlap, deduplicated downstream by primary key


def test_a_profile_added_later_gets_its_full_history(api):
    api.pages("user_events", "user_id:old", data_page([event("o2", at("10:30")), event("o1", at("09:00"))]))
    api.pages("user_events", "user_id:new", data_page([event("n2", at("10:00"))], next="p2"), data_page([event("n1", at("01:00", day=10))]))

    result = read_events(ids=["user_id:old", "user_id:new"], state=state_of({"user_id:old": at("10:00")}))

    new_requests = api.requests_to("user_events", "user_id:new")
    assert [request.param("start") for request in new_requests] == [None, None]
    assert sorted(message_ids(result)) == ["n1", "n2", "o2"]
    assert result.states()[-1]["profiles"] == keyed({"user_id:old": at("10:30"), "user_id:new": at("10:00")})


def test_profiles_no_longer_configured_are_dropped_from_the_state(api):
    api.pages("user_events", "user_id:kept", data_page([]))

    result = read_events(ids=["user_id:kept"], state=state_of({"user_id:kept": at("10:00"), "user_id:removed": at("11:00")}))

    assert result.states()
    for state in result.states():
        assert state["profiles"] == keyed({"user_id:kept": at("10:00")})  # kept even without new events


def test_start_date_bounds_the_first_sync(api):
    api.pages(
        "user_events",
        "user_id:u1",
        data_page([event("in", at("10:00")), event("edge", at("09:00")), event("before", at("08:59"))], next="p2"),
        data_page([event("ancient", at("01:00"))]),
    )

    result = read_events(start_date="2026-11-20T09:00:00Z")

    assert instant(api.seen[0].param("start")) == instant("2026-11-20T09:00:00Z")
    assert len(api.seen) == 1
    assert message_ids(result) == ["in", "edge"]


def test_start_date_later_than_the_cursor_wins(api):
    api.pages("user_events", "user_id:u1", data_page([event("in", at("12:00")), event("out", at("10:30"))]))

    result = read_events(state=state_of({"user_id:u1": at("10:00")}), start_date="2026-11-20T11:00:00Z")

    assert instant(api.seen[0].param("start")) == instant(at("11:00"))
    assert message_ids(result) == ["in"]


def test_start_date_bounds_full_refresh_too(api):
    api.pages("user_events", "user_id:u1", data_page([event("in", at("10:00")), event("out", at("08:00"))]))

    result = run_read(config(start_date="2026-11-20T09:00:00Z"), ["user_events"])

    assert message_ids(result) == ["in"]


@pytest.mark.parametrize(
    "settings, state",
    [
        ({"start_date": "2026-11-20T12:00:00+02:00"}, None),
        ({"events_lookback_minutes": 0}, {"user_id:u1": "2026-11-20T12:00:00+02:00"}),
    ],
    ids=["start_date-with-offset", "cursor-with-offset"],
)
def test_a_bound_with_a_utc_offset_is_sent_as_the_same_instant(api, settings, state):
    api.pages("user_events", "user_id:u1", data_page([]))

    read_events(state=state_of(state) if state else None, **settings)

    assert instant(api.seen[0].param("start")) == instant("2026-11-20T10:00:00Z")


def test_a_state_in_the_future_yields_no_records(api):
    api.pages("user_events", "user_id:u1", data_page([event("m2", at("10:00")), event("m1", at("09:00"))]))

    result = read_events(state=state_of({"user_id:u1": "2030-01-01T00:00:00Z"}))

    assert result.records() == []
    assert result.errors() == []
    assert result.states()[-1]["profiles"] == keyed({"user_id:u1": "2030-01-01T00:00:00Z"})


def test_a_legacy_stream_wide_timestamp_state_is_migrated(api):
    for profile in ("user_id:a", "user_id:b"):
        api.pages("user_events", profile, data_page([event(profile + "-new", at("10:30")), event(profile + "-old", at("08:00"))]))

    result = read_events(ids=["user_id:a", "user_id:b"], state=events_state({"timestamp": at("10:00")}))

    assert [instant(request.param("start")) for request in api.seen] == [instant(at("09:50"))] * 2
    assert sorted(message_ids(result)) == ["user_id:a-new", "user_id:b-new"]
    assert result.states()[-1] == {"state_version": 1, "profiles": keyed({"user_id:a": at("10:30"), "user_id:b": at("10:30")})}


MALFORMED_STATES = [
    {"state_version": 2, "profiles": {}},
    {"state_version": 1, "profiles": ["user_id:u1"]},
    {"state_version": 1},
    {"cursor": "2026-11-20T10:00:00Z"},
    {"timestamp": "last tuesday"},
    {"state_version": 1, "profiles": {"user_id:u1": "not a date"}},
    {"state_version": 1, "profiles": {"user_id:u1": 1700000000}},
]


@pytest.mark.parametrize("state", MALFORMED_STATES, ids=[str(index) for index in range(len(MALFORMED_STATES))])
def test_a_malformed_state_is_a_config_error_asking_for_a_reset(api, state):
    api.pages("user_traits", "user_id:u1", traits_page({"a": 1}))

    result = run_read(config(), ["user_events", "user_traits"], INCREMENTAL, state=events_state(state))

    error = result.stream_error("user_events")
    assert error.failure_type == FailureType.config_error
    assert "reset" in error.message.lower() and "user_events" in error.message
    assert api.requests_to("user_events") == []
    # No crash: the other stream of the sync is read.
    assert [record["external_id"] for record in result.records("user_traits")] == ["user_id:u1"]


def test_a_malformed_state_error_masks_email_ids(api):
    # A hand-edited state keyed by the raw id rather than its digest.
    hand_edited = events_state({"state_version": 1, "profiles": {"email:jane.doe@example.com": "garbage"}})
    result = read_events(ids=["email:jane.doe@example.com"], state=hand_edited)

    message = result.stream_error("user_events").message
    assert "email:j***@example.com" in message
    assert "jane.doe" not in result.all_text()


def test_an_incremental_sync_does_not_log_email_ids(api):
    api.pages("user_events", "email:jane.doe@example.com", data_page([event("m1", at("10:30"))]))

    result = read_events(ids=["email:jane.doe@example.com"], state=state_of({"email:jane.doe@example.com": at("10:00")}))

    assert len(result.records()) == 1
    for line in result.logs():
        assert "jane.doe" not in line, line


def test_state_is_checkpointed_every_200_profiles(api):
    ids = [f"user_id:u{n:03d}" for n in range(450)]
    for profile in ids:
        api.pages("user_events", profile, data_page([event(profile, at("10:00"))]))

    result = read_events(ids=ids)

    records_before_each_state = []
    records = 0
    for message in result.output.records_and_state_messages:
        if message.type == Type.RECORD:
            records += 1
        elif message.state.stream and message.state.stream.stream_descriptor.name == "user_events":
            records_before_each_state.append(records)
    sizes = [len(state["profiles"]) for state in result.states()]
    assert records_before_each_state[:3] == [200, 400, 450]
    assert sizes[:3] == [200, 400, 450]
    assert set(records_before_each_state[3:]) <= {450} and set(sizes[3:]) <= {450}
    assert len(result.records()) == 450


def test_an_interrupted_sync_resumes_from_its_last_checkpoint(api):
    ids = [f"user_id:u{n:03d}" for n in range(250)]
    for profile in ids:
        api.pages("user_events", profile, data_page([event(profile, at("10:00"))]))

    first = read_events(ids=ids)
    checkpoint = first.states()[0]  # as if the sync had been killed after its first checkpoint
    assert len(checkpoint["profiles"]) == 200

    api.seen.clear()
    second = read_events(ids=ids, state=events_state(checkpoint))

    # Workers complete profiles in any order: the checkpoint holds whichever 200 were emitted first.
    fresh = [request for request in api.seen if request.param("start") is None]
    not_checkpointed = [profile for profile in ids if profile_state_key(profile) not in checkpoint["profiles"]]
    assert len(not_checkpointed) == 50
    assert sorted(request.path.split("/profiles/")[1] for request in fresh) == sorted(f"{profile}/events" for profile in not_checkpointed)
    assert len(api.seen) == 250
    assert sorted(message_ids(second)) == sorted(ids)  # the first 200 again only through the lookback overlap
    assert len(second.states()[-1]["profiles"]) == 250
