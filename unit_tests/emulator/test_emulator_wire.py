"""What the emulator puts on the wire besides the data: gzip, the Date header, a lone surrogate
escape in a trait, and the page-size limits of the list methods."""

from __future__ import annotations

import gzip
import http.client
import json
import urllib.parse

import pytest
import requests

from segment_profile_emulator.dataset import build_dataset
from segment_profile_emulator.ground_truth import ground_truth
from segment_profile_emulator.testing import running_emulator
from unit_tests.emulator.paging import api_session, get, page_through

NOW = "2026-11-20T10:00:00Z"
NOW_AS_HTTP_DATE = "Fri, 20 Nov 2026 10:00:00 GMT"
SURROGATE_USERS = [3, 10, 17]  # every 7th user from 3, in a space of 20


@pytest.fixture(scope="module")
def emulator():
    options = dict(users=20, accounts=2, seed=4, now=NOW, rate_limit=0, gzip=True, lone_surrogate_trait=True)
    with running_emulator(**options) as running:
        yield running


def raw_get(emulator, path, **headers):
    """(status, headers, undecoded body bytes) of one GET, as http.client receives them."""
    address = urllib.parse.urlsplit(emulator.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        credentials = requests.auth._basic_auth_str(emulator.token, "")
        connection.request("GET", path, headers={"Authorization": credentials, **headers})
        response = connection.getresponse()
        return response.status, response.msg, response.read()
    finally:
        connection.close()


def traits_path(emulator, user, **params):
    url = emulator.profile_url("users", user["lookup_id"], "traits")
    return urllib.parse.urlsplit(url).path + "?" + urllib.parse.urlencode({"limit": 200, **params})


# --- gzip ---------------------------------------------------------------------------------------


def test_answers_are_gzipped_when_the_client_accepts_gzip(emulator, truth):
    user = truth["users"][0]
    status, headers, compressed = raw_get(emulator, traits_path(emulator, user), **{"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert int(headers["Content-Length"]) == len(compressed)
    _, plain_headers, plain = raw_get(emulator, traits_path(emulator, user))
    assert "Content-Encoding" not in plain_headers and int(plain_headers["Content-Length"]) == len(plain)
    assert gzip.decompress(compressed) == plain
    assert json.loads(plain)["traits"] == user["traits"]
    assert len(compressed) < len(plain)


@pytest.mark.parametrize("accept_encoding", ["gzip;q=0", "identity", "br"])
def test_no_gzip_unless_accepted(emulator, truth, accept_encoding):
    _, headers, body = raw_get(emulator, traits_path(emulator, truth["users"][0]), **{"Accept-Encoding": accept_encoding})
    assert "Content-Encoding" not in headers
    assert json.loads(body)["traits"] == truth["users"][0]["traits"]


def test_error_answers_are_gzipped_too_and_admin_answers_are_not(emulator):
    path = f"/v1/spaces/{emulator.space_id}/collections/users/profiles/user_id:nobody/traits"
    status, headers, body = raw_get(emulator, path, **{"Accept-Encoding": "gzip"})
    assert status == 404 and headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(body))["error"]["code"] == "not_found"
    status, headers, body = raw_get(emulator, "/_emulator/stats", **{"Accept-Encoding": "gzip"})
    assert status == 200 and "Content-Encoding" not in headers and "requests_total" in json.loads(body)


def test_requests_decodes_the_gzipped_answer_to_the_same_json(emulator, api, truth):
    user = max(truth["users"], key=lambda user: len(user["events"]))
    response = get(api, emulator, "users", user["lookup_id"], "events", limit=200)
    assert response.headers["Content-Encoding"] == "gzip"  # requests asks for gzip by default
    assert response.json()["data"] == user["events"][:200]


# --- the Date header ----------------------------------------------------------------------------


def test_every_answer_carries_one_date_header_from_the_emulated_clock(emulator, truth):
    paths = [
        traits_path(emulator, truth["users"][0]),  # 200
        f"/v1/spaces/{emulator.space_id}/collections/users/profiles/user_id:nobody/traits",  # 404
        "/v2/nowhere",  # 404 route
        "/_emulator/stats",  # admin
    ]
    for path in paths:
        _, headers, _ = raw_get(emulator, path)
        assert headers.get_all("Date") == [NOW_AS_HTTP_DATE], path


def test_the_date_header_moves_with_the_emulated_clock_only():
    with running_emulator(users=2, accounts=0, now=NOW, rate_limit=0) as emulator, api_session(emulator) as api:
        first = get(api, emulator, "users", "user_id:user-00000", "metadata")
        again = get(api, emulator, "users", "user_id:user-00000", "metadata")
        assert first.headers["Date"] == again.headers["Date"] == NOW_AS_HTTP_DATE  # the wall clock moved on
        emulator.advance_clock(24 * 3600)
        later = get(api, emulator, "users", "user_id:user-00000", "metadata")
        unauthorized = requests.get(emulator.profile_url("users", "user_id:user-00000", "metadata"), timeout=10)
        assert later.headers["Date"] == unauthorized.headers["Date"] == "Sat, 21 Nov 2026 10:00:00 GMT"


# --- a lone surrogate in a trait ----------------------------------------------------------------


def test_a_lone_surrogate_escape_is_in_the_raw_traits_body(emulator, truth):
    for index in SURROGATE_USERS:
        _, _, body = raw_get(emulator, traits_path(emulator, truth["users"][index]))
        assert b'"nickname":"\\ud83d rocket"' in body  # the six characters \ud83d, as JavaScript writes them
        body.decode("utf-8")  # otherwise valid UTF-8
        assert json.loads(body)["traits"]["nickname"] == "\ud83d rocket"  # Python's json keeps the lone surrogate
        _, _, verbose = raw_get(emulator, traits_path(emulator, truth["users"][index], verbose="true"))
        assert json.loads(verbose)["traits"]["nickname"]["value"] == "\ud83d rocket"


def test_a_strict_parser_rejects_the_body(emulator, truth):
    orjson = pytest.importorskip("orjson")  # the connector's parser
    _, _, body = raw_get(emulator, traits_path(emulator, truth["users"][SURROGATE_USERS[0]]))
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    _, _, other = raw_get(emulator, traits_path(emulator, truth["users"][0]))
    assert orjson.loads(other)["traits"].keys() == truth["users"][0]["traits"].keys()  # a body without one parses


def test_only_every_7th_user_has_the_trait_and_the_ground_truth_has_u_fffd_in_its_place(truth):
    holders = [index for index, user in enumerate(truth["users"]) if "nickname" in user["traits"]]
    assert holders == SURROGATE_USERS
    assert all(truth["users"][index]["traits"]["nickname"] == "\ufffd rocket" for index in holders)


def test_the_trait_is_in_lexicographic_order_across_pages(emulator, api, truth):
    for index in SURROGATE_USERS:
        user = truth["users"][index]
        items, cursors = page_through(api, emulator, "users", user["lookup_id"], "traits", "traits", limit=1)
        names = [name for name, _ in items]
        assert names == sorted(user["traits"]) and "nickname" in names
        assert [cursor["next"] for cursor in cursors[:-1]] == names[1:]  # each page's cursor names the next trait
        assert {name: value for name, value in items if name != "nickname"} == {
            name: value for name, value in user["traits"].items() if name != "nickname"
        }


def test_the_option_adds_the_trait_and_changes_nothing_else():
    plain = ground_truth(build_dataset(20, 2, seed=4, now=NOW))
    with_trait = ground_truth(build_dataset(20, 2, seed=4, now=NOW, lone_surrogate_trait=True))
    for user in with_trait["users"]:
        user["traits"].pop("nickname", None)
        user["trait_details"].pop("nickname", None)
    assert with_trait == plain


# --- page limits --------------------------------------------------------------------------------


LIMIT_100 = {"error": {"code": "validation_error", "message": "limit must be between 1 and 100"}}


@pytest.fixture(scope="module")
def emulator_with_limit_100():
    with running_emulator(users=12, accounts=2, seed=4, now=NOW, rate_limit=0, max_list_limit=100) as running:
        yield running


@pytest.mark.parametrize("resource", ["events", "external_ids", "links"])
@pytest.mark.parametrize("limit", [101, 200])
def test_list_methods_refuse_a_limit_above_max_list_limit(emulator_with_limit_100, resource, limit):
    emulator = emulator_with_limit_100
    with api_session(emulator) as api:
        response = get(api, emulator, "users", "user_id:user-00000", resource, limit=limit)
        assert response.status_code == 400 and response.json() == LIMIT_100
        assert get(api, emulator, "users", "user_id:user-00000", resource, limit=100).status_code == 200


def test_accounts_and_the_profile_listing_obey_it_and_traits_keep_200(emulator_with_limit_100):
    emulator = emulator_with_limit_100
    with api_session(emulator) as api:
        for resource in ("external_ids", "links"):
            assert get(api, emulator, "accounts", "group_id:acct-0000", resource, limit=200).json() == LIMIT_100
        listing = f"{emulator.url}/v1/spaces/{emulator.space_id}/collections/users/profiles"
        assert api.get(listing, params={"limit": 101}, timeout=10).json() == LIMIT_100
        assert get(api, emulator, "users", "user_id:user-00000", "traits", limit=200).status_code == 200
        assert get(api, emulator, "accounts", "group_id:acct-0000", "traits", limit=200).status_code == 200
        assert get(api, emulator, "users", "user_id:user-00000", "traits", limit=201).json()["error"]["message"] == (
            "limit must be between 1 and 200"
        )


def test_max_list_limit_is_a_runtime_knob(emulator_with_limit_100):
    emulator = emulator_with_limit_100
    with api_session(emulator) as api:
        assert emulator.set_faults(max_list_limit=200)["max_list_limit"] == 200
        try:
            assert get(api, emulator, "users", "user_id:user-00000", "events", limit=200).status_code == 200
        finally:
            emulator.set_faults(max_list_limit=100)
        assert get(api, emulator, "users", "user_id:user-00000", "events", limit=200).status_code == 400
