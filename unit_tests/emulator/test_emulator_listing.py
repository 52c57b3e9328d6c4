"""Listing a space's users (GET .../collections/users/profiles) and finding profiles by segment id."""

from __future__ import annotations

import pytest
import requests

from segment_profile_emulator.testing import running_emulator
from unit_tests.emulator.paging import api_session, follow_cursors, get

NOW = "2026-11-20T10:00:00Z"
USERS = 25
NOT_FOUND = {"error": {"code": "not_found", "message": "Profile was not found."}}


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(users=USERS, accounts=3, seed=8, now=NOW, rate_limit=0) as running:
        yield running


def listing_url(emulator, collection="users"):
    return f"{emulator.url}/v1/spaces/{emulator.space_id}/collections/{collection}/profiles"


def test_listing_pages_through_every_user_once_in_user_order_with_offsets(emulator, api, truth):
    emulator.reset_stats()
    first = api.get(listing_url(emulator), params={"limit": 10}, timeout=10)
    items, cursors = follow_cursors(api, emulator, first, "data")
    assert items == [{"segment_id": user["segment_id"]} for user in truth["users"]]
    assert [cursor["next"] for cursor in cursors] == ["10", "20", ""]
    assert [cursor["has_more"] for cursor in cursors] == [True, True, False]
    assert cursors[0]["url"] == f"/v1/spaces/{emulator.space_id}/collections/users/profiles?limit=10&next=10"
    assert cursors[-1]["url"] == ""
    assert emulator.stats()["by_endpoint"]["list_users"] == 3


def test_listing_starts_at_offset_0_and_takes_10_by_default(emulator, api, truth):
    absent = api.get(listing_url(emulator), timeout=10).json()
    explicit = api.get(listing_url(emulator), params={"next": "0"}, timeout=10).json()
    assert absent == explicit
    assert absent["data"] == [{"segment_id": user["segment_id"]} for user in truth["users"][:10]]
    middle = api.get(listing_url(emulator), params={"next": "23", "limit": 5}, timeout=10).json()
    assert middle["data"] == [{"segment_id": user["segment_id"]} for user in truth["users"][23:]]
    assert middle["cursor"]["has_more"] is False and middle["cursor"]["next"] == ""


@pytest.mark.parametrize(
    "params, status, code",
    [
        ({"limit": "0"}, 400, "validation_error"),
        ({"limit": "101"}, 400, "validation_error"),
        ({"next": "abc"}, 400, "invalid_request_error"),
        ({"next": "-1"}, 400, "invalid_request_error"),
    ],
)
def test_listing_validates_limit_1_to_100_and_next(emulator, api, params, status, code):
    response = api.get(listing_url(emulator), params=params, timeout=10)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    if "limit" in params:
        assert response.json()["error"]["message"] == "limit must be between 1 and 100"


def test_listing_accounts_is_not_a_route(emulator, api):
    response = api.get(listing_url(emulator, "accounts"), timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_listing_needs_the_token(emulator):
    assert requests.get(listing_url(emulator), timeout=10).status_code == 401


def test_a_space_without_the_list_method_answers_404(emulator, api):
    emulator.set_faults(no_list_method=True)
    try:
        response = api.get(listing_url(emulator), timeout=10)
    finally:
        emulator.set_faults(no_list_method=False)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert api.get(listing_url(emulator), timeout=10).status_code == 200


@pytest.mark.parametrize("resource", ["traits", "events", "external_ids", "metadata", "links"])
def test_segment_ids_find_users_with_and_without_the_type(emulator, api, truth, resource):
    assert truth["users"]
    for user in truth["users"][:6]:
        by_lookup = get(api, emulator, "users", user["lookup_id"], resource, limit=20).json()
        for segment_id in (f"segment_id:{user['segment_id']}", user["segment_id"]):
            response = get(api, emulator, "users", segment_id, resource, limit=20)
            assert response.status_code == 200, (segment_id, resource)
            assert _without_cursor_urls(response.json()) == _without_cursor_urls(by_lookup)


@pytest.mark.parametrize("resource", ["traits", "external_ids", "links"])
def test_segment_ids_find_accounts_with_and_without_the_type(emulator, api, truth, resource):
    assert truth["accounts"]
    for account in truth["accounts"]:
        assert account["segment_id"].startswith("acc_")
        by_lookup = get(api, emulator, "accounts", account["lookup_id"], resource).json()
        for segment_id in (f"segment_id:{account['segment_id']}", account["segment_id"]):
            response = get(api, emulator, "accounts", segment_id, resource)
            assert response.status_code == 200, (segment_id, resource)
            assert _without_cursor_urls(response.json()) == _without_cursor_urls(by_lookup)


def test_a_segment_id_finds_nothing_in_the_other_collection_and_other_bare_values_stay_404(emulator, api, truth):
    user, account = truth["users"][0], truth["accounts"][0]
    assert get(api, emulator, "accounts", user["segment_id"], "traits").json() == NOT_FOUND
    assert get(api, emulator, "users", f"segment_id:{account['segment_id']}", "traits").json() == NOT_FOUND
    assert get(api, emulator, "users", "segment_id:use_nobody", "traits").json() == NOT_FOUND
    bare_user_id = user["ids"][0].split(":", 1)[1]
    assert get(api, emulator, "users", bare_user_id, "traits").json() == NOT_FOUND


def test_lookup_ids_route_lists_what_a_connector_config_names(emulator, truth):
    assert emulator.lookup_ids() == {
        "users": [user["lookup_id"] for user in truth["users"]],
        "accounts": [account["lookup_id"] for account in truth["accounts"]],
    }


def test_no_list_method_flag():
    with running_emulator(users=3, accounts=0, rate_limit=0, no_list_method=True) as emulator, api_session(emulator) as api:
        response = api.get(listing_url(emulator), timeout=10)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert emulator.stats()["by_endpoint"]["list_users"] == 1
        assert emulator.set_faults()["no_list_method"] is True


def _without_cursor_urls(body):
    """A body with its cursor url dropped: the url echoes the path, hence the id used."""
    cursor = body.get("cursor")
    return {**body, "cursor": {key: value for key, value in cursor.items() if key != "url"}} if cursor else body
