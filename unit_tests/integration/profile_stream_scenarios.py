"""What every profile stream does alike, tested once and run for each stream.

A stream's TestCase mixes this in and says what differs: the stream, the exact query of a
profile's first request, and an answer with the records it must become. Each test
mocks with a fresh StrictHttpMocker (context-manager form: a decorator here would be one mocker
shared by every stream's copy of the test).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from airbyte_cdk.models import FailureType

from unit_tests.integration.config import ConfigBuilder
from unit_tests.integration.request_builders import ProfileRequestBuilder
from unit_tests.integration.response_builders import ErrorResponseBuilder, ResponseBuilder
from unit_tests.integration.source_run import final_status, read_streams, records, stream_error, warnings
from unit_tests.integration.strict_http_mocker import StrictHttpMocker

# The two profiles each test reads, per collection, and how the first shows in warnings (masked,
# with its place in the config). The first has characters that must be percent-encoded in the path.
PROFILES = {
    "users": (("email:jane+news@example.com", "user_id:u2"), "email:j***@example.com (user_external_ids[0])"),
    "accounts": (("group_id:acme/eu", "group_id:globex"), "group_id:a***eu (account_external_ids[0])"),
}


class ProfileStreamScenarios:
    stream: ClassVar[str]  # "<user|account>_<resource>"
    query: ClassVar[Mapping[str, Any]]  # the exact query of a profile's first request
    waits: list[float]  # the conftest's recorder

    @property
    def collection(self) -> str:
        return "accounts" if self.stream.startswith("account_") else "users"

    @property
    def profile_ids(self) -> tuple[str, str]:
        return PROFILES[self.collection][0]

    def request(self, external_id: str) -> ProfileRequestBuilder:
        """The first (or only) request of a profile."""
        request = ProfileRequestBuilder(self.collection, self.stream.partition("_")[2], external_id)
        for name, value in self.query.items():
            request = request.with_param(name, value)
        return request

    def answer(self, external_id: str) -> tuple[ResponseBuilder, list[dict[str, Any]]]:
        """A complete answer for the profile, and the records it must become."""
        raise NotImplementedError

    def config(self, *external_ids: str) -> ConfigBuilder:
        """A config reading `external_ids` (default: both profiles) as user or account ids."""
        ids = external_ids or self.profile_ids
        if self.collection == "accounts":
            return ConfigBuilder().with_account_ids(*ids)
        return ConfigBuilder().with_user_ids(*ids)

    def test_full_refresh_emits_every_profile_s_records_with_its_external_id(self) -> None:
        expected = []
        with StrictHttpMocker() as http_mocker:
            for external_id in self.profile_ids:
                response, profile_records = self.answer(external_id)
                http_mocker.get(self.request(external_id).build(), response.build())
                expected.extend(profile_records)

            output = read_streams(self.config().build(), self.stream)

        assert sorted(records(output), key=repr) == sorted(expected, key=repr)
        assert final_status(output, self.stream) == "COMPLETE"

    def test_a_profile_answering_404_is_skipped_with_a_warning_and_the_others_are_read(self) -> None:
        missing, found = self.profile_ids
        response, expected = self.answer(found)
        with StrictHttpMocker() as http_mocker:
            http_mocker.get(self.request(missing).build(), ErrorResponseBuilder.of(404).with_request_id("req-404").build())
            http_mocker.get(self.request(found).build(), response.build())

            output = read_streams(self.config().build(), self.stream)

        assert records(output) == expected
        skipped = [line for line in warnings(output) if "answered 404" in line]
        assert len(skipped) == 1
        assert PROFILES[self.collection][1] in skipped[0] and "req-404" in skipped[0]
        assert final_status(output, self.stream) == "COMPLETE"

    def test_every_profile_answering_404_fails_the_stream_with_a_config_error_naming_space_and_region(self) -> None:
        with StrictHttpMocker() as http_mocker:
            for external_id in self.profile_ids:
                http_mocker.get(self.request(external_id).build(), ErrorResponseBuilder.of(404).build())

            output = read_streams(self.config().build(), self.stream, expect_failure=True)

        error = stream_error(output, self.stream)
        assert error.failure_type == FailureType.config_error
        assert f"None of the 2 profiles {self.stream} looked up was found in space 'spa_unit' (region us, profiles.segment.com)" in error.message
        assert records(output) == []

    def test_a_429_is_waited_out_for_its_retry_after_then_the_records_are_delivered(self) -> None:
        external_id = self.profile_ids[1]
        response, expected = self.answer(external_id)
        with StrictHttpMocker() as http_mocker:
            http_mocker.get(self.request(external_id).build(), [ErrorResponseBuilder.of(429).with_retry_after("1").build(), response.build()])

            output = read_streams(self.config(external_id).build(), self.stream)

        assert records(output) == expected
        assert any(0.9 <= wait <= 1.0 for wait in self.waits), f"no wait of Retry-After's 1 s in {self.waits}"

    def test_a_5xx_is_retried_after_a_backoff_then_the_records_are_delivered(self) -> None:
        external_id = self.profile_ids[1]
        response, expected = self.answer(external_id)
        with StrictHttpMocker() as http_mocker:
            http_mocker.get(self.request(external_id).build(), [ErrorResponseBuilder.of(503).build(), response.build()])

            output = read_streams(self.config(external_id).build(), self.stream)

        assert records(output) == expected
        # The first retry's backoff: 0.5 s with jitter (api_client.exponential_backoff).
        assert any(0.25 <= wait <= 0.5 for wait in self.waits), f"no retry backoff in {self.waits}"
