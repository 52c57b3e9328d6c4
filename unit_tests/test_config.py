"""Bad configuration (issue 4): `check` says FAILED naming the field and value; `read` fails with a
config_error before any request. Good configurations: duplicates dropped, loopback http allowed."""

from __future__ import annotations

import pytest
from airbyte_cdk.models import FailureType

from unit_tests.builders import TOKEN, config, page_of, traits_page
from unit_tests.conftest import check_status, run_read

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

# (case id, config overrides, texts the message must contain, texts it must not contain)
BAD_CONFIGS = [
    pytest.param({"space_id": None}, ["space_id"], [], id="missing-space-id"),
    pytest.param({"space_id": ""}, ["space_id"], [], id="empty-space-id"),
    pytest.param({"space_id": "  "}, ["space_id"], [], id="blank-space-id"),
    pytest.param({"access_token": None}, ["access_token"], [], id="missing-token"),
    pytest.param({"access_token": ""}, ["access_token"], [], id="empty-token"),
    pytest.param({"user_external_ids": ["abc123"]}, ["user_external_ids", "abc123"], [], id="id-without-type"),
    pytest.param(
        {"user_external_ids": ["user_id:ok", "jane.doe@example.com"]},
        ["user_external_ids", "j***@example.com"],
        ["jane.doe"],
        id="email-without-type-is-masked",
    ),
    pytest.param(
        {"user_external_ids": [], "account_external_ids": ["acme"]},
        ["account_external_ids", "acme"],
        [],
        id="account-id-without-type",
    ),
    pytest.param({"user_external_ids": [], "account_external_ids": []}, ["user_external_ids", "account_external_ids"], [], id="both-id-lists-empty"),
    pytest.param({"user_external_ids": None, "account_external_ids": None}, ["user_external_ids", "account_external_ids"], [], id="both-id-lists-missing"),
    pytest.param({"api_base_url": "http://profiles.segment.com"}, ["api_base_url", "http://profiles.segment.com"], [], id="http-to-remote-host"),
    pytest.param({"api_base_url": "http://10.0.0.8:8080"}, ["api_base_url", "http://10.0.0.8:8080"], [], id="http-to-private-ip"),
    pytest.param({"api_base_url": "https://profiles.segment.com/v1/spaces/x"}, ["api_base_url", "/v1/spaces/x"], [], id="base-url-with-path"),
    pytest.param({"region": "mars"}, ["region", "mars"], [], id="unknown-region"),
    pytest.param({"start_date": "yesterday"}, ["start_date", "yesterday"], [], id="unparseable-start-date"),
    pytest.param({"start_date": "2026-13-45T00:00:00Z"}, ["start_date", "2026-13-45T00:00:00Z"], [], id="impossible-start-date"),
    pytest.param({"requests_per_second": 0}, ["requests_per_second", "0"], [], id="zero-budget"),
    pytest.param({"requests_per_second": -5}, ["requests_per_second", "-5"], [], id="negative-budget"),
    pytest.param({"max_concurrency": 0}, ["max_concurrency", "0"], [], id="zero-concurrency"),
    pytest.param({"max_concurrency": -2}, ["max_concurrency", "-2"], [], id="negative-concurrency"),
    pytest.param({"request_timeout_seconds": 0}, ["request_timeout_seconds", "0"], [], id="zero-timeout"),
    pytest.param({"request_timeout_seconds": -1.5}, ["request_timeout_seconds", "-1.5"], [], id="negative-timeout"),
    pytest.param({"events_lookback_hours": -1}, ["events_lookback_hours", "-1"], [], id="negative-lookback"),
    pytest.param({"events_lookback_hours": 400}, ["events_lookback_hours", "400", "336"], [], id="lookback-beyond-14-days"),
    pytest.param({"events_lookback_minutes": 30000}, ["events_lookback_minutes", "30000"], [], id="lookback-minutes-beyond-14-days"),
]

# The same cases without the xfail marks: read must fail before any request whatever the message.
READ_CASES = [pytest.param(*case.values, id=case.id) for case in BAD_CONFIGS]


@pytest.mark.parametrize("overrides, must_contain, must_not_contain", BAD_CONFIGS)
def test_check_fails_naming_the_bad_field_and_its_value(api, overrides, must_contain, must_not_contain):
    status, message, _ = check_status(config(**overrides))

    assert status == "FAILED"
    for text in must_contain:
        assert text in message, f"{text!r} not in {message!r}"
    for text in must_not_contain + [TOKEN]:
        assert text not in message
    assert api.seen == []


@pytest.mark.parametrize("overrides, must_contain, must_not_contain", READ_CASES)
def test_read_fails_with_a_config_error_before_any_request(api, overrides, must_contain, must_not_contain):
    result = run_read(config(**overrides), ["user_traits", "account_traits"])

    assert api.seen == []
    assert result.records() == []
    errors = result.errors()
    assert errors, "read succeeded with a bad config"
    assert errors[0].failure_type == FailureType.config_error
    assert TOKEN not in result.all_text()


@pytest.mark.parametrize("overrides, must_contain, must_not_contain", BAD_CONFIGS)
def test_read_error_names_the_bad_field_and_its_value(api, overrides, must_contain, must_not_contain):
    result = run_read(config(**overrides), ["user_traits"])

    message = result.errors()[0].message
    for text in must_contain:
        assert text in message, f"{text!r} not in {message!r}"
    for text in must_not_contain:
        assert text not in result.all_text()


def test_the_token_value_is_never_in_a_config_error():
    status, message, output = check_status(config(access_token=" canary+tok/en== "))

    assert status == "FAILED"
    assert "access_token" in message
    assert "canary+tok/en==" not in message


def test_duplicate_ids_are_read_once_in_their_first_order(api):
    ids = ["user_id:b", "user_id:a", "user_id:b", "email:x@y.com", "user_id:a", "email:x@y.com"]
    for profile in ("user_id:b", "user_id:a", "email:x@y.com"):
        api.pages("user_traits", profile, traits_page({"who": profile}))

    result = run_read(config(user_external_ids=ids, max_concurrency=1), ["user_traits"])

    assert [request.path.split("/profiles/")[1] for request in api.seen] == ["user_id:b/traits", "user_id:a/traits", "email:x%40y.com/traits"]
    # Records follow completion order (several profiles may finish together): each profile once.
    assert sorted(record["external_id"] for record in result.records()) == ["email:x@y.com", "user_id:a", "user_id:b"]


def test_duplicate_account_ids_are_read_once(api):
    api.pages("account_external_ids", "group_id:g", page_of("account_external_ids", 1))

    result = run_read(config(account_external_ids=["group_id:g", "group_id:g"]), ["account_external_ids"])

    assert len(api.seen) == 1
    assert len(result.records()) == 1


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "http://localhost"])
def test_plain_http_to_a_loopback_host_is_allowed(api, base_url):
    api.pages("user_traits", "user_id:u1", traits_page({}))

    status, message, _ = check_status(config(api_base_url=base_url))

    assert (status, message) == ("SUCCEEDED", None)
    assert [request.url.split("/v1/")[0] for request in api.seen] == [base_url]


def test_a_trailing_slash_in_the_base_url_is_accepted(api):
    api.pages("user_traits", "user_id:u1", traits_page({}))

    result = run_read(config(api_base_url="https://proxy.example/"), ["user_traits"])

    assert api.seen[0].url.startswith("https://proxy.example/v1/spaces/spa_unit/collections/users/profiles/user_id:u1/traits")
    assert result.errors() == []
