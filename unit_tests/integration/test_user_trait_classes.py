"""user_audiences and user_computed_traits: the traits endpoint with Segment's documented `class`
filter and `verbose=true`; one record per profile and audience (or computed trait), with when and
by which source it was last set.

https://segment.com/docs/unify/profile-api/#get-user-traits
"""

from __future__ import annotations

from typing import Any
from unittest import TestCase

from airbyte_cdk.models import FailureType

from unit_tests.integration.config import ConfigBuilder
from unit_tests.integration.profile_stream_scenarios import ProfileStreamScenarios
from unit_tests.integration.request_builders import ProfileRequestBuilder
from unit_tests.integration.response_builders import ErrorResponseBuilder, TraitsResponseBuilder
from unit_tests.integration.source_run import read_streams, records, stream_error
from unit_tests.integration.strict_http_mocker import StrictHttpMocker

USER_ID = "user_id:u2"


class TraitClassScenarios(ProfileStreamScenarios):
    trait_class: str

    def request(self, external_id: str) -> ProfileRequestBuilder:
        request = ProfileRequestBuilder.user("traits", external_id)
        for name, value in self.query.items():
            request = request.with_param(name, value)
        return request


class TestUserAudiences(TraitClassScenarios, TestCase):
    stream = "user_audiences"
    query = {"limit": 200, "class": "audience", "verbose": "true"}

    def answer(self, external_id: str) -> tuple[TraitsResponseBuilder, list[dict[str, Any]]]:
        return TraitsResponseBuilder.of(self.stream), [
            {"external_id": external_id, "audience": "audience_churn_risk", "in_audience": False, "source_id": "src_audiences", "updated_at": "2026-11-19T08:00:00.000Z"},
            {"external_id": external_id, "audience": "audience_high_value", "in_audience": True, "source_id": "src_audiences", "updated_at": "2026-11-18T07:30:00.000Z"},
        ]

    @StrictHttpMocker()
    def test_audiences_on_two_pages_are_all_delivered_one_record_each(self, http_mocker: StrictHttpMocker) -> None:
        first = {"audience_a": {"value": True, "source_id": "s", "updated_at": "2026-11-01T00:00:00.000Z"}}
        second = {"audience_b": {"value": False, "source_id": "s", "updated_at": "2026-11-02T00:00:00.000Z"}}
        http_mocker.get(self.request(USER_ID).build(), TraitsResponseBuilder.of(self.stream).with_traits(first).with_next("audience_b").build())
        http_mocker.get(self.request(USER_ID).with_next("audience_b").build(), TraitsResponseBuilder.of(self.stream).with_traits(second).build())

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID).build(), self.stream)

        assert [(record["audience"], record["in_audience"]) for record in records(output)] == [("audience_a", True), ("audience_b", False)]

    @StrictHttpMocker()
    def test_a_space_without_audiences_fails_the_stream_with_a_config_error_saying_to_deselect_it(self, http_mocker: StrictHttpMocker) -> None:
        refused = ErrorResponseBuilder.of(400, "class is not supported for this space")
        http_mocker.get(self.request(USER_ID).build(), refused.build())

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID).build(), self.stream, expect_failure=True)

        error = stream_error(output, self.stream)
        assert error.failure_type == FailureType.config_error
        assert "refused class=audience" in error.message and "Deselect the stream 'user_audiences'" in error.message


class TestUserComputedTraits(TraitClassScenarios, TestCase):
    stream = "user_computed_traits"
    query = {"limit": 200, "class": "computed_trait", "verbose": "true"}

    def answer(self, external_id: str) -> tuple[TraitsResponseBuilder, list[dict[str, Any]]]:
        return TraitsResponseBuilder.of(self.stream), [
            {"external_id": external_id, "trait": "ct_favorite_categories", "value": ["shoes", "tea"], "source_id": "src_computed", "updated_at": "2026-11-19T09:00:00.000Z"},
            {"external_id": external_id, "trait": "ct_orders_90d", "value": 12, "source_id": "src_computed", "updated_at": "2026-11-19T09:00:00.000Z"},
        ]
