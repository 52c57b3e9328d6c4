"""vanish_users / vanish_accounts / vanish_after_requests: profiles that start answering 404
mid-run, as Segment answers for a profile it does not know."""

from __future__ import annotations

import urllib.error

import pytest

from segment_profile_emulator.testing import running_emulator
from unit_tests.emulator.paging import get

NOW = "2026-11-20T10:00:00Z"
NOT_FOUND = {"error": {"code": "not_found", "message": "Profile was not found."}}
ROUTES = {"users": ("traits", "events", "external_ids", "metadata", "links"), "accounts": ("traits", "external_ids", "links")}
AFTER = 4


@pytest.fixture(scope="module")
def emulator():
    options = dict(users=12, accounts=3, seed=7, now=NOW, rate_limit=0, vanish_users=2, vanish_accounts=1)
    with running_emulator(**options, vanish_after_requests=AFTER) as running:
        yield running


def every_id(profile):
    return [*profile["ids"], f"segment_id:{profile['segment_id']}", profile["segment_id"]]


def answers(api, emulator, collection, profile):
    """(status, body) of every route of `profile` under every one of its ids."""
    return [
        (response.status_code, response.json())
        for profile_id in every_id(profile)
        for resource in ROUTES[collection]
        for response in [get(api, emulator, collection, profile_id, resource)]
    ]


def test_the_first_users_and_accounts_of_the_ground_truth_vanish_after_k_requests(emulator, api, truth):
    emulator.reset_stats()  # the count of requests starts again
    assert emulator.vanishing_profiles() == {
        "after_requests": AFTER,
        "users": [user["lookup_id"] for user in truth["users"][:2]],
        "accounts": [truth["accounts"][0]["lookup_id"]],
    }
    first = truth["users"][0]["lookup_id"]
    assert [get(api, emulator, "users", first, resource).status_code for resource in ROUTES["users"][:AFTER]] == [200] * AFTER

    gone = answers(api, emulator, "users", truth["users"][0]) + answers(api, emulator, "users", truth["users"][1])
    gone += answers(api, emulator, "accounts", truth["accounts"][0])
    assert gone == [(404, NOT_FOUND)] * len(gone)
    kept = [get(api, emulator, "users", user["lookup_id"], "traits", limit=200) for user in truth["users"][2:]]
    kept += [get(api, emulator, "accounts", account["lookup_id"], "links") for account in truth["accounts"][1:]]
    assert [response.status_code for response in kept] == [200] * len(kept)
    assert kept[0].json()["traits"] == truth["users"][2]["traits"]

    stats = emulator.stats()
    assert stats["faults"]["vanished"] == stats["by_status"]["404"] == len(gone)


def test_the_profile_listing_still_names_vanished_users(emulator, api, truth):
    emulator.reset_stats()
    listing = api.get(f"{emulator.url}/v1/spaces/{emulator.space_id}/collections/users/profiles", params={"limit": 3}, timeout=10)
    for _ in range(AFTER - 1):
        get(api, emulator, "users", "user_id:nobody", "traits")
    segment_id = listing.json()["data"][0]["segment_id"]
    assert segment_id == truth["users"][0]["segment_id"]
    assert get(api, emulator, "users", segment_id, "traits").json() == NOT_FOUND  # request AFTER + 1


def test_a_stats_reset_starts_the_count_again(emulator, api, truth):
    emulator.reset_stats()
    lookup_id = truth["users"][1]["lookup_id"]
    statuses = [get(api, emulator, "users", lookup_id, "metadata").status_code for _ in range(AFTER + 2)]
    assert statuses == [200] * AFTER + [404, 404]
    emulator.reset_stats()
    assert get(api, emulator, "users", lookup_id, "metadata").json() == truth["users"][1]["metadata"]


def test_every_profile_vanishes_when_n_exceeds_the_count_and_the_knobs_change_while_running(emulator, api, truth):
    try:
        knobs = emulator.set_faults(vanish_users=1_000_000, vanish_accounts=1_000_000, vanish_after_requests=0)
        assert (knobs["vanish_users"], knobs["vanish_after_requests"]) == (1_000_000, 0)
        assert emulator.vanishing_profiles() == {
            "after_requests": 0,
            "users": [user["lookup_id"] for user in truth["users"]],
            "accounts": [account["lookup_id"] for account in truth["accounts"]],
        }
        responses = [get(api, emulator, "users", user["lookup_id"], "traits") for user in truth["users"]]
        responses += [get(api, emulator, "accounts", account["lookup_id"], "traits") for account in truth["accounts"]]
        assert [(response.status_code, response.json()) for response in responses] == [(404, NOT_FOUND)] * 15
    finally:
        emulator.set_faults(vanish_users=2, vanish_accounts=1, vanish_after_requests=AFTER)


@pytest.mark.parametrize("knob", ["vanish_users", "vanish_accounts", "vanish_after_requests"])
@pytest.mark.parametrize("value", [-1, 1.5, True, "3"])
def test_vanish_knobs_must_be_whole_numbers(emulator, knob, value):
    with pytest.raises(urllib.error.HTTPError) as rejected:
        emulator.set_faults(**{knob: value})
    assert rejected.value.code == 400
    assert emulator.vanishing_profiles()["after_requests"] == AFTER


def test_without_the_knobs_no_profile_vanishes():
    with running_emulator(users=3, accounts=1, rate_limit=0) as emulator:
        assert emulator.vanishing_profiles() == {"after_requests": 0, "users": [], "accounts": []}
