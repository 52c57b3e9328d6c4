"""user_links: the profiles a user links to, 20 a page; `linked_external_id` names the linked profile.

https://segment.com/docs/unify/profile-api/#get-user-links
"""

from __future__ import annotations

from typing import Any
from unittest import TestCase

from unit_tests.integration.config import ConfigBuilder
from unit_tests.integration.profile_stream_scenarios import ProfileStreamScenarios
from unit_tests.integration.request_builders import ProfileRequestBuilder
from unit_tests.integration.response_builders import DataResponseBuilder, link_record
from unit_tests.integration.source_run import read_streams, records
from unit_tests.integration.strict_http_mocker import StrictHttpMocker

STREAM = "user_links"
USER_ID = "user_id:u2"


def _link_to(group_id: str) -> dict[str, Any]:
    return link_record().with_id(group_id).build()


class TestUserLinks(ProfileStreamScenarios, TestCase):
    stream = STREAM
    query = {"limit": 20}  # Segment's docs: at most 20 links a page

    def answer(self, external_id: str) -> tuple[DataResponseBuilder, list[dict[str, Any]]]:
        link = _link_to("acme")
        return DataResponseBuilder.of(STREAM).with_item(link), [{**link, "external_id": external_id, "linked_external_id": "group_id:acme"}]

    @StrictHttpMocker()
    def test_a_second_page_is_asked_for_with_next_and_the_links_limit_of_20(self, http_mocker: StrictHttpMocker) -> None:
        http_mocker.get(self.request(USER_ID).build(), DataResponseBuilder.of(STREAM).with_item(_link_to("acme")).with_next("cD0y+/a==").build())
        http_mocker.get(
            ProfileRequestBuilder.user("links", USER_ID).with_limit(20).with_next("cD0y+/a==").build(),
            DataResponseBuilder.of(STREAM).with_item(_link_to("globex")).build(),
        )

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID).build(), STREAM)

        assert [record["linked_external_id"] for record in records(output)] == ["group_id:acme", "group_id:globex"]

    @StrictHttpMocker()
    def test_linked_external_id_is_the_smallest_type_and_id_of_the_linked_profile(self, http_mocker: StrictHttpMocker) -> None:
        link = _link_to("zeta")
        link["external_ids"].append({**link["external_ids"][0], "type": "account_id", "id": "a9"})
        http_mocker.get(self.request(USER_ID).build(), DataResponseBuilder.of(STREAM).with_item(link).build())

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID).build(), STREAM)

        assert records(output) == [{**link, "external_id": USER_ID, "linked_external_id": "account_id:a9"}]
