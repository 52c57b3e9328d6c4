"""fault_empty_has_more: a page without items whose cursor says has_more, its `next` serving the
page it replaced."""

from __future__ import annotations

import math

import pytest

from segment_profile_emulator.testing import running_emulator
from unit_tests.emulator.paging import api_session, follow_cursors, follow_pages, get, page_items

NOW = "2026-11-20T10:00:00Z"
PAGED_ROUTES = [
    ("users", "traits", "traits"),
    ("users", "events", "data"),
    ("users", "external_ids", "data"),
    ("users", "links", "data"),
    ("accounts", "traits", "traits"),
    ("accounts", "external_ids", "data"),
    ("accounts", "links", "data"),
]


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(users=12, accounts=3, seed=7, now=NOW, rate_limit=0, fault_empty_has_more=1) as running:
        yield running


def expected_items(profile, resource):
    return list(profile[resource].items()) if resource == "traits" else profile[resource]


def is_empty_has_more(body, items_key):
    return body[items_key] in ({}, []) and body["cursor"]["has_more"] and body["cursor"]["next"]


@pytest.mark.parametrize("collection, resource, items_key", PAGED_ROUTES)
def test_at_1_every_page_comes_after_an_empty_one_and_following_loses_nothing(
    emulator, api, truth, collection, resource, items_key
):
    profile = next(profile for profile in truth[collection] if len(profile[resource]) >= 3)
    expected = expected_items(profile, resource)
    emulator.reset_stats()
    bodies = list(follow_pages(api, emulator, get(api, emulator, collection, profile["lookup_id"], resource, limit=2)))
    emptied, served = bodies[0::2], bodies[1::2]
    assert len(emptied) == len(served) == math.ceil(len(expected) / 2)
    assert all(is_empty_has_more(body, items_key) and body["cursor"]["limit"] == 2 for body in emptied)
    assert [item for body in served for item in page_items(body, items_key)] == expected  # each exactly once
    assert all(page_items(body, items_key) for body in served)
    assert served[-1]["cursor"]["has_more"] is False
    assert emulator.stats()["faults"]["empty_has_more"] == len(emptied)


def test_a_client_that_stops_at_the_empty_page_gets_nothing_and_one_that_sends_next_gets_the_page(emulator, api, truth):
    user = truth["users"][0]
    empty = get(api, emulator, "users", user["lookup_id"], "traits", limit=5, verbose="true").json()
    token = empty["cursor"]["next"]
    assert empty == {
        "traits": {},
        "cursor": {"url": empty["cursor"]["url"], "has_more": True, "next": token, "limit": 5},
    }
    assert empty["cursor"]["url"].endswith(f"?limit=5&verbose=true&next={token}")
    page = get(api, emulator, "users", user["lookup_id"], "traits", limit=5, verbose="true", next=token).json()
    assert list(page["traits"]) == list(user["traits"])[:5]
    assert all(set(value) == {"value", "source_id", "updated_at"} for value in page["traits"].values())
    assert page["cursor"]["next"] == list(user["traits"])[5]  # the real cursor after the real page


def test_metadata_the_profile_listing_and_links_without_a_cursor_are_never_emptied(emulator, api, truth):
    user = truth["users"][0]
    assert get(api, emulator, "users", user["lookup_id"], "metadata").json() == user["metadata"]
    listing = api.get(f"{emulator.url}/v1/spaces/{emulator.space_id}/collections/users/profiles", timeout=10).json()
    assert listing["data"][0] == {"segment_id": user["segment_id"]}
    links = [get(api, emulator, "users", user["lookup_id"], "links").json() for user in truth["users"]]
    cursorless = [body for body in links if "cursor" not in body]
    assert any(body["data"] for body in cursorless)
    assert all(body in [{"data": user["links"]} for user in truth["users"]] for body in cursorless)


def test_the_skipped_first_page_of_events_keeps_the_clock_it_was_served_at():
    with running_emulator(users=12, accounts=0, now=NOW, rate_limit=0, fault_empty_has_more=1) as emulator:
        users = emulator.ground_truth()["users"]
        busiest = max(range(len(users)), key=lambda index: len(users[index]["events"]))
        events = users[busiest]["events"]
        with api_session(emulator) as api:
            empty = get(api, emulator, "users", users[busiest]["lookup_id"], "events", limit=200)
            assert is_empty_has_more(empty.json(), "data")
            emulator.advance_clock(6 * 3600)
            served, _ = follow_cursors(api, emulator, empty, "data")
            token = empty.json()["cursor"]["next"]
            again = get(api, emulator, "users", users[busiest]["lookup_id"], "events", limit=200, next=token).json()
        assert served == events
        assert again["data"] == events[:200]  # the same token, the same page
        assert emulator.ground_truth()["users"][busiest]["events"][:200] != events[:200]  # the clock did move


def test_with_once_each_profile_route_is_emptied_once_until_a_stats_reset():
    options = dict(users=5, accounts=1, now=NOW, rate_limit=0, fault_empty_has_more=1, empty_has_more_once=True)
    with running_emulator(**options) as emulator, api_session(emulator) as api:
        users = emulator.ground_truth()["users"]

        def emptied(profile_id, resource, items_key="data"):
            return bool(is_empty_has_more(get(api, emulator, "users", profile_id, resource).json(), items_key))

        first, second = users[0], users[1]
        assert [
            emptied(first["lookup_id"], "traits", "traits"),
            emptied(first["lookup_id"], "traits", "traits"),
            emptied(first["ids"][1], "traits", "traits"),  # another id of the same profile
            emptied(first["lookup_id"], "external_ids"),
            emptied(second["lookup_id"], "traits", "traits"),
        ] == [True, False, False, True, True]
        assert emulator.stats()["faults"]["empty_has_more"] == 3
        emulator.reset_stats()
        assert emptied(first["lookup_id"], "traits", "traits")


def test_at_random_a_client_that_follows_every_cursor_still_gets_every_item_once():
    with running_emulator(users=5, accounts=3, seed=7, now=NOW, rate_limit=0, fault_empty_has_more=0.3) as emulator:
        truth = emulator.ground_truth()
        with api_session(emulator) as api:
            for collection, resource, items_key in PAGED_ROUTES:
                for profile in truth[collection]:
                    first = get(api, emulator, collection, profile["lookup_id"], resource, limit=3)
                    items, _ = follow_cursors(api, emulator, first, items_key)
                    assert items == expected_items(profile, resource), (profile["lookup_id"], resource)
        stats = emulator.stats()
        assert 0.15 < stats["faults"]["empty_has_more"] / stats["successful_requests"] < 0.3
