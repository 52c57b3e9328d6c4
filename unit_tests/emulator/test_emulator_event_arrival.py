"""Events that arrive late or stamped in the future, and fixed event counts for the benchmark."""

from __future__ import annotations

import pytest

from segment_profile_emulator import dataset as dataset_module
from segment_profile_emulator.dataset import build_dataset
from segment_profile_emulator.formats import HOUR_MS, RETENTION_MS, format_timestamp, parse_timestamp
from segment_profile_emulator.ground_truth import ground_truth
from segment_profile_emulator.testing import running_emulator
from unit_tests.emulator.paging import api_session, get, page_through

NOW = "2026-11-20T10:00:00Z"
NOW_MS = parse_timestamp(NOW)
LATENESS_HOURS = (6, 23, 72)
# The k-th lateness goes to users whose index % 5 is (1, 2, 4)[k]: in a space of 20, four each.
LATE_USERS = {6: [1, 6, 11, 16], 23: [2, 7, 12, 17], 72: [4, 9, 14, 19]}
FUTURE_USERS = [4, 14]  # index % 10 == 4


def message_id(event):
    return event.get("messageId") or event["message_id"]


def events_by_id(user):
    return {message_id(event): event for event in user["events"]}


@pytest.fixture(scope="module")
def plain_space():
    return build_dataset(20, 0, seed=6, now=NOW)


@pytest.fixture(scope="module")
def late_space():
    return build_dataset(20, 0, seed=6, now=NOW, late_event_hours=LATENESS_HOURS)


def late_events_at(plain_space, late_space, now_ms):
    """{user index: the late events visible at now_ms}: what the late space shows beyond the plain one."""
    plain, late = ground_truth(plain_space, now_ms), ground_truth(late_space, now_ms)
    extra = {}
    for index, (plain_user, late_user) in enumerate(zip(plain["users"], late["users"])):
        plain_ids = events_by_id(plain_user)
        assert all(message_id(event) in events_by_id(late_user) for event in plain_user["events"])
        extra[index] = [event for event in late_user["events"] if message_id(event) not in plain_ids]
    return extra


# --- late events --------------------------------------------------------------------------------


def test_late_events_are_one_per_hour_for_every_5th_user_and_only_show_once_arrived(plain_space, late_space):
    late = late_events_at(plain_space, late_space, NOW_MS)
    assert sorted(index for index, events in late.items() if events) == sorted(sum(LATE_USERS.values(), []))
    for hours, users in LATE_USERS.items():
        for index in users:
            stamps = [parse_timestamp(event["timestamp"]) for event in late[index]]
            # stamped in the window, and arrived: timestamp + lateness < now
            assert all(NOW_MS - RETENTION_MS <= stamp < NOW_MS - hours * HOUR_MS for stamp in stamps)
            # one per hour: NOW is on the hour, so every hour of [now - 14 days, now - lateness) has one
            assert sorted(stamp // HOUR_MS for stamp in stamps) == list(
                range((NOW_MS - RETENTION_MS) // HOUR_MS, (NOW_MS - hours * HOUR_MS) // HOUR_MS)
            )


def test_advancing_the_clock_delivers_the_events_that_were_in_transit(plain_space, late_space):
    before = late_events_at(plain_space, late_space, NOW_MS)
    later_ms = NOW_MS + 3 * HOUR_MS
    after = late_events_at(plain_space, late_space, later_ms)
    for hours, users in LATE_USERS.items():
        for index in users:
            seen_before = {message_id(event) for event in before[index]}
            arrived = [event for event in after[index] if message_id(event) not in seen_before]
            stamps = sorted(parse_timestamp(event["timestamp"]) for event in arrived)
            # the three hours that arrived meanwhile, stamped before the first clock: in transit at NOW
            assert [stamp // HOUR_MS for stamp in stamps] == [(NOW_MS - hours * HOUR_MS) // HOUR_MS + k for k in range(3)]
            assert stamps[-1] < NOW_MS
            # and nothing already delivered went away (the window's oldest hours aside)
            kept = {message_id(event) for event in after[index]}
            lost = [event for event in before[index] if message_id(event) not in kept]
            assert all(parse_timestamp(event["timestamp"]) < later_ms - RETENTION_MS for event in lost)


def test_users_without_events_keep_none_and_late_events_sort_with_the_others(late_space):
    truth = ground_truth(late_space)
    assert truth["users"][8]["events"] == [] and truth["users"][18]["events"] == []
    for user in truth["users"]:
        stamps = [event["timestamp"] for event in user["events"]]
        assert stamps == sorted(stamps, reverse=True)
    ids = [message_id(event) for user in truth["users"] for event in user["events"]]
    assert len(ids) == len(set(ids))


def test_a_late_event_is_not_served_before_its_arrival_and_is_served_after():
    with running_emulator(users=10, accounts=0, seed=6, now=NOW, rate_limit=0, late_events="6") as emulator:
        with api_session(emulator) as api:
            user = emulator.ground_truth()["users"][1]  # the first user with 6-hour-late events
            served_before, _ = page_through(api, emulator, "users", user["lookup_id"], "events", "data", limit=200)
            assert served_before == user["events"]
            emulator.advance_clock(2 * 3600)
            truth_after = emulator.ground_truth()["users"][1]
            served_after, _ = page_through(api, emulator, "users", user["lookup_id"], "events", "data", limit=200)
            assert served_after == truth_after["events"]
            recent, _ = page_through(
                api, emulator, "users", user["lookup_id"], "events", "data", limit=200, start=format_timestamp(NOW_MS - 6 * HOUR_MS)
            )
    before_ids = {message_id(event) for event in served_before}
    arrived = [event for event in served_after if message_id(event) not in before_ids and event["timestamp"] < NOW]
    assert arrived  # stamped before the first clock, served only after it moved
    assert all(NOW_MS - 6 * HOUR_MS <= parse_timestamp(event["timestamp"]) < NOW_MS - 4 * HOUR_MS for event in arrived)
    assert all(event in recent for event in arrived)


# --- future-stamped events ----------------------------------------------------------------------

FUTURE_STAMP = format_timestamp(NOW_MS - HOUR_MS + 365 * 24 * HOUR_MS)  # arrived 1 h before NOW, a year ahead


def test_a_future_stamped_event_comes_first_and_start_end_sort_treat_it_by_its_timestamp():
    with running_emulator(users=20, accounts=0, seed=6, now=NOW, rate_limit=0, future_events=True) as emulator:
        with api_session(emulator) as api:
            truth = emulator.ground_truth()
            holders = [index for index, user in enumerate(truth["users"]) if any(event["timestamp"] > NOW for event in user["events"])]
            assert holders == FUTURE_USERS
            user = truth["users"][FUTURE_USERS[0]]
            assert user["events"][0]["timestamp"] == FUTURE_STAMP == "2027-11-20T09:00:00.000Z"
            lookup = user["lookup_id"]
            newest_first, _ = page_through(api, emulator, "users", lookup, "events", "data", limit=200)
            assert newest_first == user["events"]
            oldest_first, _ = page_through(api, emulator, "users", lookup, "events", "data", limit=200, sort="asc")
            assert oldest_first[-1]["timestamp"] == FUTURE_STAMP
            assert get(api, emulator, "users", lookup, "events", start=NOW).json()["data"] == [user["events"][0]]
            before_now, _ = page_through(api, emulator, "users", lookup, "events", "data", limit=200, end=NOW)
            assert before_now == user["events"][1:]
            emulator.advance_clock(24 * 3600)  # it stays: retention counts from its timestamp
            assert get(api, emulator, "users", lookup, "events", limit=1).json()["data"][0]["timestamp"] == FUTURE_STAMP
            assert emulator.ground_truth()["users"][FUTURE_USERS[0]]["events"][0]["timestamp"] == FUTURE_STAMP


# --- fixed event counts -------------------------------------------------------------------------


def test_events_per_user_puts_exactly_n_evenly_spread_events_in_every_window():
    space = build_dataset(10, 0, seed=6, now=NOW, events_per_user=250)
    now, later = ground_truth(space), ground_truth(space, NOW_MS + 7 * HOUR_MS + 12_345)
    spacing = RETENTION_MS // 250
    assert now["users"] and later["users"]
    for user_now, user_later in zip(now["users"], later["users"]):
        assert len(user_now["events"]) == len(user_later["events"]) == 250  # user 8, naturally without, too
        stamps = [parse_timestamp(event["timestamp"]) for event in user_now["events"]]
        assert {earlier - later_stamp for earlier, later_stamp in zip(stamps, stamps[1:])} <= {spacing, spacing + 1}
        overlap = [event for event in user_now["events"] if parse_timestamp(event["timestamp"]) >= NOW_MS + 7 * HOUR_MS + 12_345 - RETENTION_MS]
        assert overlap == [event for event in user_later["events"] if parse_timestamp(event["timestamp"]) < NOW_MS]


def test_every_events_page_is_full_with_events_per_user():
    with running_emulator(users=3, accounts=0, seed=6, now=NOW, rate_limit=0, events_per_user=450) as emulator:
        with api_session(emulator) as api:
            lookups = emulator.lookup_ids()["users"]
            assert lookups
            for lookup in lookups:
                response = get(api, emulator, "users", lookup, "events", limit=200)
                sizes = []
                while True:
                    body = response.json()
                    sizes.append(len(body["data"]))
                    if not body["cursor"]["has_more"]:
                        break
                    response = api.get(emulator.url + body["cursor"]["url"], timeout=10)
                assert sizes == [200, 200, 50]


def test_heavy_user_events_gives_user_0_exactly_n_and_keeps_its_window_cached(monkeypatch):
    monkeypatch.setattr(dataset_module, "EVENT_CACHE_MAX_EVENTS", 100)  # every other window is evicted at once
    space = build_dataset(4, 0, seed=6, now=NOW, heavy_user_events=3000, events_per_user=40)
    typical = space.visible_events(space.users[1], NOW_MS)
    heavy = space.visible_events(space.users[0], NOW_MS)
    assert len(heavy.events) == 3000
    assert [len(space.visible_events(user, NOW_MS).events) for user in space.users[1:]] == [40, 40, 40]
    assert space.visible_events(space.users[0], NOW_MS) is heavy  # not regenerated per page
    assert space.visible_events(space.users[1], NOW_MS) is not typical  # the shared cache let it go


def test_paging_through_a_heavy_user_serves_every_event_once():
    with running_emulator(users=2, accounts=0, seed=6, now=NOW, rate_limit=0, heavy_user_events=30_000) as emulator:
        with api_session(emulator) as api:
            lookup = emulator.lookup_ids()["users"][0]
            served, cursors = page_through(api, emulator, "users", lookup, "events", "data", limit=200)
            truth = emulator.ground_truth()["users"][0]["events"]
    assert len(cursors) == 150 and served == truth
    assert len({message_id(event) for event in served}) == 30_000
