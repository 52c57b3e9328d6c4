"""user_traits: one record per user, the traits of all its pages merged; `include` from trait_names.

https://segment.com/docs/unify/profile-api/#get-user-traits
"""

from __future__ import annotations

from typing import Any
from unittest import TestCase

from airbyte_cdk.models import FailureType
from airbyte_cdk.test.mock_http import HttpRequest

from unit_tests.integration.config import ConfigBuilder
from unit_tests.integration.profile_stream_scenarios import ProfileStreamScenarios
from unit_tests.integration.request_builders import AUTHORIZATION, EU_HOST, ListingRequestBuilder, ProfileRequestBuilder
from unit_tests.integration.response_builders import DataResponseBuilder, ErrorResponseBuilder, TraitsResponseBuilder, listed_user
from unit_tests.integration.source_run import final_state, read_streams, records, stream_error
from unit_tests.integration.strict_http_mocker import StrictHttpMocker

STREAM = "user_traits"
EMAIL_ID = "email:jane+news@example.com"
# The traits of the template (resource/http/response/user_traits.json).
TEMPLATE_TRAITS = {"email": "jane@example.com", "first_name": "Jane", "lifetime_value": 1250.5, "plan": "pro"}
# status -> (failure type of the stream, requests sent) with max_retries 1.
STATUS_OUTCOMES = {
    400: (FailureType.system_error, 1),
    401: (FailureType.config_error, 1),
    403: (FailureType.config_error, 1),
    408: (FailureType.transient_error, 2),
    500: (FailureType.transient_error, 2),
    502: (FailureType.transient_error, 2),
    503: (FailureType.transient_error, 2),
    504: (FailureType.transient_error, 2),
}


class TestUserTraits(ProfileStreamScenarios, TestCase):
    stream = STREAM
    query = {"limit": 200, "verbose": "true"}  # each trait with its last update and source

    def answer(self, external_id: str) -> tuple[TraitsResponseBuilder, list[dict[str, Any]]]:
        return TraitsResponseBuilder.of(STREAM), [{"external_id": external_id, "traits": TEMPLATE_TRAITS}]

    @StrictHttpMocker()
    def test_ids_are_percent_encoded_into_one_path_segment(self, http_mocker: StrictHttpMocker) -> None:
        profiles = "https://profiles.segment.com/v1/spaces/spa_unit/collections/users/profiles"
        for encoded in ("email:jane%2Bnews%40example.com", "user_id:a%2Fb%3Fc%23d%25e%20f"):
            http_mocker.get(
                HttpRequest(f"{profiles}/{encoded}/traits", query_params={"limit": "200", "verbose": "true"}, headers={"Authorization": AUTHORIZATION}),
                TraitsResponseBuilder.of(STREAM).build(),
            )

        output = read_streams(ConfigBuilder().with_user_ids(EMAIL_ID, "user_id:a/b?c#d%e f").build(), STREAM)

        assert sorted(record["external_id"] for record in records(output)) == [EMAIL_ID, "user_id:a/b?c#d%e f"]

    @StrictHttpMocker()
    def test_pages_are_followed_by_passing_next_back_as_given_and_merged_into_one_record(self, http_mocker: StrictHttpMocker) -> None:
        http_mocker.get(self.request("user_id:u2").build(), TraitsResponseBuilder.of(STREAM).with_traits({"email": "jane@example.com"}).with_next("cD0y+/a==").build())
        http_mocker.get(
            ProfileRequestBuilder.user("traits", "user_id:u2").with_limit(200).with_param("verbose", "true").with_next("cD0y+/a==").build(),
            TraitsResponseBuilder.of(STREAM).with_traits({"plan": "pro"}).build(),
        )

        output = read_streams(ConfigBuilder().with_user_ids("user_id:u2").build(), STREAM)

        assert records(output) == [{"external_id": "user_id:u2", "traits": {"email": "jane@example.com", "plan": "pro"}}]

    @StrictHttpMocker()
    def test_trait_names_are_sent_as_include_on_every_page(self, http_mocker: StrictHttpMocker) -> None:
        first_page = ProfileRequestBuilder.user("traits", "user_id:u2").with_limit(200).with_param("verbose", "true").with_param("include", "email,plan")
        http_mocker.get(first_page.build(), TraitsResponseBuilder.of(STREAM).with_traits({"email": "jane@example.com"}).with_next("plan").build())
        http_mocker.get(first_page.with_next("plan").build(), TraitsResponseBuilder.of(STREAM).with_traits({"plan": "pro"}).build())

        output = read_streams(ConfigBuilder().with_user_ids("user_id:u2").with_field("trait_names", ["email", "plan"]).build(), STREAM)

        assert records(output) == [{"external_id": "user_id:u2", "traits": {"email": "jane@example.com", "plan": "pro"}}]

    @StrictHttpMocker()
    def test_null_traits_make_a_record_with_empty_traits(self, http_mocker: StrictHttpMocker) -> None:
        http_mocker.get(self.request("user_id:u2").build(), TraitsResponseBuilder.of(STREAM).with_traits(None).build())

        output = read_streams(ConfigBuilder().with_user_ids("user_id:u2").build(), STREAM)

        assert records(output) == [{"external_id": "user_id:u2", "traits": {}}]

    @StrictHttpMocker()
    def test_the_eu_region_reads_from_the_eu_host_and_its_404s_name_it(self, http_mocker: StrictHttpMocker) -> None:
        http_mocker.get(self.request("user_id:u2").on_host(EU_HOST).build(), ErrorResponseBuilder.of(404).build())

        output = read_streams(ConfigBuilder().with_user_ids("user_id:u2").with_field("region", "eu").build(), STREAM, expect_failure=True)

        assert "space 'spa_unit' (region eu, profiles.euw1.segment.com)" in stream_error(output, STREAM).message

    def test_failure_statuses_end_the_stream_as_the_table_says(self) -> None:
        for status, (failure_type, requests_sent) in STATUS_OUTCOMES.items():
            with self.subTest(status=status), StrictHttpMocker() as http_mocker:
                http_mocker.get(self.request("user_id:u2").build(), [ErrorResponseBuilder.of(status).with_request_id(f"req-{status}").build()] * requests_sent)

                output = read_streams(ConfigBuilder().with_user_ids("user_id:u2").with_field("max_retries", 1).build(), STREAM, expect_failure=True)

                error = stream_error(output, STREAM)
                assert error.failure_type == failure_type
                assert f"req-{status}" in error.message
                assert records(output) == []

    @StrictHttpMocker()
    def test_read_all_users_reads_every_listed_user_by_segment_id(self, http_mocker: StrictHttpMocker) -> None:
        listing = ListingRequestBuilder.users()
        # `read` first makes sure the space lists users at all: one user.
        http_mocker.get(listing.with_next("0").with_limit(1).build(), DataResponseBuilder.of("list_users").with_record(listed_user().with_id("use_a")).with_next("1").build())
        http_mocker.get(listing.with_next("0").with_limit(100).build(), DataResponseBuilder.of("list_users").with_record(listed_user().with_id("use_a")).with_next("100").build())
        http_mocker.get(listing.with_next("100").with_limit(100).build(), DataResponseBuilder.of("list_users").with_record(listed_user().with_id("use_b")).build())
        for segment_id in ("segment_id:use_a", "segment_id:use_b"):
            http_mocker.get(self.request(segment_id).build(), TraitsResponseBuilder.of(STREAM).build())

        output = read_streams(ConfigBuilder().with_field("read_all_users", True).build(), STREAM)

        assert sorted(record["external_id"] for record in records(output)) == ["segment_id:use_a", "segment_id:use_b"]
        assert final_state(output, STREAM) == {"__ab_full_refresh_sync_complete": True}


class TestUserTraitsProvenance(TestCase):
    """verbose=true: the traits keep their plain values; when and by which source each was last set
    goes to `traits_provenance` (issue 23)."""

    @StrictHttpMocker()
    def test_a_verbose_answer_gives_plain_traits_and_each_trait_s_last_update_and_source(self, http_mocker: StrictHttpMocker) -> None:
        verbose = {
            "plan": {"value": "pro", "source_id": "src_web", "updated_at": "2026-11-01T10:00:00.000Z"},
            "ltv": {"value": 12.5, "source_id": "src_billing", "updated_at": "2026-11-02T11:00:00.000Z"},
        }
        request = ProfileRequestBuilder.user("traits", "user_id:u2").with_limit(200).with_param("verbose", "true")
        http_mocker.get(request.build(), TraitsResponseBuilder.of(STREAM).with_traits(verbose).build())

        output = read_streams(ConfigBuilder().with_user_ids("user_id:u2").build(), STREAM)

        assert records(output) == [{
            "external_id": "user_id:u2",
            "traits": {"plan": "pro", "ltv": 12.5},
            "traits_provenance": {
                "plan": {"updated_at": "2026-11-01T10:00:00.000Z", "source_id": "src_web"},
                "ltv": {"updated_at": "2026-11-02T11:00:00.000Z", "source_id": "src_billing"},
            },
        }]
