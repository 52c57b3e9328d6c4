"""Typed trait columns (issue 23): typed at discover from a sample, filled at read from the catalog.

A collision, a type conflict, a value that does not fit and a trait that appears after discover
each behave as the docs say: the trait stays exact in `traits`, nothing fails, the misfits are
counted. (Their DuckDB types, through PyAirbyte: integration_tests/test_warehouse_columns.py.)
"""

from __future__ import annotations

import pytest
from airbyte_cdk.models import Level
from airbyte_cdk.test.catalog_builder import CatalogBuilder, ConfiguredAirbyteStreamBuilder

from source_segment_profile.trait_columns import TraitColumns, column_name
from unit_tests.builders import Reply, config, traits_page
from unit_tests.conftest import run_discover, run_read

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

SAMPLE = {
    "user_id:u1": {"plan": "pro", "Plan Type": "gold", "age": 31, "ltv": 12.5, "vip": True, "signed_up": "2026-01-02T03:04:05Z",
                   "prefs": {"theme": "dark"}, "tags": ["a"], "mixed": 1, "Dup": 1, "dup": 2, "huge": 2**70, "nothing": None},
    "user_id:u2": {"plan": "free", "age": 40, "ltv": 3, "vip": False, "signed_up": "2026-02-03T04:05:06.789Z", "mixed": "one"},
}


def serve(api, profiles=SAMPLE) -> None:
    for external_id, traits in profiles.items():
        api.replies("user_traits", external_id, traits_page(traits))


def discovered(output, stream="user_traits") -> dict:
    (schema,) = [each.json_schema for each in output.catalog.catalog.streams if each.name == stream]
    return schema


def columns_of(schema: dict) -> dict[str, tuple[str, object]]:
    return {
        column: (declared["title"], declared["type"] if "format" not in declared else declared["format"])
        for column, declared in schema["properties"].items()
        if column.startswith("trait_")
    }


def test_discover_gives_one_typed_column_per_trait_of_the_sample(api):
    serve(api)

    output = run_discover(config(user_external_ids=list(SAMPLE)))

    assert columns_of(discovered(output)) == {
        "trait_plan": ("plan", ["null", "string"]),
        "trait_plan_type": ("Plan Type", ["null", "string"]),
        "trait_age": ("age", ["null", "integer"]),
        "trait_ltv": ("ltv", ["null", "number"]),  # 12.5 and 3: integers and numbers make a number
        "trait_vip": ("vip", ["null", "boolean"]),
        "trait_signed_up": ("signed_up", "date-time"),
        "trait_prefs": ("prefs", ["null", "object"]),
        "trait_tags": ("tags", ["null", "array"]),
    }
    assert discovered(output)["properties"]["traits"]  # the object stays
    (line,) = [line.log.message for line in output.logs if "typed trait columns" in line.log.message]
    assert "8 typed trait columns from 2 sampled profiles" in line
    for left_out in ("'mixed': no column type holds every sampled value (integer, string)", "'Dup': its column name trait_dup is also that of 'dup'",
                     "'huge': no column type holds every sampled value (integer beyond 64 bits)", "'nothing': every sampled value was null"):
        assert left_out in line
    assert len(api.requests_to("user_traits")) == 2  # one request per sampled profile


def test_the_sample_is_the_first_configured_ids_up_to_its_size_and_zero_turns_columns_off(api):
    serve(api)

    one = run_discover(config(user_external_ids=list(SAMPLE), trait_columns_sample_size=1))
    assert [request.path.rsplit("/", 2)[1] for request in api.requests_to("user_traits")] == ["user_id:u1"]
    # The one profile sampled had only an integer for `mixed`: the sample decides.
    assert columns_of(discovered(one))["trait_mixed"] == ("mixed", ["null", "integer"])

    off = run_discover(config(user_external_ids=list(SAMPLE), trait_columns_sample_size=0))
    assert columns_of(discovered(off)) == {}
    assert len(api.requests_to("user_traits")) == 1  # no request for the second discover


def test_trait_names_give_exactly_those_columns(api):
    serve(api)

    output = run_discover(config(user_external_ids=list(SAMPLE), trait_names=["age", "vip", "absent"]))

    assert set(columns_of(discovered(output))) == {"trait_age", "trait_vip"}
    assert any("'absent': no sampled profile had it" in line.log.message for line in output.logs)


def test_a_read_fills_the_columns_of_its_catalog_null_where_missing_or_not_fitting_and_counts_misfits(api):
    serve(api)
    schema = discovered(run_discover(config(user_external_ids=list(SAMPLE))))
    later = {"user_id:u3": {"age": "forty", "vip": True, "new_trait": 7, "signed_up": "not a date"}}
    serve(api, later)

    result = run_read(config(user_external_ids=["user_id:u1", "user_id:u3"]), ["user_traits"], catalog_schema=schema)

    records = {record["external_id"]: record for record in result.records()}
    first, third = records["user_id:u1"], records["user_id:u3"]
    assert (first["trait_age"], first["trait_ltv"], first["trait_vip"], first["trait_plan_type"]) == (31, 12.5, True, "gold")
    assert first["trait_signed_up"] == "2026-01-02T03:04:05Z" and first["trait_prefs"] == {"theme": "dark"}
    assert first["traits"] == SAMPLE["user_id:u1"]  # the object keeps every trait exactly
    # A value that does not fit leaves its column null (the CDK writes no null values) and stays
    # in traits; a trait new since discover has no column until the schema is refreshed.
    assert third.get("trait_age") is None and third["traits"]["age"] == "forty"
    assert third.get("trait_signed_up") is None and third.get("trait_plan") is None and third["trait_vip"] is True
    assert "trait_new_trait" not in third and third["traits"]["new_trait"] == 7
    (summary,) = [line for line in result.logs() if line.startswith("Summary user_traits")]
    assert "2 trait values did not fit their typed column (left null there, kept exact in 'traits')." in summary
    assert result.errors() == []


def test_a_sample_that_cannot_be_read_leaves_the_columns_out_with_a_warning_and_discover_succeeds(api):
    api.replies("user_traits", "user_id:u1", Reply.error(400))

    output = run_discover(config(user_external_ids=["user_id:u1"], max_retries=0))

    assert columns_of(discovered(output)) == {}
    assert any("no typed trait columns this time" in line.log.message for line in output.logs if line.log.level == Level.WARN)


def test_account_traits_sample_only_configured_accounts(api):
    api.replies("account_traits", "group_id:g1", traits_page({"employees": 12}))

    output = run_discover(config(user_external_ids=[], account_external_ids=["group_id:g1"], accounts_from_user_links=True))

    assert columns_of(discovered(output, "account_traits")) == {"trait_employees": ("employees", ["null", "integer"])}
    assert api.requests_to("user_links") == []  # linked accounts would take reading every user's links


@pytest.mark.parametrize(
    "trait, column",
    [("plan", "trait_plan"), ("Plan Type", "trait_plan_type"), ("a.b/c", "trait_a_b_c"), ("__x__", "trait_x"), ("Äpfel 2", "trait_pfel_2")],
)
def test_column_names_are_lower_case_letters_digits_and_underscores(trait, column):
    assert column_name(trait) == column


def test_columns_read_back_from_a_schema_are_the_columns_it_was_written_with():
    sampled = TraitColumns.from_sample(SAMPLE.values())

    assert TraitColumns.from_schema({"properties": sampled.schema_properties()}).columns == sampled.columns
