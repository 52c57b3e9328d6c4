"""A user's metadata moves with the messages that reach the profile; computed traits move without
one (the computed_traits_epoch knob). Tests run in file order: later ones move the clock."""

from __future__ import annotations

import pytest

from segment_profile_emulator.dataset import build_dataset
from segment_profile_emulator.formats import HOUR_MS, format_timestamp, parse_timestamp
from segment_profile_emulator.ground_truth import ground_truth
from segment_profile_emulator.testing import running_emulator
from unit_tests.emulator.paging import fields, get, message_id, page_through

NOW = "2026-11-20T10:00:00Z"
SPACE = dict(users=20, accounts=2, seed=6)
LATENESS_MS = 6 * HOUR_MS
LATE_USERS = [1, 6, 11, 16]  # index % 5 == 1 have the events of the first lateness
USERS_WITHOUT_EVENTS = [8, 18]  # index % 10 == 8


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(**SPACE, now=NOW, rate_limit=0, late_events="6") as running:
        yield running


@pytest.fixture(scope="module")
def built():
    """The same space without late events: its events are the ones that arrive at their timestamp,
    its metadata the profiles' own."""
    return build_dataset(SPACE["users"], SPACE["accounts"], seed=SPACE["seed"], now=NOW)


def served_events(api, emulator, lookup_id):
    events, _ = page_through(api, emulator, "users", lookup_id, "events", "data", limit=200)
    return events


def newest_arrival(api, emulator, built, index, lookup_id):
    """(arrival ms, message id) of the user's served event that reached the API last."""
    on_time = {message_id(event) for event in ground_truth(built, parse_timestamp(emulator.clock()))["users"][index]["events"]}

    def arrival(event):
        stamp = parse_timestamp(event["timestamp"])
        return stamp if message_id(event) in on_time else stamp + LATENESS_MS

    newest = max(served_events(api, emulator, lookup_id), key=arrival)
    return arrival(newest), message_id(newest)


def metadata(api, emulator, lookup_id):
    response = get(api, emulator, "users", lookup_id, "metadata")
    assert response.status_code == 200, response.text
    return response.json()


def computed_traits(api, emulator, collection, lookup_id):
    response = get(api, emulator, collection, lookup_id, "traits", verbose="true", limit=200, **{"class": "computed_trait"})
    assert response.status_code == 200, response.text
    return response.json()["traits"]


def test_metadata_follows_the_newest_arrived_event_by_its_arrival_not_its_timestamp(emulator, api, truth, built):
    late_winners = 0
    for index, user in enumerate(truth["users"]):
        if index in USERS_WITHOUT_EVENTS:
            continue
        arrival_ms, newest_id = newest_arrival(api, emulator, built, index, user["lookup_id"])
        body = fields(metadata(api, emulator, user["lookup_id"]))
        base = fields(built.users[index].metadata)
        assert body["last_message_id"] == newest_id
        assert body["updated_at"] == format_timestamp(max(arrival_ms, parse_timestamp(base["updated_at"])))
        assert {**body, "updated_at": base["updated_at"], "last_message_id": None} == {**base, "last_message_id": None}
        late_winners += index in LATE_USERS and arrival_ms > parse_timestamp(NOW) - LATENESS_MS
    assert late_winners  # a late event, stamped hours before it arrived, is some user's newest


def test_a_profile_without_events_keeps_its_own_metadata(emulator, api, truth, built):
    for index in USERS_WITHOUT_EVENTS:
        lookup_id = truth["users"][index]["lookup_id"]
        assert get(api, emulator, "users", lookup_id, "events").json()["data"] is None
        assert metadata(api, emulator, lookup_id) == built.users[index].metadata


def test_metadata_moves_when_the_clock_lets_a_new_event_arrive(emulator, api, truth, built):
    lookup_ids = [truth["users"][index]["lookup_id"] for index in LATE_USERS]
    before = [fields(metadata(api, emulator, lookup_id)) for lookup_id in lookup_ids]
    later = emulator.advance_clock(HOUR_MS / 1000)  # one late event per hour arrives meanwhile
    for index, lookup_id, old in zip(LATE_USERS, lookup_ids, before):
        arrival_ms, newest_id = newest_arrival(api, emulator, built, index, lookup_id)
        body = fields(metadata(api, emulator, lookup_id))
        assert parse_timestamp(old["updated_at"]) < arrival_ms < parse_timestamp(later)
        assert (body["updated_at"], body["last_message_id"]) == (format_timestamp(arrival_ms), newest_id)
        assert body["last_message_id"] != old["last_message_id"]


def served_computed_traits(api, emulator, truth):
    return {
        (collection, profile["lookup_id"]): computed_traits(api, emulator, collection, profile["lookup_id"])
        for collection in ("users", "accounts")
        for profile in truth[collection]
    }


def test_the_epoch_knob_moves_computed_traits_but_not_metadata(emulator, api, truth):
    before = served_computed_traits(api, emulator, truth)
    metadata_before = [metadata(api, emulator, user["lookup_id"]) for user in truth["users"]]
    other_traits_before = get(api, emulator, "users", truth["users"][0]["lookup_id"], "traits", limit=200).json()

    changed_at = emulator.advance_clock(60)
    emulator.set_faults(computed_traits_epoch=1)
    emulator.advance_clock(60)  # what moves, moved at the change, not at the clock of the request
    after = served_computed_traits(api, emulator, truth)

    assert after.keys() == before.keys() and sum(map(len, after.values())) > 10
    for key, traits in after.items():
        assert traits.keys() == before[key].keys()
        for name, trait in traits.items():
            assert trait["updated_at"] == changed_at != before[key][name]["updated_at"]
            assert trait["source_id"] == before[key][name]["source_id"]
    changed = [(key, name) for key, traits in after.items() for name in traits if traits[name]["value"] != before[key][name]["value"]]
    assert len(changed) > 0.5 * sum(map(len, after.values()))
    assert [metadata(api, emulator, user["lookup_id"]) for user in truth["users"]] == metadata_before
    other_traits_after = get(api, emulator, "users", truth["users"][0]["lookup_id"], "traits", limit=200).json()
    assert {name: value for name, value in other_traits_after["traits"].items() if not name.startswith("ct_")} == {
        name: value for name, value in other_traits_before["traits"].items() if not name.startswith("ct_")
    }

    emulator.set_faults(computed_traits_epoch=1)  # the same epoch again: nothing moves
    assert served_computed_traits(api, emulator, truth) == after

    back_at = emulator.advance_clock(60)
    emulator.set_faults(computed_traits_epoch=0)  # back to the values as built, updated now
    for key, traits in served_computed_traits(api, emulator, truth).items():
        assert {name: trait["value"] for name, trait in traits.items()} == {
            name: trait["value"] for name, trait in before[key].items()
        }
        assert all(trait["updated_at"] == back_at for trait in traits.values())
    emulator.set_faults(computed_traits_epoch=2)


def test_the_epoch_must_be_a_whole_number(emulator):
    before = emulator.set_faults()["computed_traits_epoch"]  # whatever an earlier test left: the order is random
    with pytest.raises(Exception, match="400"):
        emulator.set_faults(computed_traits_epoch=-1)
    assert emulator.set_faults()["computed_traits_epoch"] == before


def test_the_ground_truth_is_what_the_routes_serve_at_its_clock(emulator, api):
    truth = emulator.ground_truth()  # after the clock moved and the epoch changed
    assert truth["now"] == emulator.clock()
    for collection in ("users", "accounts"):
        for profile in truth[collection]:
            traits, _ = page_through(api, emulator, collection, profile["lookup_id"], "traits", "traits", verbose="true", limit=200)
            assert dict(traits) == {
                name: {"value": value, **{k: v for k, v in profile["trait_details"][name].items() if k != "class"}}
                for name, value in profile["traits"].items()
            }
    for user in truth["users"]:
        assert metadata(api, emulator, user["lookup_id"]) == user["metadata"]
    wrapped = [user["metadata"]["metadata"] for user in truth["users"] if "metadata" in user["metadata"]]
    assert wrapped and any("last_message_id" in body for body in wrapped)


def test_the_cli_flag_sets_the_epoch_from_startup():
    with running_emulator(users=6, accounts=1, seed=6, now=NOW, rate_limit=0, computed_traits_epoch=3) as started:
        truth = started.ground_truth()
        details = [detail for user in truth["users"] for detail in user["trait_details"].values()]
        assert {detail["updated_at"] for detail in details if detail["class"] == "computed_trait"} == {started.clock()}
        assert started.set_faults()["computed_traits_epoch"] == 3
