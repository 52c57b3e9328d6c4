"""user_external_ids: one record per id Segment resolved into the user's profile.

https://segment.com/docs/unify/profile-api/#get-user-external-ids
"""

from __future__ import annotations

from typing import Any
from unittest import TestCase

from airbyte_cdk.test.mock_http.response_builder import FieldPath

from unit_tests.integration.config import ConfigBuilder
from unit_tests.integration.profile_stream_scenarios import ProfileStreamScenarios
from unit_tests.integration.request_builders import ProfileRequestBuilder
from unit_tests.integration.response_builders import DataResponseBuilder, ErrorResponseBuilder, external_id_record
from unit_tests.integration.source_run import read_streams, records
from unit_tests.integration.strict_http_mocker import StrictHttpMocker

STREAM = "user_external_ids"
USER_ID = "user_id:u2"


def _item(value: str, id_type: str = "user_id") -> dict[str, Any]:
    return external_id_record(STREAM).with_id(value).with_field(FieldPath("type"), id_type).build()


class TestUserExternalIds(ProfileStreamScenarios, TestCase):
    stream = STREAM
    query = {"limit": 200}

    def answer(self, external_id: str) -> tuple[DataResponseBuilder, list[dict[str, Any]]]:
        item = _item("u2")
        return DataResponseBuilder.of(STREAM).with_item(item), [{**item, "external_id": external_id}]

    @StrictHttpMocker()
    def test_a_second_page_is_asked_for_with_next_and_the_same_limit(self, http_mocker: StrictHttpMocker) -> None:
        first, second = _item("u2"), _item("jane@example.com", "email")
        http_mocker.get(self.request(USER_ID).build(), DataResponseBuilder.of(STREAM).with_item(first).with_next("cD0y+/a==").build())
        http_mocker.get(
            ProfileRequestBuilder.user("external_ids", USER_ID).with_limit(200).with_next("cD0y+/a==").build(),
            DataResponseBuilder.of(STREAM).with_item(second).build(),
        )

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID).build(), STREAM)

        assert records(output) == [{**first, "external_id": USER_ID}, {**second, "external_id": USER_ID}]

    @StrictHttpMocker()
    def test_null_data_means_no_records(self, http_mocker: StrictHttpMocker) -> None:
        http_mocker.get(self.request(USER_ID).build(), DataResponseBuilder.of(STREAM).with_null_data().build())

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID).build(), STREAM)

        assert records(output) == []

    @StrictHttpMocker()
    def test_a_refused_page_size_is_halved_for_the_rest_of_the_sync(self, http_mocker: StrictHttpMocker) -> None:
        refused = ErrorResponseBuilder.of(400, "limit must be between 1 and 100").build()
        http_mocker.get(self.request(USER_ID).build(), refused)
        for external_id in (USER_ID, "user_id:u3"):
            http_mocker.get(ProfileRequestBuilder.user("external_ids", external_id).with_limit(100).build(), DataResponseBuilder.of(STREAM).with_item(_item("u2")).build())

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID, "user_id:u3").with_field("max_concurrency", 1).build(), STREAM)

        assert [record["external_id"] for record in records(output)] == [USER_ID, "user_id:u3"]
