"""The access token never appears in any output (issue 4, "Secrets and privacy").

The canary holds `+`, `/` and `=`, so that a leak of its URL-encoded or base64 form (the Basic auth
header) is caught as well as the plain value.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest
from airbyte_cdk.models import SyncMode

from unit_tests.builders import Reply, config, data_page, event, external_id, traits_page
from unit_tests.conftest import assert_valid_record, catalog_for, check_status, events_state, output_text, run_discover, run_main, run_read, run_spec, write_json
from unit_tests.local_server import LocalProfileServer

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

CANARY = "canary+tok/en=="
BASIC = base64.b64encode(f"{CANARY}:".encode()).decode()
LEAK_FORMS = {
    "token": CANARY,
    "base64(token:)": BASIC,
    "base64 without padding": BASIC.rstrip("="),
    "url-encoded token": quote(CANARY, safe=""),
    "form-encoded token": quote_plus(CANARY),
    "token without padding": CANARY.rstrip("="),
}
EMAIL_ID = "email:jane.doe@example.com"


def assert_no_secret(text: str) -> None:
    assert text, "no output to inspect"
    for form, value in LEAK_FORMS.items():
        assert value not in text, f"the {form} leaked"


def canary_config(**overrides):
    return config(access_token=CANARY, **overrides)


def test_requests_authenticate_with_basic_token_and_empty_password(api):
    api.pages("user_traits", "user_id:u1", traits_page({}))

    run_read(canary_config(), ["user_traits"])

    assert api.seen[0].headers["Authorization"] == f"Basic {BASIC}"


def test_spec_output_holds_no_secret():
    output = run_spec()

    text = output_text(output)
    assert '"airbyte_secret": true' in text
    assert CANARY not in text and BASIC not in text


@pytest.mark.parametrize("answer", [traits_page({"plan": "pro"}), Reply.error(401), Reply.error(403), Reply.error(500)], ids=["200", "401", "403", "500"])
def test_check_output_holds_no_secret(api, answer):
    api.replies("user_traits", "user_id:u1", answer)

    _, _, output = check_status(canary_config())

    assert_no_secret(output_text(output))


def test_discover_output_holds_no_secret(api):
    output = run_discover(canary_config())

    assert len(output.catalog.catalog.streams) == 9
    assert_no_secret(output_text(output))


@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
def test_read_output_holds_no_secret_on_success_and_on_every_failure(api, debug):
    api.pages("user_traits", "user_id:u1", traits_page({"plan": "pro"}, next="b"), traits_page({"b": 1}))
    api.replies("user_events", "user_id:u1", Reply.error(500))
    api.replies("user_external_ids", "user_id:u1", Reply.error(401))
    # An upstream that echoes the credentials it got must not carry them into an error trace.
    api.replies("user_links", "user_id:u1", Reply(400, f"bad credentials {CANARY} / Basic {BASIC}"))
    api.replies("user_metadata", "user_id:u1", Reply(200, f"<html>{BASIC}</html>"))

    result = run_read(canary_config(max_retries=1), ["user_traits", "user_events", "user_external_ids", "user_links", "user_metadata"], debug=debug)

    assert len(result.records()) == 1
    assert {error.stream_descriptor.name for error in result.errors() if error.stream_descriptor} == {
        "user_events",
        "user_external_ids",
        "user_links",
        "user_metadata",
    }
    assert_no_secret(result.all_text())


def test_incremental_read_and_its_state_hold_no_secret(api):
    api.pages("user_events", "user_id:u1", data_page([event("m1")]))

    result = run_read(canary_config(), ["user_events"], SyncMode.incremental, state=events_state({"state_version": 1, "profiles": {}}))

    assert result.states()
    assert_no_secret(result.all_text())


# --- the real command line, --debug, against a local server -------------------------------


def test_command_line_read_with_debug_leaks_neither_token_nor_email(tmp_path):
    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

    server = LocalProfileServer()
    server.replies("user_traits", EMAIL_ID, traits_page({"plan": "pro"}, next="b"), traits_page({"b": 1}))
    server.replies("user_traits", "user_id:gone", Reply.error(404))
    server.replies("user_events", EMAIL_ID, Reply.error(500))
    server.replies("user_external_ids", EMAIL_ID, Reply.error(401))
    server.replies("user_links", EMAIL_ID, Reply(400, f"echo {CANARY}"))
    streams = ["user_traits", "user_events", "user_external_ids", "user_links"]

    with server.running():
        settings = canary_config(
            api_base_url=server.url, user_external_ids=[EMAIL_ID, "user_id:gone"], max_retries=1, requests_per_second=1000
        )
        catalog = ConfiguredAirbyteCatalogSerializer.dump(catalog_for(streams))
        completed = run_main(
            "read",
            "--config",
            write_json(tmp_path / "config.json", settings),
            "--catalog",
            write_json(tmp_path / "catalog.json", catalog),
            "--debug",
            folder=tmp_path,
        )

    output = completed.stdout + completed.stderr
    assert completed.returncode != 0  # three streams failed
    records = [message["record"] for message in map(json.loads, filter(None, completed.stdout.splitlines())) if message.get("type") == "RECORD"]
    assert [(record["stream"], record["data"]["external_id"]) for record in records] == [("user_traits", EMAIL_ID)]
    for record in records:
        assert_valid_record(record["stream"], record["data"])
    assert "Debug logs enabled" in output
    assert all(headers.get("Authorization") == f"Basic {BASIC}" for _, headers in server.seen)
    assert_no_secret(output)
    # Records keep the id as configured; every other line (logs, traces, debug output) masks it.
    not_records = [line for line in output.splitlines() if '"type":"RECORD"' not in line.replace(" ", "")]
    assert "email:j***@example.com" in "\n".join(not_records)  # the summary and errors name it, masked
    for line in not_records:
        assert "jane.doe" not in line


def test_command_line_check_with_a_rejected_token_leaks_nothing(tmp_path):
    server = LocalProfileServer().replies("user_traits", "user_id:u1", Reply.error(401))

    with server.running():
        completed = run_main(
            "check", "--config", write_json(tmp_path / "config.json", canary_config(api_base_url=server.url)), "--debug", folder=tmp_path
        )

    assert '"FAILED"' in completed.stdout
    assert_no_secret(completed.stdout + completed.stderr)


def test_command_line_spec_and_discover_leak_nothing(tmp_path):
    config_path = write_json(tmp_path / "config.json", canary_config())

    spec = run_main("spec", folder=tmp_path)
    discovered = run_main("discover", "--config", config_path, "--debug", folder=tmp_path)

    assert '"SPEC"' in spec.stdout and '"CATALOG"' in discovered.stdout
    assert_no_secret(spec.stdout + spec.stderr + discovered.stdout + discovered.stderr)


def test_external_id_records_are_not_masked(api):
    """Masking is for logs: records keep the data they were read for."""
    api.pages("user_external_ids", EMAIL_ID, data_page([external_id("jane.doe@example.com", type="email")]))

    result = run_read(config(user_external_ids=[EMAIL_ID]), ["user_external_ids"])

    assert result.records()[0]["external_id"] == EMAIL_ID
    assert result.records()[0]["id"] == "jane.doe@example.com"
