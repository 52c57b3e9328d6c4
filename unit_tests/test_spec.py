"""The setup form (issue 8): every property documented, ordered, grouped; secrets marked; no anyOf/allOf."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from source_segment_profile.config import parse_config
from unit_tests.builders import config
from unit_tests.conftest import REPO_ROOT, run_spec

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

SPEC = json.loads((REPO_ROOT / "source_segment_profile" / "spec.json").read_text())
CONNECTION = SPEC["connectionSpecification"]
PROPERTIES = CONNECTION["properties"]
ESSENTIALS = ["space_id", "access_token", "region", "user_external_ids", "account_external_ids"]
TUNING = [
    "api_base_url",
    "requests_per_second",
    "max_concurrency",
    "request_timeout_seconds",
    "max_retries",
    "rate_limit_max_wait_minutes",
    "events_lookback_hours",
    "page_size",
]


def walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_the_spec_command_emits_spec_json():
    output = run_spec()

    (message,) = output.spec_messages
    assert message.spec.connectionSpecification == CONNECTION
    assert message.spec.documentationUrl


def test_the_spec_is_a_valid_draft_07_schema():
    jsonschema.Draft7Validator.check_schema(CONNECTION)


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_every_property_has_title_description_order_and_examples(name):
    prop = PROPERTIES[name]
    assert isinstance(prop.get("title"), str) and prop["title"].strip()
    assert isinstance(prop.get("description"), str) and len(prop["description"]) >= 30
    assert isinstance(prop.get("order"), int)
    assert isinstance(prop.get("examples"), list) and prop["examples"]


@pytest.mark.parametrize("name", sorted(PROPERTIES))
def test_every_example_is_valid_for_its_property(name):
    schema = {key: value for key, value in PROPERTIES[name].items() if key not in ("examples", "order", "group", "airbyte_secret", "always_show")}
    for example in PROPERTIES[name]["examples"]:
        jsonschema.Draft7Validator(schema).validate(example)


def test_orders_are_unique_and_the_essentials_come_first():
    orders = [prop["order"] for prop in PROPERTIES.values()]
    assert len(orders) == len(set(orders))
    by_order = sorted(PROPERTIES, key=lambda name: PROPERTIES[name]["order"])
    assert by_order[: len(ESSENTIALS)] == ESSENTIALS


def test_there_is_no_any_of_or_all_of_anywhere():
    for node in walk(SPEC):
        assert "anyOf" not in node and "allOf" not in node


def test_the_access_token_is_a_secret_and_nothing_else_needs_to_be():
    secrets = [name for name, prop in PROPERTIES.items() if prop.get("airbyte_secret")]
    assert secrets == ["access_token"]
    assert CONNECTION["required"] == ["space_id", "access_token"]


@pytest.mark.parametrize("name", ["space_id", "access_token"])
def test_credentials_say_where_to_find_them_in_segment(name):
    assert "Unify settings > API access" in PROPERTIES[name]["description"]


@pytest.mark.parametrize("name", ["user_external_ids", "account_external_ids"])
def test_id_lists_validate_each_entry_and_explain_large_lists(name):
    prop = PROPERTIES[name]
    items = prop["items"]
    assert items["pattern"] and items["pattern_descriptor"] == "type:value"
    pattern = re.compile(items["pattern"])
    for good in ("user_id:abc123", "email:a+b@x.com", "group_id:acme", "anonymous_id:with space"):
        assert pattern.search(good), good
    for bad in ("abc123", ":abc", "user_id:", "jane@example.com"):
        assert not pattern.search(bad), bad
    assert "thousands" in prop["description"]


@pytest.mark.parametrize("name", TUNING)
def test_tuning_options_are_advanced_with_their_default_and_unit(name):
    prop = PROPERTIES[name]
    assert prop.get("group") == "advanced"
    assert "Default" in prop["description"]
    if prop["type"] in ("number", "integer"):
        assert "Unit" in prop["description"]
        assert re.search(rf"Default: {re.escape(str(prop['default']))}\b", prop["description"])


def test_every_group_used_is_declared():
    declared = {group["id"] for group in CONNECTION["groups"]}
    assert {prop["group"] for prop in PROPERTIES.values() if "group" in prop} <= declared


def test_documented_defaults_are_the_connector_defaults():
    parsed = parse_config(config())
    documented = {name: PROPERTIES[name]["default"] for name in TUNING if "default" in PROPERTIES[name]}
    assert documented == {
        "requests_per_second": parsed.requests_per_second,
        "max_concurrency": parsed.max_concurrency,
        "request_timeout_seconds": parsed.request_timeout_seconds,
        "max_retries": parsed.max_retries,
        "rate_limit_max_wait_minutes": parsed.rate_limit_max_wait_seconds / 60,
        "events_lookback_hours": parsed.events_lookback_seconds / 3600,
        "page_size": parsed.page_size,
    }
    assert PROPERTIES["region"]["default"] == "us"
    assert parsed.base_url == "https://profiles.segment.com"


def test_the_deprecated_lookback_in_minutes_is_hidden_and_has_no_default():
    """Older configs still carry events_lookback_minutes; a default would be filled into every new config."""
    prop = PROPERTIES["events_lookback_minutes"]
    assert prop.get("group") == "advanced" and prop.get("airbyte_hidden") is True
    assert "default" not in prop
    assert "Deprecated" in prop["description"] and PROPERTIES["events_lookback_hours"]["title"] in prop["description"]


def test_the_lookback_maximum_is_the_14_days_the_api_keeps_in_both_units():
    assert PROPERTIES["events_lookback_hours"]["maximum"] == 14 * 24
    assert PROPERTIES["events_lookback_minutes"]["maximum"] == 14 * 24 * 60
