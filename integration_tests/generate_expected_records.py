"""Writes the test data that follows from the emulator's dataset (acceptance.EMULATOR_DATASET):

- expected_records.jsonl: every record a read of sample_config.json must emit, one
  `{"stream": ..., "data": ...}` per line, computed from the emulator's ground truth;
- sample_config.json and invalid_config.json: the emulator's space, token (a wrong one in the
  invalid config) and the lookup id of every profile of the dataset;
- abnormal_state.json: a user_events state that says every profile was read through the far future.

    python -m integration_tests.generate_expected_records

test_acceptance.py fails when these files differ from what this script would write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from integration_tests.acceptance import EMULATOR_DATASET, EMULATOR_URL, INTEGRATION_TESTS
from integration_tests.connector_cli import STREAMS
from integration_tests.ground_truth import expected_records, lookup_ids, read_at_of, with_read_at
from segment_profile_emulator.testing import running_emulator
import numpy as np

from source_segment_profile.config import parse_timestamp
from source_segment_profile.read_through_state import ReadThroughState
from source_segment_profile.masking import profile_key

INVALID_TOKEN = "not-a-valid-token"
FAR_FUTURE = "2099-01-01T00:00:00.000Z"


def state_reading_through(read_through: dict[str, Any]) -> dict[str, Any]:
    """The user_events state that says each profile id's events were read through its watermark."""
    keys = np.array([profile_key(external_id) for external_id in read_through], dtype=np.uint64)
    return ReadThroughState.from_read_through(keys, list(read_through.values())).message()


def render_files(truth: dict[str, Any], token: str) -> dict[str, str]:
    """File name -> content, for the dataset whose ground truth is `truth`."""
    users, accounts = lookup_ids(truth)
    sample_config = {
        "space_id": truth["space_id"],
        "access_token": token,
        "region": "us",
        "api_base_url": EMULATOR_URL,
        "user_external_ids": users,
        "account_external_ids": accounts,
    }
    abnormal_state = [
        {
            "type": "STREAM",
            "stream": {
                "stream_descriptor": {"name": "user_events"},
                "stream_state": state_reading_through(dict.fromkeys(users, parse_timestamp(FAR_FUTURE))),
            },
        }
    ]
    # configured_catalog.json syncs every stream that can be incremental incrementally.
    records = with_read_at(expected_records(truth), read_at_of(truth))
    return {
        "sample_config.json": as_json(sample_config),
        "invalid_config.json": as_json({**sample_config, "access_token": INVALID_TOKEN}),
        "abnormal_state.json": as_json(abnormal_state),
        "expected_records.jsonl": "".join(
            json.dumps({"stream": stream, "data": record}, ensure_ascii=False) + "\n"
            for stream in STREAMS
            for record in records[stream]
        ),
    }


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    with running_emulator(**EMULATOR_DATASET) as emulator:
        files = render_files(emulator.ground_truth(), emulator.token)
    for name, content in files.items():
        path: Path = INTEGRATION_TESTS / name
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path.relative_to(INTEGRATION_TESTS.parent)}")


if __name__ == "__main__":
    main()
