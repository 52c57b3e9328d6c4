"""The synthetic space: deterministic from its seed, events a pure function of the clock."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from segment_profile_emulator import dataset as dataset_module
from segment_profile_emulator.dataset import build_dataset
from segment_profile_emulator.formats import RETENTION_MS, parse_timestamp
from segment_profile_emulator.ground_truth import ground_truth

NOW = "2026-11-20T10:00:00Z"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def truth():
    return ground_truth(build_dataset(users=200, accounts=8, seed=3, now=NOW))


def test_the_same_seed_gives_the_same_space_and_another_seed_another():
    first = ground_truth(build_dataset(users=60, accounts=4, seed=11, now=NOW))
    again = ground_truth(build_dataset(users=60, accounts=4, seed=11, now=NOW))
    other = ground_truth(build_dataset(users=60, accounts=4, seed=12, now=NOW))
    assert json.dumps(first) == json.dumps(again)
    assert first["users"][0]["segment_id"] != other["users"][0]["segment_id"]


def test_advancing_the_clock_adds_new_events_and_keeps_the_old_ones():
    dataset = build_dataset(users=60, accounts=0, seed=5, now=NOW)
    later_ms = dataset.now_ms + 3 * 24 * 3_600_000
    before = ground_truth(dataset)["users"]
    after = ground_truth(dataset, later_ms)["users"]
    for user_before, user_after in zip(before, after):
        still_kept = [
            event for event in user_before["events"] if parse_timestamp(event["timestamp"]) >= later_ms - RETENTION_MS
        ]
        newer = [event for event in user_after["events"] if parse_timestamp(event["timestamp"]) >= dataset.now_ms]
        assert user_after["events"] == newer + still_kept  # same events, same ids, newest first
    new_ids = {_message_id(event) for user in after for event in user["events"]} - {
        _message_id(event) for user in before for event in user["events"]
    }
    assert len(new_ids) > 100


def _message_id(event):
    return event.get("messageId") or event["message_id"]


def test_events_lie_in_the_14_day_window_newest_first(truth):
    now_ms = parse_timestamp(NOW)
    for user in truth["users"]:
        stamps = [event["timestamp"] for event in user["events"]]
        assert all(TIMESTAMP.match(stamp) for stamp in stamps)
        assert stamps == sorted(stamps, reverse=True)
        assert all(now_ms - RETENTION_MS <= parse_timestamp(stamp) < now_ms for stamp in stamps)
    counts = sorted(len(user["events"]) for user in truth["users"])
    assert counts[0] == 0  # some profiles have no events at all
    assert counts[-1] > 1000  # heavy profiles have thousands
    typical = [count for count in counts if count <= 1000]
    assert max(typical) <= 80


def test_heavy_profiles_have_hundreds_of_traits_and_ids(truth):
    heavy = [user for user in truth["users"] if len(user["traits"]) >= 300]
    assert heavy and all(len(user["external_ids"]) >= 250 for user in heavy)
    assert all(5 <= len(user["traits"]) <= 40 for user in truth["users"] if user not in heavy)


def test_traits_cover_every_json_type(truth):
    values = [value for user in truth["users"] for value in user["traits"].values()]
    kinds = {type(value).__name__ for value in values}
    assert kinds == {"str", "int", "float", "bool", "NoneType", "dict", "list"}
    assert any(isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 for value in values)
    assert any(isinstance(value, str) and not value.isascii() for value in values)
    assert all(list(user["traits"]) == sorted(user["traits"]) for user in truth["users"])


def test_lookup_ids_mix_id_types_and_need_percent_encoding(truth):
    kinds = Counter(user["lookup_id"].split(":", 1)[0] for user in truth["users"])
    assert kinds["email"] == 40 and kinds["anonymous_id"] == 20 and kinds["user_id"] == 140
    lookup_ids = [user["lookup_id"] for user in truth["users"]]
    for character in "+/?#% ":
        assert any(character in lookup_id.split(":", 1)[1] for lookup_id in lookup_ids), character
    assert any(not lookup_id.isascii() for lookup_id in lookup_ids)
    assert all(account["lookup_id"].startswith("group_id:") for account in truth["accounts"])


def test_every_id_belongs_to_one_profile(truth):
    user_ids = [profile_id for user in truth["users"] for profile_id in user["ids"]]
    assert len(user_ids) == len(set(user_ids))
    assert all(user["lookup_id"] in user["ids"] for user in truth["users"])
    assert {profile_id.split(":", 1)[0] for profile_id in user_ids} == {
        "user_id", "email", "anonymous_id", "phone", "cross_domain_id"
    }


def test_links_point_both_ways(truth):
    accounts = {account["ids"][0]: account for account in truth["accounts"]}
    for user in truth["users"]:
        user_id = user["ids"][0].removeprefix("user_id:")
        for link in user["links"]:
            account = accounts[f"group_id:{link['external_ids'][0]['id']}"]
            assert any(back["external_ids"][0]["id"] == user_id for back in account["links"])
    assert 0 < sum(1 for user in truth["users"] if user["links"]) < len(truth["users"])


def test_a_thousand_users_build_quickly():
    started = time.monotonic()
    build_dataset(users=1000, accounts=50, seed=1, now=NOW)
    assert time.monotonic() - started < 5


def test_profiles_are_rebuilt_the_same_when_the_cache_no_longer_holds_them(monkeypatch):
    reference = ground_truth(build_dataset(users=40, accounts=3, seed=2, now=NOW))
    monkeypatch.setattr(dataset_module, "PROFILE_CACHE_SIZE", 4)  # a space too big to keep its profiles
    space = build_dataset(users=40, accounts=3, seed=2, now=NOW)
    assert ground_truth(space) == reference
    for index, user in enumerate(reference["users"]):  # every id finds its user, built again
        for profile_id in (*user["ids"], f"segment_id:{user['segment_id']}", user["segment_id"]):
            assert space.find("users", profile_id).index == index, profile_id
    for account in reference["accounts"]:
        for profile_id in (*account["ids"], f"segment_id:{account['segment_id']}", account["segment_id"]):
            assert space.find("accounts", profile_id).lookup_id == account["lookup_id"]
    for unknown in ("user_id:nobody", "segment_id:use_nobody", reference["users"][0]["ids"][0].split(":", 1)[1]):
        assert space.find("users", unknown) is None
    assert [link["external_ids"][0]["id"] for link in space.account_links(space.accounts[0], 1, 3)] == [
        link["external_ids"][0]["id"] for link in reference["accounts"][0]["links"][1:3]
    ]
