"""The mocker these tests stand on fails a test for a request nobody mocked and for a mocked
request sent more or fewer times than it has answers, whatever the connector makes of it."""

from __future__ import annotations

import pytest
from airbyte_cdk.test.mock_http import HttpMocker

from unit_tests.integration.config import ConfigBuilder
from unit_tests.integration.request_builders import ProfileRequestBuilder
from unit_tests.integration.response_builders import ErrorResponseBuilder, TraitsResponseBuilder
from unit_tests.integration.source_run import read_streams
from unit_tests.integration.strict_http_mocker import StrictHttpMocker

U1_TRAITS = ProfileRequestBuilder.user("traits", "user_id:u1").with_limit(200).with_param("verbose", "true").build()
TWO_USERS = ConfigBuilder().with_user_ids("user_id:u1", "user_id:u2").build()


def test_a_request_nobody_mocked_fails_the_test_though_the_connector_reports_it_as_a_failed_stream():
    with pytest.raises(AssertionError, match=r"unexpected request: GET .*/profiles/user_id:u2/traits\?verbose=true&limit=200"):
        with StrictHttpMocker() as http_mocker:
            http_mocker.get(U1_TRAITS, TraitsResponseBuilder.of("user_traits").build())
            read_streams(TWO_USERS, "user_traits", expect_failure=True)


def test_the_cdk_s_own_mocker_lets_that_test_pass():
    """Why StrictHttpMocker exists: requests-mock's NoMockAddress never reaches the test. Should
    this start to fail, the CDK catches it now, and StrictHttpMocker's first check can go."""
    with HttpMocker() as http_mocker:
        http_mocker.get(U1_TRAITS, TraitsResponseBuilder.of("user_traits").build())
        read_streams(TWO_USERS, "user_traits", expect_failure=True)


def test_a_mocked_request_never_sent_fails_the_test():
    with pytest.raises(AssertionError, match=r"user_id:u3/traits.* was sent 0 times, mocked with 1 answers"):
        with StrictHttpMocker() as http_mocker:
            http_mocker.get(U1_TRAITS, TraitsResponseBuilder.of("user_traits").build())
            http_mocker.get(ProfileRequestBuilder.user("traits", "user_id:u3").with_limit(200).with_param("verbose", "true").build(), TraitsResponseBuilder.of("user_traits").build())
            read_streams(ConfigBuilder().with_user_ids("user_id:u1").build(), "user_traits")


def test_a_mocked_request_sent_more_often_than_answered_fails_the_test():
    with pytest.raises(AssertionError, match="was sent 3 times, mocked with 1 answers"):
        with StrictHttpMocker() as http_mocker:
            http_mocker.get(U1_TRAITS, ErrorResponseBuilder.of(500).build())
            read_streams(ConfigBuilder().with_user_ids("user_id:u1").with_field("max_retries", 2).build(), "user_traits", expect_failure=True)
