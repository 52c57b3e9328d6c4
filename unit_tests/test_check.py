"""`check`: one probe request proves token and space; it answers within seconds whatever happens."""

from __future__ import annotations

import socket
import time

import pytest

from unit_tests.builders import Reply, config, traits_page
from unit_tests.conftest import check_status

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits


def test_check_succeeds_on_200_with_one_small_probe(api):
    api.pages("user_traits", "email:a+b@x.com", traits_page({"email": "a+b@x.com"}))

    status, message, _ = check_status(config(user_external_ids=["email:a+b@x.com", "user_id:u2"]))

    assert (status, message) == ("SUCCEEDED", None)
    assert len(api.seen) == 1
    assert api.seen[0].path == "/v1/spaces/spa_unit/collections/users/profiles/email:a%2Bb%40x.com/traits"
    assert api.seen[0].param("limit") == "1"


def test_check_probes_an_account_when_there_is_no_user_id(api):
    api.pages("account_traits", "group_id:g1", traits_page({}))

    status, _, _ = check_status(config(user_external_ids=[], account_external_ids=["group_id:g1"]))

    assert status == "SUCCEEDED"
    assert [request.path for request in api.seen] == ["/v1/spaces/spa_unit/collections/accounts/profiles/group_id:g1/traits"]


def test_a_404_for_one_probed_profile_still_proves_the_credentials_when_the_next_is_found(api):
    api.replies("user_traits", "user_id:u1", Reply.error(404))
    api.replies("user_traits", "user_id:u2", traits_page({}))

    status, message, output = check_status(config(user_external_ids=["user_id:u1", "user_id:u2"]))

    assert (status, message) == ("SUCCEEDED", None)
    assert any("user_id:*** (user_external_ids[0]) answered 404" in line.log.message for line in output.logs)


def test_check_fails_when_none_of_the_first_three_ids_is_found_naming_space_and_region(api):
    # Issue 21: 12 ids that all answer 404 (a wrong region, space or environment) passed check.
    ids = [f"user_id:u{n}" for n in range(12)]
    for external_id in ids:
        api.replies("user_traits", external_id, Reply.error(404))

    status, message, _ = check_status(config(user_external_ids=ids, account_external_ids=["group_id:g1"]))

    assert status == "FAILED"
    assert "None of the first 3 configured user ids was found in space 'spa_unit' (region us, profiles.segment.com)" in message
    assert len(api.seen) == 3  # the probes stop at three; the accounts are not looked up once users failed


@pytest.mark.parametrize("status_code", [401, 403])
def test_rejected_credentials_fail_with_a_message_about_token_and_space(api, status_code):
    api.replies("user_traits", "user_id:u1", Reply.error(status_code, Request_Id="rid-auth"))

    status, message, _ = check_status(config())

    assert status == "FAILED"
    assert "access token" in message and "space" in message
    assert "spa_unit" in message
    assert str(status_code) in message
    assert "rid-auth" in message
    assert len(api.seen) == 1


def test_a_failing_api_fails_check_after_one_retry(api):
    api.replies("user_traits", "user_id:u1", Reply.error(503, Request_Id="rid-503"))

    status, message, _ = check_status(config())

    assert status == "FAILED"
    assert "profiles.segment.com" in message
    assert "rid-503" in message
    assert len(api.seen) == 2


def test_a_body_that_is_not_json_fails_check_clearly(api):
    api.replies("user_traits", "user_id:u1", Reply(200, "<html>sign in to the wifi</html>"))

    status, message, _ = check_status(config())

    assert status == "FAILED"
    assert "not JSON" in message and "<html>sign in" in message


def test_check_requests_use_a_short_timeout(api):
    api.pages("user_traits", "user_id:u1", traits_page({}))

    check_status(config(request_timeout_seconds=300))

    connect, read_timeout = api.seen[0].timeout
    assert read_timeout <= 15
    assert connect <= 15


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_host_fails_check_naming_the_host_within_seconds():
    port = closed_port()
    started = time.monotonic()

    status, message, _ = check_status(config(api_base_url=f"http://127.0.0.1:{port}"))

    assert time.monotonic() - started < 5
    assert status == "FAILED"
    assert f"127.0.0.1:{port}" in message


def test_a_rate_limited_check_answers_within_a_minute(api, clock):
    api.replies("user_traits", "user_id:u1", Reply.error(429, Retry_After="30"))

    status, message, _ = check_status(config())

    assert status == "FAILED"
    assert "rate limit" in message
    assert sum(clock.sleeps) <= 60
