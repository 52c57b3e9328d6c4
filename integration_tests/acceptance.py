"""A pytest plugin that runs the CDK standard tests against the local Profile API emulator.

`acceptance-test-config.yml` names `integration_tests/sample_config.json` and
`integration_tests/invalid_config.json`, which point at an emulator on the fixed address
EMULATOR_URL (`segment-profile-emulator --port 8089 --users 20 --accounts 5 --seed 42 --now
2026-11-29T00:00:00Z` serves exactly expected_records.jsonl). A test session cannot count on that
port, so:

- `acceptance_emulator` (session fixture) starts the emulator on a free port with EMULATOR_DATASET
  and writes a copy of each such config, with the emulator's real URL, into a directory of this
  test process;
- `against_live_emulator()` points a standard-test scenario at that copy (the scenario keeps its
  id, `sample_config`);
- the CDK's image tests (marked `image_tests`) build and run the Docker image, which needs a
  Docker engine: they are deselected unless the command line chooses markers itself. On a machine
  with Docker: `pytest -p airbyte_cdk.test.standard_tests.pytest_hooks -m image_tests
  integration_tests/test_acceptance.py` (`-p` makes the CDK's options, e.g. `--connector-image`,
  known to the command line).

Loaded by `pytest_plugins` in test_acceptance.py, so a plain `pytest` of the repository runs it.
That module imports from this one first, hence PYTEST_DONT_REWRITE (this module asserts nothing):
pytest would otherwise warn that it is imported before it could rewrite its asserts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from airbyte_cdk.test.models import ConnectorTestScenario

from segment_profile_emulator.testing import RunningEmulator, running_emulator

CONNECTOR_ROOT = Path(__file__).resolve().parent.parent
INTEGRATION_TESTS = CONNECTOR_ROOT / "integration_tests"
# The address the committed configs name: where `segment-profile-emulator --port 8089` listens.
EMULATOR_URL = "http://127.0.0.1:8089"
# The emulator's default seed with a small space: one heavy user (index 5: 2,500 events, 340
# traits, 260 ids, so every paginated stream reads several pages), ids that need percent-encoding,
# both metadata shapes, a profile without events. A fixed clock fixes the 14-day event window.
EMULATOR_DATASET = {"users": 20, "accounts": 5, "seed": 42, "now": "2026-11-29T00:00:00Z"}
# One directory per test process (pytest-xdist workers included): sessions that run at the same
# time in one checkout each talk to their own emulator.
LIVE_CONFIG_DIR = Path(tempfile.gettempdir()) / f"source-segment-profile-acceptance-{os.getpid()}"


def emulator_configs() -> list[Path]:
    """The committed configs that address the emulator at EMULATOR_URL."""
    return sorted(
        path
        for path in INTEGRATION_TESTS.glob("*config*.json")
        if json.loads(path.read_text()).get("api_base_url") == EMULATOR_URL
    )


def live_config_path(config_path: Path) -> Path:
    return LIVE_CONFIG_DIR / config_path.name


def write_live_configs(emulator_url: str) -> None:
    LIVE_CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    for path in emulator_configs():
        config = json.loads(path.read_text())
        live_config_path(path).write_text(json.dumps({**config, "api_base_url": emulator_url}, indent=2))


def against_live_emulator(scenario: ConnectorTestScenario) -> ConnectorTestScenario:
    """The scenario, reading its config from the live copy when the config addresses the emulator."""
    if scenario.config_path is None:
        return scenario
    committed = scenario.config_path if scenario.config_path.is_absolute() else CONNECTOR_ROOT / scenario.config_path
    if committed.resolve() not in {path.resolve() for path in emulator_configs()}:
        return scenario
    return scenario.model_copy(update={"config_path": live_config_path(committed)})


@pytest.fixture(scope="session")
def acceptance_emulator() -> Iterator[RunningEmulator]:
    """The emulator of EMULATOR_DATASET, with Segment's rate limit (100 requests/s per space)."""
    with running_emulator(**EMULATOR_DATASET) as emulator:
        write_live_configs(emulator.url)
        try:
            yield emulator
        finally:
            shutil.rmtree(LIVE_CONFIG_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def live_sample_config(acceptance_emulator: RunningEmulator) -> dict:
    return json.loads(live_config_path(INTEGRATION_TESTS / "sample_config.json").read_text())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image_tests: CDK standard tests that build and run the Docker image")
    config.addinivalue_line("markers", "requires_creds: CDK standard tests whose config is under secrets/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.option.markexpr:
        return  # the command line chose the markers to run
    image_tests = [item for item in items if item.get_closest_marker("image_tests")]
    if image_tests:
        config.hook.pytest_deselected(items=image_tests)
        deselected = {id(item) for item in image_tests}
        items[:] = [item for item in items if id(item) not in deselected]
