"""Following the cursor: when to stop, and what a cursor that repeats does."""

from __future__ import annotations

import pytest

from source_segment_profile.pagination import MAX_EMPTY_PAGES_IN_A_ROW
from airbyte_cdk.models import FailureType, Level

from unit_tests.builders import config, cursor, data_page, event, external_id, page_of, traits_page
from unit_tests.conftest import run_read

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

STREAMS = ["user_traits", "user_events", "user_external_ids", "user_links"]


@pytest.mark.parametrize("stream", STREAMS)
def test_a_repeated_cursor_fails_the_stream_instead_of_looping(api, stream):
    api.pages(stream, "email:loop@example.com", page_of(stream, 1, next="same"), page_of(stream, 2, next="same"), page_of(stream, 3))

    result = run_read(config(user_external_ids=["email:loop@example.com"]), [stream])

    assert len(api.requests_to(stream)) == 2
    error = result.stream_error(stream)
    assert error.failure_type == FailureType.system_error
    assert "cursor" in error.message
    assert stream in error.message
    assert "email:l***@example.com" in error.message
    assert "req-2" in error.message  # the Request-Id of the page that repeated the cursor
    # Records carry the id as configured (page 1 was emitted before the repeat); logs and traces mask it.
    for text in result.logs() + [error.message, error.internal_message or "", error.stack_trace or ""]:
        assert "loop@example.com" not in text


def test_the_same_cursor_value_in_two_profiles_is_not_a_repeat(api):
    for profile in ("user_id:a", "user_id:b"):
        api.pages("user_external_ids", profile, data_page([external_id(profile + "-1")], next="page2"), data_page([external_id(profile + "-2")]))

    result = run_read(config(user_external_ids=["user_id:a", "user_id:b"]), ["user_external_ids"])

    assert sorted(record["id"] for record in result.records()) == ["user_id:a-1", "user_id:a-2", "user_id:b-1", "user_id:b-2"]
    assert result.errors() == []


@pytest.mark.parametrize("stream", STREAMS)
def test_has_more_without_next_stops_with_a_warning(api, stream):
    first = page_of(stream, 1)
    first["cursor"] = cursor(next="", has_more=True)
    api.pages(stream, "user_id:u1", first)

    result = run_read(config(), [stream])

    assert len(api.requests_to(stream)) == 1
    assert len(result.records()) == 1
    warnings = [line for line in result.logs(Level.WARN) if "has_more" in line]
    assert len(warnings) == 1
    assert stream in warnings[0] and "user_id:*** (user_external_ids[0])" in warnings[0]
    assert result.errors() == []


@pytest.mark.parametrize("stream", STREAMS)
def test_has_more_false_stops_even_with_a_next_value(api, stream):
    first = page_of(stream, 1)
    first["cursor"] = cursor(next="more", has_more=False)
    api.pages(stream, "user_id:u1", first, page_of(stream, 2))

    result = run_read(config(), [stream])

    assert len(api.requests_to(stream)) == 1
    assert len(result.records()) == 1
    assert result.errors() == []


@pytest.mark.parametrize(
    "stream, empty",
    [
        ("user_traits", traits_page({}, next="zzz")),
        ("user_events", data_page([], next="tok")),
        ("user_external_ids", data_page([], next="tok")),
        ("user_links", data_page(None, next="tok")),
    ],
)
def test_an_empty_page_that_says_has_more_is_followed(api, stream, empty):
    # Issue 21: 0.2.0 ended the profile there silently; a server filtering `include` or `start`
    # may answer an empty page with more after it.
    api.pages(stream, "user_id:u1", page_of(stream, 1, next="p2"), empty, page_of(stream, 3))

    result = run_read(config(), [stream])

    assert [request.param("next") for request in api.requests_to(stream)] == [None, "p2", empty["cursor"]["next"]]
    assert result.errors() == []
    assert len(result.records()) == (1 if stream == "user_traits" else 2)  # the first page's item and the third's


def test_empty_pages_that_say_has_more_without_end_fail_the_stream(api):
    api.handler("user_events", "user_id:u1", lambda request: data_page([], next=f"t{int((request.param('next') or 't0')[1:]) + 1}"))

    result = run_read(config(), ["user_events"])

    error = result.stream_error("user_events")
    assert "pages in a row were empty but said has_more" in error.message
    assert len(api.requests_to("user_events")) == MAX_EMPTY_PAGES_IN_A_ROW + 1


def test_a_page_without_cursor_is_the_last(api):
    api.pages("user_events", "user_id:u1", {"data": [event("m1")]})

    result = run_read(config(), ["user_events"])

    assert len(api.requests_to("user_events")) == 1
    assert [record["messageId"] for record in result.records()] == ["m1"]


@pytest.mark.parametrize(
    "url",
    [
        "/v1/spaces/spa_unit/collections/users/profiles/user_id:u1/events?next=p2",
        "https://profiles.segment.com/v1/spaces/spa_unit/collections/users/profiles/user_id:u1/events?next=p2&limit=10",
    ],
    ids=["relative", "absolute"],
)
def test_next_pages_keep_our_limit_whatever_the_cursor_url(api, url):
    api.pages(
        "user_events",
        "user_id:u1",
        data_page([event("m1")], next="p2", url=url),
        data_page([event("m2")]),
    )

    result = run_read(config(), ["user_events"])

    assert [(request.param("next"), request.param("limit")) for request in api.requests_to("user_events")] == [(None, "200"), ("p2", "200")]
    assert [record["messageId"] for record in result.records()] == ["m1", "m2"]


def test_page_size_option_sets_limit_but_links_stay_at_20(api):
    api.pages("user_traits", "user_id:u1", traits_page({"a": 1}))
    api.pages("user_links", "user_id:u1", data_page([]))

    run_read(config(page_size=50), ["user_traits", "user_links"])

    assert api.requests_to("user_traits")[0].param("limit") == "50"
    assert api.requests_to("user_links")[0].param("limit") == "20"
