"""account_traits and account_external_ids: the configured accounts, and (with
`accounts_from_user_links`) every account the users link to, each read once.

https://segment.com/docs/unify/profile-api/#get-account-traits
https://segment.com/docs/unify/profile-api/#get-account-external-ids
"""

from __future__ import annotations

from typing import Any
from unittest import TestCase

from unit_tests.integration.config import ConfigBuilder
from unit_tests.integration.profile_stream_scenarios import ProfileStreamScenarios
from unit_tests.integration.request_builders import ProfileRequestBuilder
from unit_tests.integration.response_builders import DataResponseBuilder, TraitsResponseBuilder, external_id_record, link_record
from unit_tests.integration.source_run import read_streams, records
from unit_tests.integration.strict_http_mocker import StrictHttpMocker

GROUP_ID = "group_id:globex"
# The traits of the template (resource/http/response/account_traits.json).
TEMPLATE_TRAITS = {"industry": "Retail", "name": "Acme Inc.", "seats": 40}


def _account_id_item(value: str) -> dict[str, Any]:
    return external_id_record("account_external_ids").with_id(value).build()


class TestAccountTraits(ProfileStreamScenarios, TestCase):
    stream = "account_traits"
    query = {"limit": 200, "verbose": "true"}  # each trait with its last update and source

    def answer(self, external_id: str) -> tuple[TraitsResponseBuilder, list[dict[str, Any]]]:
        return TraitsResponseBuilder.of(self.stream), [{"external_id": external_id, "traits": TEMPLATE_TRAITS}]

    @StrictHttpMocker()
    def test_pages_are_followed_with_next_and_merged_into_one_record(self, http_mocker: StrictHttpMocker) -> None:
        http_mocker.get(self.request(GROUP_ID).build(), TraitsResponseBuilder.of(self.stream).with_traits({"industry": "Retail"}).with_next("name").build())
        http_mocker.get(
            ProfileRequestBuilder.account("traits", GROUP_ID).with_limit(200).with_param("verbose", "true").with_next("name").build(),
            TraitsResponseBuilder.of(self.stream).with_traits({"name": "Globex"}).build(),
        )

        output = read_streams(ConfigBuilder().with_account_ids(GROUP_ID).build(), self.stream)

        assert records(output) == [{"external_id": GROUP_ID, "traits": {"industry": "Retail", "name": "Globex"}}]


class TestAccountExternalIds(ProfileStreamScenarios, TestCase):
    stream = "account_external_ids"
    query = {"limit": 200}

    def answer(self, external_id: str) -> tuple[DataResponseBuilder, list[dict[str, Any]]]:
        item = _account_id_item("acme")
        return DataResponseBuilder.of(self.stream).with_item(item), [{**item, "external_id": external_id}]

    @StrictHttpMocker()
    def test_a_second_page_is_asked_for_with_next_and_the_same_limit(self, http_mocker: StrictHttpMocker) -> None:
        first, second = _account_id_item("globex"), _account_id_item("globex-eu")
        http_mocker.get(self.request(GROUP_ID).build(), DataResponseBuilder.of(self.stream).with_item(first).with_next("cD0y+/a==").build())
        http_mocker.get(
            ProfileRequestBuilder.account("external_ids", GROUP_ID).with_limit(200).with_next("cD0y+/a==").build(),
            DataResponseBuilder.of(self.stream).with_item(second).build(),
        )

        output = read_streams(ConfigBuilder().with_account_ids(GROUP_ID).build(), self.stream)

        assert records(output) == [{**first, "external_id": GROUP_ID}, {**second, "external_id": GROUP_ID}]


class TestAccountsFromUserLinks(TestCase):
    """Each user's links are read once per sync, whether user_links is selected or not."""

    def _mock_links_and_linked_accounts(self, http_mocker: StrictHttpMocker) -> None:
        # Two users link to the same account (acme), one also to globex; each account is read once.
        links = {"user_id:u1": ["acme", "globex"], "user_id:u2": ["acme"]}
        for user_id, group_ids in links.items():
            page = DataResponseBuilder.of("user_links")
            for group_id in group_ids:
                page.with_record(link_record().with_id(group_id))
            http_mocker.get(ProfileRequestBuilder.user("links", user_id).with_limit(20).build(), page.build())
        for group_id in ("group_id:acme", "group_id:globex"):
            http_mocker.get(ProfileRequestBuilder.account("traits", group_id).with_limit(200).with_param("verbose", "true").build(), TraitsResponseBuilder.of("account_traits").build())

    def _config(self) -> dict[str, Any]:
        return ConfigBuilder().with_user_ids("user_id:u1", "user_id:u2").with_field("accounts_from_user_links", True).build()

    @StrictHttpMocker()
    def test_the_accounts_user_links_read_are_read_once_each(self, http_mocker: StrictHttpMocker) -> None:
        self._mock_links_and_linked_accounts(http_mocker)

        output = read_streams(self._config(), "account_traits", "user_links")

        assert len(records(output, "user_links")) == 3
        assert sorted(record["external_id"] for record in records(output, "account_traits")) == ["group_id:acme", "group_id:globex"]

    @StrictHttpMocker()
    def test_without_user_links_selected_the_links_are_read_for_the_accounts_and_not_emitted(self, http_mocker: StrictHttpMocker) -> None:
        self._mock_links_and_linked_accounts(http_mocker)

        output = read_streams(self._config(), "account_traits")

        assert records(output, "user_links") == []
        assert sorted(record["external_id"] for record in records(output)) == ["group_id:acme", "group_id:globex"]

    @StrictHttpMocker()
    def test_two_account_streams_share_one_reading_of_the_links_and_a_configured_account_also_linked_is_read_once(
        self, http_mocker: StrictHttpMocker
    ) -> None:
        self._mock_links_and_linked_accounts(http_mocker)
        for group_id in ("group_id:acme", "group_id:globex"):
            http_mocker.get(ProfileRequestBuilder.account("external_ids", group_id).with_limit(200).build(), DataResponseBuilder.of("account_external_ids").with_item(_account_id_item("x")).build())

        config = ConfigBuilder().with_user_ids("user_id:u1", "user_id:u2").with_account_ids("group_id:acme").with_field("accounts_from_user_links", True)
        output = read_streams(config.build(), "account_traits", "account_external_ids")

        for stream in ("account_traits", "account_external_ids"):
            assert sorted(record["external_id"] for record in records(output, stream)) == ["group_id:acme", "group_id:globex"]
