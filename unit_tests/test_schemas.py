"""Generated schemas: they match their generator, the drift check can fail, discover serves them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from airbyte_cdk.models import SyncMode

from unit_tests.builders import ALL_STREAMS, TRAIT_CLASS_STREAMS, config
from unit_tests.conftest import REPO_ROOT, run_discover, stream_schema

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

GENERATOR = "scripts/generate_schemas.py"
PRIMARY_KEYS = {
    "user_traits": [["external_id"]],
    "account_traits": [["external_id"]],
    "user_events": [["external_id"], ["messageId"]],
    "user_external_ids": [["external_id"], ["type"], ["id"]],
    "account_external_ids": [["external_id"], ["type"], ["id"]],
    "user_metadata": [["external_id"]],
    "user_links": [["external_id"], ["to_collection"], ["linked_external_id"]],
    "user_audiences": [["external_id"], ["audience"]],
    "user_computed_traits": [["external_id"], ["trait"]],
}


def run_generator(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / GENERATOR), *args], cwd=root, capture_output=True, text=True, timeout=60)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """The generator, its OpenAPI source and the schemas, copied where a test may change them."""
    for folder in ("scripts", "openapi", "schemas"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    return tmp_path


def test_committed_schemas_match_the_generator():
    completed = run_generator(REPO_ROOT, "--check")

    assert completed.returncode == 0, completed.stderr


def test_the_drift_check_fails_on_a_hand_edited_schema(repo_copy):
    path = repo_copy / "schemas" / "user_events.json"
    schema = json.loads(path.read_text())
    schema["properties"]["hand_added"] = {"type": "string"}
    path.write_text(json.dumps(schema, indent=2) + "\n")

    completed = run_generator(repo_copy, "--check")

    assert completed.returncode == 1
    assert "user_events.json" in completed.stderr


def test_the_drift_check_fails_on_a_missing_or_stale_schema(repo_copy):
    (repo_copy / "schemas" / "user_links.json").unlink()
    (repo_copy / "schemas" / "old_stream.json").write_text("{}\n")

    completed = run_generator(repo_copy, "--check")

    assert completed.returncode == 1
    assert "user_links.json" in completed.stderr and "old_stream.json" in completed.stderr


def test_the_drift_check_passes_again_after_regenerating(repo_copy):
    (repo_copy / "schemas" / "user_traits.json").write_text("{}\n")

    assert run_generator(repo_copy).returncode == 0
    assert run_generator(repo_copy, "--check").returncode == 0
    assert (repo_copy / "schemas" / "user_traits.json").read_text() == (REPO_ROOT / "schemas" / "user_traits.json").read_text()


@pytest.mark.parametrize("stream", ALL_STREAMS)
def test_schemas_say_they_are_generated_and_require_external_id(stream):
    schema = stream_schema(stream)
    assert "python scripts/generate_schemas.py" in schema["$comment"]
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "external_id" in schema["required"]
    assert schema["additionalProperties"] is True


@pytest.mark.parametrize("stream, field", [("user_traits", "traits"), ("account_traits", "traits"), ("user_events", "properties"), ("user_events", "context")])
def test_maps_allow_any_keys(stream, field):
    prop = stream_schema(stream)["properties"][field]
    assert "object" in prop["type"]
    assert prop.get("additionalProperties", True) is True


def test_discover_serves_the_nine_streams_with_their_schemas_and_keys():
    output = run_discover(config())

    streams = {stream.name: stream for stream in output.catalog.catalog.streams}
    assert sorted(streams) == sorted(ALL_STREAMS + TRAIT_CLASS_STREAMS)
    for name, stream in streams.items():
        assert stream.json_schema == stream_schema(name)
        assert stream.source_defined_primary_key == PRIMARY_KEYS[name]
    # The user streams a skip applies to are incremental (append + dedup keeps a row per key), each
    # with a cursor its records carry; the others have no change signal and stay full refresh.
    cursors = {"user_events": "timestamp", "user_traits": "read_at", "user_external_ids": "created_at", "user_links": "read_at", "user_metadata": "updated_at"}
    for name, cursor in cursors.items():
        assert set(streams[name].supported_sync_modes) == {SyncMode.full_refresh, SyncMode.incremental}
        assert streams[name].default_cursor_field == [cursor]
        assert streams[name].source_defined_cursor
        assert cursor in streams[name].json_schema["properties"]
    for name in set(ALL_STREAMS + TRAIT_CLASS_STREAMS) - set(cursors):
        assert streams[name].supported_sync_modes == [SyncMode.full_refresh]


def test_discover_without_typed_trait_columns_makes_no_request(api):
    # With them (the default), discover reads a sample of profiles: test_trait_columns.py.
    run_discover(config(trait_columns_sample_size=0))

    assert api.seen == []
