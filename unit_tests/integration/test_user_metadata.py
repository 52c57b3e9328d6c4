"""user_metadata: one flat record per user; not paginated, so no query at all.

https://segment.com/docs/unify/profile-api/#get-user-metadata
"""

from __future__ import annotations

from typing import Any
from unittest import TestCase

from unit_tests.integration.config import ConfigBuilder
from unit_tests.integration.profile_stream_scenarios import ProfileStreamScenarios
from unit_tests.integration.request_builders import ProfileRequestBuilder
from unit_tests.integration.response_builders import MetadataResponseBuilder
from unit_tests.integration.source_run import read_streams, records
from unit_tests.integration.strict_http_mocker import StrictHttpMocker

STREAM = "user_metadata"
USER_ID = "user_id:u2"


class TestUserMetadata(ProfileStreamScenarios, TestCase):
    stream = STREAM
    query: dict = {}  # not paginated: no `limit`

    def answer(self, external_id: str) -> tuple[MetadataResponseBuilder, list[dict[str, Any]]]:
        record = {"segment_id": "use_1", "created_at": "2026-10-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z", "external_id": external_id}
        return MetadataResponseBuilder.of("use_1"), [record]

    @StrictHttpMocker()
    def test_metadata_wrapped_as_segment_s_docs_show_it_becomes_the_same_flat_record(self, http_mocker: StrictHttpMocker) -> None:
        http_mocker.get(ProfileRequestBuilder.user("metadata", USER_ID).build(), MetadataResponseBuilder.of("use_1").wrapped(first_message_id="m0").build())

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID).build(), STREAM)

        assert records(output) == [
            {"segment_id": "use_1", "created_at": "2026-10-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z", "first_message_id": "m0", "external_id": USER_ID}
        ]
