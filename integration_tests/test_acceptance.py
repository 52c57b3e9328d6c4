"""Airbyte's standard tests as Airbyte runs them, and what CAT checked from integration_tests/ besides.

`airbyte-cdk connector test` runs the CDK's standard tests for sources (spec, check with a good and
a bad config, discover, a full-refresh read of all seven streams, a bad catalog, and the image
tests) on a copy of this folder, as `acceptance-test-config.yml` configures them, against the
emulator that `integration_tests.acceptance` starts for the session. The tests below it cover what
the 7.39.1 standard tests do not: the records of a read compared with expected_records.jsonl, and
a read from abnormal_state.json. They run the connector's CLI, as Airbyte does, and parse its
output with the standard library (exact integers beyond 64 bits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from integration_tests.acceptance import INTEGRATION_TESTS, NO_DOCKER_ENGINE, docker_engine_problem, write_live_configs
from integration_tests.connector_cli import STREAMS, run_connector
from integration_tests.connector_folder import copy_as_connector_folder
from integration_tests.generate_expected_records import FAR_FUTURE, render_files
from integration_tests.ground_truth import as_multiset
from source_segment_profile.config import parse_timestamp
from source_segment_profile.read_through_state import profiles_read_through
from source_segment_profile.masking import profile_state_key

# What must pass whatever the machine: every standard test but the image tests, for the configs
# acceptance-test-config.yml lists (sample_config everywhere, invalid_config under `connection`).
STANDARD_TESTS_PASSING = {
    "test_spec",
    "test_check['sample_config' Test Scenario]",
    "test_check['invalid_config' Test Scenario]",
    "test_config_matches_spec['sample_config' Test Scenario]",
    "test_discover['sample_config' Test Scenario]",
    "test_basic_read['sample_config' Test Scenario]",
    "test_fail_read_with_bad_catalog['sample_config' Test Scenario]",
}
# The CDK's own skip of a test whose command a config does not run (invalid_config is only for check).
NOT_RUN_FOR_CONFIG = "does not run for scenario 'invalid_config'"


def junit_outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """Each test case of a JUnit XML report: (passed, skipped, failure or error; message)."""
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        verdict = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        outcomes[case.get("name")] = ("passed", "") if verdict is None else (verdict.tag, verdict.get("message", ""))
    return outcomes


def test_airbyte_cdk_connector_test_passes_with_only_image_tests_skipped(acceptance_emulator, tmp_path):
    folder = copy_as_connector_folder(tmp_path)
    write_live_configs(folder / "integration_tests", acceptance_emulator.url)
    command = [str(Path(sys.executable).parent / "airbyte-cdk"), "connector", "test", str(folder)]
    environment = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    completed = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)

    report = folder / "build" / "test-results" / "standard-tests-junit.xml"
    assert report.exists(), completed.stdout[-4000:] + completed.stderr[-2000:]
    outcomes = junit_outcomes(report)
    failed = {name: message for name, (outcome, message) in outcomes.items() if outcome in ("failure", "error")}
    assert completed.returncode == 0 and not failed, f"{failed}\n{completed.stdout[-4000:]}"
    assert STANDARD_TESTS_PASSING <= {name for name, (outcome, _) in outcomes.items() if outcome == "passed"}
    skipped = {name: message for name, (outcome, message) in outcomes.items() if outcome == "skipped"}
    image_tests = {name for name in outcomes if name.startswith("test_docker_image")}
    assert all(NOT_RUN_FOR_CONFIG in message for name, message in skipped.items() if name not in image_tests)
    if docker_engine_problem():
        assert {name for name in image_tests if NO_DOCKER_ENGINE in skipped.get(name, "")} == image_tests


def load_json(name: str) -> Any:
    return json.loads((INTEGRATION_TESTS / name).read_text())


def expected_records_by_stream() -> dict[str, list[dict[str, Any]]]:
    expected: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in (INTEGRATION_TESTS / "expected_records.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        expected[record["stream"]].append(record["data"])
    return expected


def test_read_emits_exactly_the_expected_records(live_sample_config, tmp_path):
    run = run_connector("read", tmp_path, live_sample_config, load_json("configured_catalog.json"))

    assert run.returncode == 0 and run.errors == [], run.stderr[-2000:] + "\n".join(run.logs[-20:])
    expected = expected_records_by_stream()
    assert set(expected) == set(STREAMS)
    for stream in STREAMS:
        missing = as_multiset(expected[stream]) - as_multiset(run.records[stream])
        unexpected = as_multiset(run.records[stream]) - as_multiset(expected[stream])
        assert not missing and not unexpected, (
            f"{stream}: {sum(missing.values())} expected records missing, {sum(unexpected.values())} unexpected; "
            f"first missing: {next(iter(missing), None)}; first unexpected: {next(iter(unexpected), None)}"
        )


def test_read_from_abnormal_state_emits_no_event_and_reads_every_profile_through_the_api_clock(
    acceptance_emulator, live_sample_config, tmp_path
):
    state = load_json("abnormal_state.json")
    assert state[0]["stream"]["stream_state"]["read_through"][0]["watermark"] == FAR_FUTURE
    run = run_connector("read", tmp_path, live_sample_config, load_json("configured_catalog.json"), state=state)

    assert run.returncode == 0 and run.errors == [], run.stderr[-2000:]
    assert run.records["user_events"] == []
    assert run.records["user_traits"], "full-refresh streams are read whatever the events state"
    # Each profile read is now read through this sync's watermark, taken from the API's clock:
    # never later than the API's now, whatever a past state claimed.
    final = run.last_state_of("user_events")["stream"]["stream_state"]
    (entry,) = final["read_through"]
    assert set(profiles_read_through(final)) == {profile_state_key(profile) for profile in live_sample_config["user_external_ids"]}
    api_clock = parse_timestamp(acceptance_emulator.clock())
    assert api_clock - timedelta(minutes=10) <= parse_timestamp(entry["watermark"]) <= api_clock


def test_configured_catalog_selects_every_discovered_stream_in_its_sync_modes(live_sample_config, tmp_path):
    run = run_connector("discover", tmp_path, live_sample_config)
    (catalog,) = [message["catalog"] for message in run.messages if message["type"] == "CATALOG"]
    discovered = {stream["name"]: stream for stream in catalog["streams"]}
    configured = load_json("configured_catalog.json")["streams"]

    assert [entry["stream"]["name"] for entry in configured] == list(STREAMS)
    assert set(discovered) == set(STREAMS)
    for entry in configured:
        stream = discovered[entry["stream"]["name"]]
        assert entry["primary_key"] == stream["source_defined_primary_key"]
        assert entry["sync_mode"] in stream["supported_sync_modes"]
        if "incremental" in stream["supported_sync_modes"]:
            assert (entry["sync_mode"], entry["destination_sync_mode"]) == ("incremental", "append_dedup")
            assert entry["cursor_field"] == stream["default_cursor_field"]
        else:
            assert (entry["sync_mode"], entry["destination_sync_mode"]) == ("full_refresh", "overwrite")


def test_data_files_are_what_the_generator_writes_for_the_emulator(acceptance_emulator):
    files = render_files(acceptance_emulator.ground_truth(), acceptance_emulator.token)
    stale = [name for name, content in files.items() if (INTEGRATION_TESTS / name).read_text(encoding="utf-8") != content]
    assert not stale, f"{stale} differ from the emulator's dataset: run python -m integration_tests.generate_expected_records"


def test_invalid_config_fails_check_because_the_token_is_rejected(acceptance_emulator, tmp_path):
    # Guards the standard test's `status: failed`: it must fail for the token, not for the address.
    config = {**load_json("invalid_config.json"), "api_base_url": acceptance_emulator.url}
    run = run_connector("check", tmp_path, config)
    (status,) = [message["connectionStatus"] for message in run.messages if message["type"] == "CONNECTION_STATUS"]
    assert status["status"] == "FAILED"
    assert status["message"].startswith("The Profile API answered 401 for space 'spa_demo'")
