"""The profile id is one percent-encoded path segment (profile-api-facts.md, "Identifiers")."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from unit_tests.builders import ALL_STREAMS, ACCOUNT_STREAMS, config, metadata_body, page_of, traits_page
from unit_tests.conftest import run_read

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

ENCODINGS = [
    ("email:a+b@x.com", "email:a%2Bb%40x.com"),
    ("user_id:a/b", "user_id:a%2Fb"),
    ("user_id:what?x=1", "user_id:what%3Fx%3D1"),
    ("user_id:frag#1", "user_id:frag%231"),
    ("user_id:100%", "user_id:100%25"),
    ("user_id:100%2B", "user_id:100%252B"),
    ("anonymous_id:with space", "anonymous_id:with%20space"),
    ("email:zoë@例え.jp", "email:zo%C3%AB%40%E4%BE%8B%E3%81%88.jp"),
    ("user_id:a:b", "user_id:a:b"),
]


def request_paths(api) -> list[str]:
    return [urlsplit(request.url).path for request in api.seen]


@pytest.mark.parametrize("external_id, encoded", ENCODINGS, ids=[pair[1] for pair in ENCODINGS])
def test_email_and_special_character_ids_are_percent_encoded_as_one_path_segment(api, external_id, encoded):
    api.pages("user_traits", external_id, traits_page({"plan": "pro"}))

    result = run_read(config(user_external_ids=[external_id]), ["user_traits"])

    assert request_paths(api) == [f"/v1/spaces/spa_unit/collections/users/profiles/{encoded}/traits"]
    # Records carry the id as configured, not as sent.
    assert result.records() == [{"external_id": external_id, "traits": {"plan": "pro"}}]


@pytest.mark.parametrize("stream", ALL_STREAMS)
def test_every_stream_encodes_the_id_the_same_way(api, stream):
    collection = "accounts" if stream in ACCOUNT_STREAMS else "users"
    external_id = "email:a+b/c?d#e%f g@x.com"
    api.pages(stream, external_id, metadata_body() if stream == "user_metadata" else page_of(stream, 1))
    ids = {"account_external_ids": [external_id], "user_external_ids": []} if collection == "accounts" else {"user_external_ids": [external_id]}

    result = run_read(config(**ids), [stream])

    resource = urlsplit(api.seen[0].url).path.rsplit("/", 1)[1]
    assert request_paths(api) == [f"/v1/spaces/spa_unit/collections/{collection}/profiles/email:a%2Bb%2Fc%3Fd%23e%25f%20g%40x.com/{resource}"]
    assert [record["external_id"] for record in result.records()] == [external_id]


def test_the_space_id_is_one_encoded_segment_too(api):
    api.pages("user_traits", "user_id:u1", traits_page({}), space_id="spa%2Fx")

    run_read(config(space_id="spa/x"), ["user_traits"])

    assert request_paths(api) == ["/v1/spaces/spa%2Fx/collections/users/profiles/user_id:u1/traits"]


@pytest.mark.parametrize("region, host", [("us", "profiles.segment.com"), ("eu", "profiles.euw1.segment.com")])
def test_the_region_chooses_the_host(api, region, host):
    api.pages("user_traits", "user_id:u1", traits_page({}))

    run_read(config(region=region), ["user_traits"])

    assert [urlsplit(request.url).netloc for request in api.seen] == [host]
    assert urlsplit(api.seen[0].url).scheme == "https"


def test_api_base_url_overrides_the_region_host(api):
    run_read(config(region="eu", api_base_url="https://proxy.example:8443"), ["user_traits"])

    assert [urlsplit(request.url).netloc for request in api.seen] == ["proxy.example:8443"]
    assert urlsplit(api.seen[0].url).path == "/v1/spaces/spa_unit/collections/users/profiles/user_id:u1/traits"
