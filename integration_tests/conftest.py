import json
from pathlib import Path

import jsonschema
import pytest

from integration_tests.ground_truth import lookup_ids

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
FIXED_NOW = "2026-11-20T12:00:00Z"


def emulator_config(emulator, truth, **overrides):
    """A connector config for every profile of the emulator's ground truth."""
    users, accounts = lookup_ids(truth)
    return {
        "space_id": emulator.space_id,
        "access_token": emulator.token,
        "api_base_url": emulator.url,
        "user_external_ids": users,
        "account_external_ids": accounts,
        # The emulator's rate limit is off in these tests unless a test turns it on.
        "requests_per_second": 500,
        "max_concurrency": 16,
        **overrides,
    }


@pytest.fixture(scope="session")
def record_validators():
    return {
        path.stem: jsonschema.Draft7Validator(json.loads(path.read_text())) for path in SCHEMAS.glob("*.json")
    }


@pytest.fixture
def assert_valid_records(record_validators):
    def check(records_by_stream):
        for stream, records in records_by_stream.items():
            validator = record_validators[stream]
            for record in records:
                errors = list(validator.iter_errors(record))
                assert not errors, f"{stream} record does not match its schema: {errors[0].message}"

    return check
