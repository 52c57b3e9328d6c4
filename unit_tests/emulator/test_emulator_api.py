"""The emulator's Profile API, driven over HTTP as a connector would drive it."""

from __future__ import annotations

import base64
import json
from datetime import datetime

import pytest
import requests

from segment_profile_emulator.testing import running_emulator
from unit_tests.emulator.paging import get, page_through

NOW = "2026-11-20T10:00:00Z"
UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "The specified token is invalid."}}
NOT_FOUND = {"error": {"code": "not_found", "message": "Profile was not found."}}
LAST_PAGE = {"url": "", "has_more": False, "next": ""}


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(users=100, accounts=4, seed=7, now=NOW, rate_limit=0) as running:
        yield running


def first_user(truth, condition):
    return next(user for user in truth["users"] if condition(user))


# --- auth, routes, identity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [None, ("wrong-token", ""), ("", "emulator-token")],
    ids=["missing", "wrong token", "token as password"],
)
def test_requests_without_the_token_as_username_are_401(emulator, truth, auth):
    response = requests.get(
        emulator.profile_url("users", truth["users"][0]["lookup_id"], "traits"), auth=auth, timeout=10
    )
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert response.headers["Content-Type"] == "application/json"


def test_unknown_space_is_403_forbidden(emulator, api, truth):
    url = emulator.profile_url("users", truth["users"][0]["lookup_id"], "traits").replace(
        f"/spaces/{emulator.space_id}/", "/spaces/spa_other/"
    )
    response = api.get(url, timeout=10)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/spaces/spa_demo/collections/accounts/profiles/group_id:acct-0000/events",
        "/v1/spaces/spa_demo/collections/users/profiles/user_id:user-00000/traits/extra",
        "/v1/spaces/spa_demo/collections/groups/profiles/user_id:user-00000/traits",
        "/v2/whatever",
    ],
)
def test_unknown_routes_are_404_json(emulator, api, path):
    response = api.get(emulator.url + path, timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_every_id_of_a_profile_finds_the_same_profile(emulator, api, truth):
    user = first_user(truth, lambda user: any(profile_id.startswith("phone:") for profile_id in user["ids"]))
    heavy = first_user(truth, lambda user: len(user["ids"]) > 250)
    for profile in (user, heavy):
        for profile_id in profile["ids"]:
            response = get(api, emulator, "users", profile_id, "metadata")
            assert response.status_code == 200, profile_id
            assert response.json() == profile["metadata"]
    account = first_user({"users": truth["accounts"]}, lambda account: len(account["ids"]) > 1)
    for profile_id in account["ids"]:
        response = get(api, emulator, "accounts", profile_id, "traits", limit=200)
        assert response.json()["traits"] == account["traits"]


@pytest.mark.parametrize("external_id", ["user-00000", "user_id:nobody", "email:user-00000", "group_id:acct-0000"])
def test_bare_values_and_unknown_ids_are_404(emulator, api, external_id):
    response = get(api, emulator, "users", external_id, "traits")
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


def test_plus_must_be_percent_encoded(emulator, api, truth):
    email = next(
        profile_id for user in truth["users"] for profile_id in user["ids"] if profile_id.startswith("email:") and "+" in profile_id
    )
    local, domain = email.removeprefix("email:").split("@")
    encoded = f"email:{local.replace('+', '%2B')}%40{domain}"
    base = f"{emulator.url}/v1/spaces/{emulator.space_id}/collections/users/profiles"
    assert api.get(f"{base}/{encoded}/traits", timeout=10).status_code == 200
    raw = api.get(f"{base}/{email}/traits", timeout=10)
    assert raw.status_code == 404
    assert raw.json() == NOT_FOUND


def test_lookup_ids_with_reserved_and_non_ascii_characters_are_found_when_encoded(emulator, api, truth):
    special = [user["lookup_id"] for user in truth["users"] if not user["lookup_id"].isascii() or any(c in user["lookup_id"] for c in "/?#% +")]
    assert len(special) >= 8
    for lookup_id in special:
        assert get(api, emulator, "users", lookup_id, "traits").status_code == 200, lookup_id


# --- pagination ---------------------------------------------------------------------------------


def test_traits_come_in_lexicographic_order_across_pages(emulator, api, truth):
    user = first_user(truth, lambda user: 25 <= len(user["traits"]) <= 40)
    items, cursors = page_through(api, emulator, "users", user["lookup_id"], "traits", "traits", limit=10)
    assert len(cursors) >= 3
    assert [name for name, _ in items] == sorted(user["traits"])
    assert dict(items) == user["traits"]
    names = [name for name, _ in items]
    for page, cursor in enumerate(cursors[:-1]):
        assert cursor["has_more"] and cursor["limit"] == 10
        assert cursor["next"] == names[(page + 1) * 10]  # the traits cursor is the next trait name
    assert cursors[-1] == {**LAST_PAGE, "limit": 10}


def test_traits_default_to_10_per_page(emulator, api, truth):
    user = first_user(truth, lambda user: len(user["traits"]) > 10)
    body = get(api, emulator, "users", user["lookup_id"], "traits").json()
    assert len(body["traits"]) == 10
    assert body["cursor"]["limit"] == 10


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "", "1.5"])
@pytest.mark.parametrize("resource", ["traits", "events", "external_ids", "links"])
def test_limit_outside_1_to_200_is_a_400(emulator, api, truth, resource, limit):
    response = get(api, emulator, "users", truth["users"][0]["lookup_id"], resource, limit=limit)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "validation_error", "message": "limit must be between 1 and 200"}}


@pytest.mark.parametrize("limit", ["1", "200"])
def test_limit_bounds_are_accepted(emulator, api, truth, limit):
    assert get(api, emulator, "users", truth["users"][0]["lookup_id"], "traits", limit=limit).status_code == 200


@pytest.mark.parametrize(
    "resource, next_token",
    [
        ("traits", "no_such_trait"),
        ("events", "not-base64!"),
        ("events", base64.urlsafe_b64encode(b'{"kind":"events","offset":1}').decode()),
        ("external_ids", base64.urlsafe_b64encode(b'{"kind":"links","offset":1}').decode()),
        ("links", "bm9wZQ"),
    ],
)
def test_an_invalid_next_is_a_400(emulator, api, truth, resource, next_token):
    user = first_user(truth, lambda user: user["events"])
    response = get(api, emulator, "users", user["lookup_id"], resource, next=next_token)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request_error"


def test_cursor_urls_are_relative_for_users_and_absolute_for_accounts(emulator, api, truth):
    user = first_user(truth, lambda user: len(user["traits"]) > 3)
    user_cursor = get(api, emulator, "users", user["lookup_id"], "traits", limit=2, verbose="true").json()["cursor"]
    assert user_cursor["url"].startswith(f"/v1/spaces/{emulator.space_id}/collections/users/profiles/")
    assert "verbose=true" in user_cursor["url"]  # the other query parameters carry over
    account = truth["accounts"][0]
    account_cursor = get(api, emulator, "accounts", account["lookup_id"], "traits", limit=2).json()["cursor"]
    assert account_cursor["url"].startswith(f"{emulator.url}/v1/spaces/{emulator.space_id}/collections/accounts/")
    items, cursors = page_through(api, emulator, "accounts", account["lookup_id"], "traits", "traits", limit=2)
    assert dict(items) == account["traits"]
    assert cursors[-1] == {**LAST_PAGE, "limit": 2}


def test_external_ids_page_through_hundreds_of_ids(emulator, api, truth):
    heavy = first_user(truth, lambda user: len(user["external_ids"]) > 250)
    items, cursors = page_through(api, emulator, "users", heavy["lookup_id"], "external_ids", "data")
    assert items == heavy["external_ids"]
    assert len(cursors) == 3 and cursors[0]["limit"] == 100
    assert {"id", "type", "source_id", "collection", "created_at", "encoding"} <= set(items[0])


def test_links_come_at_most_20_per_page_and_some_user_links_have_no_cursor(emulator, api, truth):
    account = max(truth["accounts"], key=lambda account: len(account["links"]))
    assert len(account["links"]) > 20
    items, cursors = page_through(api, emulator, "accounts", account["lookup_id"], "links", "data", limit=200)
    assert items == account["links"]
    assert cursors[0]["limit"] == 20 and len(cursors) >= 2
    assert items[0]["to_collection"] == "users"

    bodies = [get(api, emulator, "users", user["lookup_id"], "links").json() for user in truth["users"][:8]]
    assert any("cursor" not in body for body in bodies)
    assert any("cursor" in body for body in bodies)
    linked = first_user(truth, lambda user: user["links"])
    link = get(api, emulator, "users", linked["lookup_id"], "links").json()["data"][0]
    assert link["to_collection"] == "accounts"
    assert link["external_ids"][0]["type"] == "group_id" and link["external_ids"][0]["collection"] == "accounts"


# --- traits -------------------------------------------------------------------------------------


def test_traits_include_verbose_and_class(emulator, api, truth):
    user = first_user(truth, lambda user: len(user["traits"]) > 30)
    wanted = sorted(user["traits"])[:3]
    included = get(api, emulator, "users", user["lookup_id"], "traits", include=",".join(wanted)).json()
    assert included["traits"] == {name: user["traits"][name] for name in wanted}

    verbose = get(api, emulator, "users", user["lookup_id"], "traits", verbose="true", limit=200).json()["traits"]
    assert {name: wrapped["value"] for name, wrapped in verbose.items()} == user["traits"]
    assert all(set(wrapped) == {"value", "source_id", "updated_at"} for wrapped in verbose.values())

    audiences = get(api, emulator, "users", user["lookup_id"], "traits", limit=200, **{"class": "audience"}).json()
    assert audiences["traits"] and all(name.startswith("audience_") for name in audiences["traits"])
    computed = get(api, emulator, "users", user["lookup_id"], "traits", limit=200, **{"class": "computed_trait"}).json()
    assert all(name.startswith("ct_") for name in computed["traits"])
    assert get(api, emulator, "users", user["lookup_id"], "traits", **{"class": "nope"}).status_code == 400


# --- events -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sort, newest_first", [(None, True), ("desc", True), ("asc", False)])
def test_events_are_newest_first_by_default_and_with_sort_desc_and_oldest_first_with_sort_asc(
    emulator, api, truth, sort, newest_first
):
    user = first_user(truth, lambda user: 20 <= len(user["events"]) <= 200)
    served, _ = page_through(api, emulator, "users", user["lookup_id"], "events", "data", limit=7, sort=sort)
    assert served == (user["events"] if newest_first else user["events"][::-1])
    timestamps = [event["timestamp"] for event in served]
    assert timestamps == sorted(timestamps, reverse=newest_first) and timestamps[0] != timestamps[-1]


def test_an_unknown_sort_is_a_400(emulator, api, truth):
    response = get(api, emulator, "users", truth["users"][0]["lookup_id"], "events", sort="newest")
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "validation_error", "message": "sort must be asc or desc"}}


def test_events_start_is_inclusive_and_end_exclusive(emulator, api, truth):
    user = first_user(truth, lambda user: len(user["events"]) > 1000)
    events = user["events"]
    end, start = events[100]["timestamp"], events[400]["timestamp"]  # newest first
    served, _ = page_through(api, emulator, "users", user["lookup_id"], "events", "data", limit=200, start=start, end=end)
    assert served == events[101:401]
    offset_form = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone().isoformat(timespec="milliseconds")
    again, _ = page_through(api, emulator, "users", user["lookup_id"], "events", "data", limit=200, start=offset_form, end=end)
    assert again == served
    assert get(api, emulator, "users", user["lookup_id"], "events", start="yesterday").status_code == 400


def test_events_include_and_exclude_event_names(emulator, api, truth):
    user = first_user(truth, lambda user: len(user["events"]) > 1000)
    only, _ = page_through(api, emulator, "users", user["lookup_id"], "events", "data", limit=200, include="Signed In,Home")
    assert only == [event for event in user["events"] if event.get("event") == "Signed In" or event.get("name") == "Home"]
    without, _ = page_through(api, emulator, "users", user["lookup_id"], "events", "data", limit=200, exclude="Signed In")
    assert without == [event for event in user["events"] if event.get("event") != "Signed In"]


def test_a_profile_without_events_answers_data_null(emulator, api, truth):
    user = first_user(truth, lambda user: not user["events"])
    assert get(api, emulator, "users", user["lookup_id"], "events").json() == {"data": None, "cursor": LAST_PAGE}
    busy = first_user(truth, lambda user: user["events"])
    future = get(api, emulator, "users", busy["lookup_id"], "events", start="2030-01-01T00:00:00Z").json()
    assert future == {"data": None, "cursor": LAST_PAGE}


def test_events_carry_both_id_spellings_and_extra_fields(truth):
    events = [event for user in truth["users"] for event in user["events"]]
    snake = [event for event in events if "message_id" in event]
    assert 0.05 < len(snake) / len(events) < 0.15
    assert all(("messageId" in event) != ("message_id" in event) for event in events)
    assert any("external_ids" in event and "related" in event for event in events)
    assert {event["type"] for event in events} == {"track", "identify", "page", "screen", "group"}


# --- metadata, headers, ground truth ------------------------------------------------------------


def test_metadata_is_flat_for_most_profiles_and_wrapped_for_some(emulator, api, truth):
    bodies = [get(api, emulator, "users", user["lookup_id"], "metadata").json() for user in truth["users"][:9]]
    flat = [body for body in bodies if "segment_id" in body]
    wrapped = [body["metadata"] for body in bodies if "metadata" in body]
    assert len(flat) == 6 and len(wrapped) == 3
    # last_message_id once a message has reached the profile (test_emulator_metadata.py)
    assert all(set(body) - {"last_message_id"} == {"segment_id", "created_at", "updated_at"} for body in flat)
    assert all(
        set(body) - {"last_message_id"} == {"segment_id", "created_at", "updated_at", "expires_at", "first_message_id"}
        for body in wrapped
    )


def test_every_response_has_a_unique_request_id_and_json_content_type(emulator, api, truth):
    lookup_id = truth["users"][0]["lookup_id"]
    responses = [
        get(api, emulator, "users", lookup_id, "traits"),
        get(api, emulator, "users", lookup_id, "traits", limit=0),
        get(api, emulator, "users", "user_id:nobody", "traits"),
        requests.get(emulator.profile_url("users", lookup_id, "traits"), timeout=10),
        api.get(emulator.url + "/v1/nowhere", timeout=10),
        api.get(emulator.url + "/_emulator/stats", timeout=10),
    ]
    assert [response.status_code for response in responses] == [200, 400, 404, 401, 404, 200]
    request_ids = [response.headers["Request-Id"] for response in responses]
    assert len(set(request_ids)) == len(request_ids) and all(len(request_id) == 32 for request_id in request_ids)
    assert all(response.headers["Content-Type"] == "application/json" for response in responses)


def test_ground_truth_is_what_the_endpoints_serve(emulator, api, truth):
    assert (truth["space_id"], truth["now"], truth["seed"]) == (emulator.space_id, "2026-11-20T10:00:00.000Z", 7)
    assert truth["users"] and truth["accounts"]
    for user in truth["users"]:
        lookup_id = user["lookup_id"]
        traits, _ = page_through(api, emulator, "users", lookup_id, "traits", "traits", limit=200)
        events, _ = page_through(api, emulator, "users", lookup_id, "events", "data", limit=200)
        external_ids, _ = page_through(api, emulator, "users", lookup_id, "external_ids", "data", limit=200)
        links, _ = page_through(api, emulator, "users", lookup_id, "links", "data")
        metadata = get(api, emulator, "users", lookup_id, "metadata").json()
        assert (dict(traits), events, external_ids, links, metadata) == (
            user["traits"], user["events"], user["external_ids"], user["links"], user["metadata"]
        ), lookup_id
        assert lookup_id in user["ids"]
    for account in truth["accounts"]:
        traits, _ = page_through(api, emulator, "accounts", account["lookup_id"], "traits", "traits", limit=200)
        external_ids, _ = page_through(api, emulator, "accounts", account["lookup_id"], "external_ids", "data")
        links, _ = page_through(api, emulator, "accounts", account["lookup_id"], "links", "data")
        assert (dict(traits), external_ids, links) == (account["traits"], account["external_ids"], account["links"])


def test_big_integers_and_unicode_survive_the_wire(emulator, api, truth):
    user = first_user(truth, lambda user: "big_counter" in user["traits"])
    body = get(api, emulator, "users", user["lookup_id"], "traits", include="big_counter").content
    assert json.loads(body)["traits"]["big_counter"] > 2**63
    assert str(user["traits"]["big_counter"]).encode() in body
