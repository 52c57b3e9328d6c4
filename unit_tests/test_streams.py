"""Every stream read end to end: pagination, empty answers, 404 skips, 401 failures, record shapes."""

from __future__ import annotations

import json

import pytest
import requests
from airbyte_cdk.models import FailureType, Level

from source_segment_profile.source import SourceSegmentProfile

from unit_tests.builders import (
    ACCOUNT_STREAMS,
    ALL_STREAMS,
    USER_STREAMS,
    Reply,
    config,
    data_page,
    empty_page,
    event,
    external_id,
    link,
    links_page,
    metadata_body,
    page_of,
    profile_url,
    traits_page,
)
from unit_tests.conftest import assert_valid_record, catalog_for, run_main, run_read, write_json
from unit_tests.local_server import LocalProfileServer

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

PAGINATED_STREAMS = [stream for stream in ALL_STREAMS if stream != "user_metadata"]
DATA_STREAMS = ["user_events", "user_external_ids", "account_external_ids", "user_links"]
TRAITS_STREAMS = ["user_traits", "account_traits"]
# Opaque cursors, passed back as they come: a trait name for traits, base64-like tokens elsewhere.
TOKENS = ["cD0y+/a==", "cD0z+/b=="]


def config_for(stream: str, *ids: str, **overrides):
    """A config whose ids feed `stream` (user or account ids)."""
    if stream in ACCOUNT_STREAMS:
        return config(user_external_ids=[], account_external_ids=list(ids), **overrides)
    return config(user_external_ids=list(ids), **overrides)


def profile_id(stream: str, value: str = "p1") -> str:
    return f"group_id:{value}" if stream in ACCOUNT_STREAMS else f"user_id:{value}"


@pytest.mark.parametrize("stream", PAGINATED_STREAMS)
def test_three_pages_are_read_once_each_with_next_passed_back_as_given(api, stream):
    profile = profile_id(stream)
    api.pages(
        stream,
        profile,
        page_of(stream, 1, next=TOKENS[0], profile="p1"),
        page_of(stream, 2, next=TOKENS[1], profile="p1"),
        page_of(stream, 3, profile="p1"),
    )

    result = run_read(config_for(stream, profile), [stream])

    requests = api.requests_to(stream, profile)
    assert [request.param("next") for request in requests] == [None, *TOKENS]
    expected_limit = "20" if stream == "user_links" else "200"
    assert [request.param("limit") for request in requests] == [expected_limit] * 3
    records = result.records(stream)
    assert all(record["external_id"] == profile for record in records)
    if stream in TRAITS_STREAMS:
        assert records == [{"external_id": profile, "traits": {"trait_001": "p1-1", "trait_002": "p1-2", "trait_003": "p1-3"}}]
    else:
        assert len(records) == 3
        assert len({str(sorted(record.items())) for record in records}) == 3
    assert result.errors() == []


@pytest.mark.parametrize("stream", DATA_STREAMS)
def test_data_null_means_no_records_and_one_request(api, stream):
    profile = profile_id(stream)
    api.pages(stream, profile, data_page(None))

    result = run_read(config_for(stream, profile), [stream])

    assert result.records() == []
    assert len(api.requests_to(stream)) == 1
    assert result.errors() == []
    assert result.statuses(stream)[-1] == "COMPLETE"


@pytest.mark.parametrize("stream", DATA_STREAMS)
def test_an_empty_data_list_means_no_records(api, stream):
    profile = profile_id(stream)
    api.pages(stream, profile, data_page([]))

    result = run_read(config_for(stream, profile), [stream])

    assert result.records() == []
    assert len(api.requests_to(stream)) == 1
    assert result.errors() == []


@pytest.mark.parametrize("stream", TRAITS_STREAMS)
@pytest.mark.parametrize("traits", [{}, None], ids=["empty", "null"])
def test_a_profile_without_traits_gives_one_record_with_empty_traits(api, stream, traits):
    profile = profile_id(stream)
    api.pages(stream, profile, {"traits": traits, "cursor": {"url": "", "has_more": False, "next": ""}})

    result = run_read(config_for(stream, profile), [stream])

    assert result.records() == [{"external_id": profile, "traits": {}}]


@pytest.mark.parametrize("stream", ALL_STREAMS)
def test_a_404_profile_is_skipped_with_a_masked_warning_and_the_sync_goes_on(api, stream):
    missing = "email:jane.doe@example.com" if stream in USER_STREAMS else "email:boss@acme.example"
    present = profile_id(stream, "present")
    api.replies(stream, missing, Reply.error(404, Request_Id="req-nf-1"))
    api.pages(stream, present, metadata_body() if stream == "user_metadata" else page_of(stream, 1, profile="present"))

    result = run_read(config_for(stream, missing, present), [stream])

    warnings = [line for line in result.logs(Level.WARN) if "404" in line]
    assert len(warnings) == 1
    masked = "email:j***@example.com" if stream in USER_STREAMS else "email:b***@acme.example"
    assert masked in warnings[0]
    assert "req-nf-1" in warnings[0]
    full_address = missing.partition(":")[2]
    assert full_address not in result.all_text()
    assert full_address.replace("@", "%40") not in result.all_text()
    assert [record["external_id"] for record in result.records()] == [present]
    assert result.errors() == []
    assert result.statuses(stream)[-1] == "COMPLETE"


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("stream", ALL_STREAMS)
def test_rejected_credentials_fail_the_stream_with_a_config_error_naming_token_and_space(api, stream, status):
    profile = profile_id(stream)
    api.replies(stream, profile, Reply.error(status))

    result = run_read(config_for(stream, profile), [stream])

    assert result.records() == []
    error = result.stream_error(stream)
    assert error.failure_type == FailureType.config_error
    assert "access token" in error.message and "space" in error.message
    assert "spa_unit" in error.message
    assert str(status) in error.message
    # Retrying cannot help: exactly one request.
    assert len(api.requests_to(stream)) == 1
    assert "INCOMPLETE" in result.statuses(stream)


@pytest.mark.parametrize(
    "streams, ids",
    [
        (list(ACCOUNT_STREAMS), {"user_external_ids": ["user_id:u1"], "account_external_ids": []}),
        (list(USER_STREAMS), {"user_external_ids": [], "account_external_ids": ["group_id:g1"]}),
    ],
    ids=["account-streams-without-account-ids", "user-streams-without-user-ids"],
)
def test_a_stream_with_no_ids_makes_no_request_and_emits_nothing(api, streams, ids):
    result = run_read(config(**ids), streams)

    assert api.seen == []
    assert result.records() == []
    assert result.errors() == []
    for stream in streams:
        assert result.statuses(stream)[-1] == "COMPLETE"


# --- traits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", TRAITS_STREAMS)
def test_trait_names_are_sent_as_include_on_every_page(api, stream):
    profile = profile_id(stream)
    api.pages(stream, profile, traits_page({"email": "a@x.com"}, next="plan"), traits_page({"plan": "pro"}))

    result = run_read(config_for(stream, profile, trait_names=["email", "plan"]), [stream])

    assert [request.param("include") for request in api.requests_to(stream)] == ["email,plan", "email,plan"]
    assert result.records() == [{"external_id": profile, "traits": {"email": "a@x.com", "plan": "pro"}}]


def test_no_include_is_sent_without_trait_names(api):
    api.pages("user_traits", "user_id:u1", traits_page({"a": 1}))

    run_read(config(), ["user_traits"])

    assert "include" not in api.requests_to("user_traits")[0].params


def test_integers_beyond_64_bits_in_traits_reach_the_output_exactly(tmp_path):
    """orjson would read them as floats; the record on stdout must carry every digit."""
    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

    traits = {"big": 123456789012345678901234567890, "negative": -(2**64) - 1, "as_text": "12345678901234567890123", "small": 7}
    server = LocalProfileServer().replies("user_traits", "user_id:u1", traits_page(traits))

    with server.running():
        completed = run_main(
            "read",
            "--config",
            write_json(tmp_path / "config.json", config(api_base_url=server.url)),
            "--catalog",
            write_json(tmp_path / "catalog.json", ConfiguredAirbyteCatalogSerializer.dump(catalog_for(["user_traits"]))),
            folder=tmp_path,
        )

    assert completed.returncode == 0, completed.stderr[-2000:]
    messages = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    (record,) = [message["record"]["data"] for message in messages if message["type"] == "RECORD"]
    assert record == {"external_id": "user_id:u1", "traits": traits}
    assert_valid_record("user_traits", record)


def test_trait_values_of_any_json_type_are_kept(api):
    traits = {"a_list": [1, "x"], "b_obj": {"nested": True}, "c_null": None, "d_num": 1.5, "e_bool": False}
    api.pages("user_traits", "user_id:u1", traits_page(traits))

    result = run_read(config(), ["user_traits"])

    assert result.records() == [{"external_id": "user_id:u1", "traits": traits}]


# --- metadata -------------------------------------------------------------------------------


def test_flat_metadata_gives_one_flat_record_and_sends_no_limit(api):
    api.pages("user_metadata", "user_id:u1", metadata_body("use_flat"))

    result = run_read(config(), ["user_metadata"])

    assert result.records() == [
        {"external_id": "user_id:u1", "segment_id": "use_flat", "created_at": "2026-10-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z"}
    ]
    requests = api.requests_to("user_metadata")
    assert len(requests) == 1
    assert requests[0].params == {}


def test_wrapped_metadata_is_unwrapped_into_one_flat_record(api):
    api.pages("user_metadata", "user_id:u1", metadata_body("use_wrapped", wrapped=True))

    result = run_read(config(), ["user_metadata"])

    assert result.records() == [
        {
            "external_id": "user_id:u1",
            "segment_id": "use_wrapped",
            "created_at": "2026-10-01T00:00:00Z",
            "updated_at": "2026-11-01T00:00:00Z",
            "expires_at": "2027-10-01T00:00:00Z",
            "first_message_id": "m0",
        }
    ]
    assert "metadata" not in result.records()[0]


# --- events ---------------------------------------------------------------------------------


def test_event_message_id_is_filled_from_message_id(api):
    only_snake = event("ignored")
    del only_snake["messageId"]
    only_snake["message_id"] = "m-snake"
    api.pages("user_events", "user_id:u1", data_page([only_snake, event("m-camel")]))

    result = run_read(config(), ["user_events"])

    assert [record["messageId"] for record in result.records()] == ["m-snake", "m-camel"]
    assert result.records()[0]["message_id"] == "m-snake"


def test_unknown_event_fields_are_kept(api):
    rich = event(
        "m1",
        external_ids=[{"id": "abc", "type": "user_id"}],
        related={"audiences": ["vip"]},
        x_brand_new_field={"deep": [1, 2]},
    )
    api.pages("user_events", "user_id:u1", data_page([rich]))

    result = run_read(config(), ["user_events"])

    assert result.records() == [{**rich, "external_id": "user_id:u1"}]


# --- links ----------------------------------------------------------------------------------


def test_link_records_carry_the_smallest_linked_id(api):
    api.pages(
        "user_links",
        "user_id:u1",
        links_page([link("accounts", ("group_id", "zeta"), ("domain", "acme.example")), link("accounts", ("group_id", "alpha"))]),
    )

    result = run_read(config(), ["user_links"])

    assert [(record["to_collection"], record["linked_external_id"]) for record in result.records()] == [
        ("accounts", "domain:acme.example"),
        ("accounts", "group_id:alpha"),
    ]
    assert all(record["external_id"] == "user_id:u1" for record in result.records())


def test_links_without_a_cursor_are_one_page(api):
    api.pages("user_links", "user_id:u1", links_page([link("accounts", ("group_id", "g"))], with_cursor=False))

    result = run_read(config(), ["user_links"])

    assert len(result.records()) == 1
    assert len(api.requests_to("user_links")) == 1


# --- external ids ---------------------------------------------------------------------------


@pytest.mark.parametrize("stream", ["user_external_ids", "account_external_ids"])
def test_external_id_records_are_the_api_objects_plus_external_id(api, stream):
    profile = profile_id(stream)
    item = external_id("abc", type="anonymous_id", first_message_id="m0")
    api.pages(stream, profile, data_page([item]))

    result = run_read(config_for(stream, profile), [stream])

    assert result.records() == [{**item, "external_id": profile}]


def test_all_seven_streams_read_in_one_sync(api):
    user, account = "user_id:u1", "group_id:g1"
    for stream in ALL_STREAMS:
        profile = account if stream in ACCOUNT_STREAMS else user
        api.pages(stream, profile, metadata_body() if stream == "user_metadata" else page_of(stream, 1))

    result = run_read(config(user_external_ids=[user], account_external_ids=[account]))

    assert sorted(set(result.record_streams())) == sorted(ALL_STREAMS)
    assert len(result.records()) == 7
    assert len(api.seen) == 7
    assert result.errors() == []
    assert sorted(request.url.split("?")[0] for request in api.seen) == sorted(
        profile_url(stream, account if stream in ACCOUNT_STREAMS else user) for stream in ALL_STREAMS
    )


def test_empty_answers_of_every_stream_emit_no_data_record(api):
    for stream in DATA_STREAMS:
        api.pages(stream, profile_id(stream), empty_page(stream))

    result = run_read(config(account_external_ids=["group_id:p1"], user_external_ids=["user_id:p1"]), DATA_STREAMS)

    assert result.records() == []
    assert result.errors() == []


@pytest.mark.parametrize(
    "missing, masked, hidden",
    [
        ("phone:+15551234567", "phone:***67", "5551234"),
        ("Email:Jane.Doe@Example.com", "Email:J***@Example.com", "Jane.Doe"),
        # Issue 21: every type is masked (many user ids are emails), with its place in the config.
        ("user_id:abc123", "user_id:a***23 (user_external_ids[0])", "abc123"),
    ],
)
def test_404_warnings_mask_every_id_type(api, missing, masked, hidden):
    api.replies("user_traits", missing, Reply.error(404))

    result = run_read(config(user_external_ids=[missing]), ["user_traits"])

    (warning,) = [line for line in result.logs(Level.WARN) if "404" in line]
    assert masked in warning
    if hidden:
        assert hidden not in result.all_text()


def test_the_cdk_response_interface_reads_a_page_for_a_profiles_slice():
    """parse_response/next_page_token (HttpStream's interface, which the engine drives) read a
    response for the profile of the slice they are given."""
    streams = {stream.name: stream for stream in SourceSegmentProfile().streams(config(user_external_ids=["email:a+b@x.com"]))}
    response = requests.Response()
    response.status_code = 200
    response.url = profile_url("user_events", "email:a+b@x.com") + "?limit=200"
    response.headers["Request-Id"] = "rid-1"
    response._content = json.dumps(
        {"data": [{"message_id": "m1", "timestamp": "2026-11-20T10:00:00Z"}], "cursor": {"has_more": True, "next": "tok", "url": ""}}
    ).encode()

    events, profile = streams["user_events"], {"external_id": "email:a+b@x.com"}
    assert list(events.parse_response(response, stream_slice=profile)) == [
        {"message_id": "m1", "messageId": "m1", "timestamp": "2026-11-20T10:00:00Z", "external_id": "email:a+b@x.com"}
    ]
    assert events.next_page_token(response, stream_slice=profile) == {"next": "tok"}
    assert streams["user_metadata"].next_page_token(response, stream_slice=profile) is None  # metadata is not paginated
