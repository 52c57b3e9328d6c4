"""A pytest plugin for Airbyte's standard tests against the local Profile API emulator.

The root conftest.py loads it, so it runs in every pytest session of this folder: `make test`'s,
and the one `airbyte-cdk connector test` starts on the folder.

`acceptance-test-config.yml` names `integration_tests/sample_config.json` and
`integration_tests/invalid_config.json`, which point at an emulator on the fixed address
EMULATOR_URL (`segment-profile-emulator --port 8089 --users 20 --accounts 5 --seed 42 --now
2026-11-29T00:00:00Z` serves exactly expected_records.jsonl). A test session cannot count on that
port, so:

- `acceptance_emulator` (session fixture) starts the emulator of EMULATOR_DATASET on a free port;
- `write_live_configs()` writes each such config, with the emulator's real URL, into a folder (the
  copy of the connector folder that test_acceptance.py runs `airbyte-cdk connector test` on);
- the CDK's image tests (marked `image_tests`) build and run the Docker image: where no Docker
  engine answers, they are skipped, with the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import pytest

from segment_profile_emulator.testing import RunningEmulator, running_emulator

INTEGRATION_TESTS = Path(__file__).resolve().parent
# The address the committed configs name: where `segment-profile-emulator --port 8089` listens.
EMULATOR_URL = "http://127.0.0.1:8089"
# The emulator's default seed with a small space: one heavy user (index 5: 2,500 events, 340
# traits, 260 ids, so every paginated stream reads several pages), ids that need percent-encoding,
# both metadata shapes, a profile without events. A fixed clock fixes the 14-day event window.
EMULATOR_DATASET = {"users": 20, "accounts": 5, "seed": 42, "now": "2026-11-29T00:00:00Z"}
NO_DOCKER_ENGINE = "no Docker engine answers"
DOCKER_ANSWER_TIMEOUT_SECONDS = 20


def emulator_configs() -> list[Path]:
    """The committed configs that address the emulator at EMULATOR_URL."""
    return sorted(
        path
        for path in INTEGRATION_TESTS.glob("*config*.json")
        if json.loads(path.read_text()).get("api_base_url") == EMULATOR_URL
    )


def live_config(config_path: Path, emulator_url: str) -> dict:
    return {**json.loads(config_path.read_text()), "api_base_url": emulator_url}


def write_live_configs(directory: Path, emulator_url: str) -> None:
    """Each committed emulator config, under its own name in `directory`, with `emulator_url`."""
    for path in emulator_configs():
        (directory / path.name).write_text(json.dumps(live_config(path, emulator_url), indent=2))


@pytest.fixture(scope="session")
def acceptance_emulator() -> Iterator[RunningEmulator]:
    """The emulator of EMULATOR_DATASET, with Segment's rate limit (100 requests/s per space)."""
    with running_emulator(**EMULATOR_DATASET) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def live_sample_config(acceptance_emulator: RunningEmulator) -> dict:
    return live_config(INTEGRATION_TESTS / "sample_config.json", acceptance_emulator.url)


def docker_engine_problem() -> Optional[str]:
    """Why no Docker engine answers on this machine, or None when one does."""
    docker = shutil.which("docker")
    if docker is None:
        return "the docker command is not installed"
    try:
        answer = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=DOCKER_ANSWER_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return f"`docker version` got no answer from the engine in {DOCKER_ANSWER_TIMEOUT_SECONDS} s"
    if answer.returncode != 0:
        return (answer.stderr.strip().splitlines() or [f"`docker version` exited with {answer.returncode}"])[-1]
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image_tests: CDK standard tests that build and run the Docker image")
    config.addinivalue_line("markers", "requires_creds: CDK standard tests whose config is under secrets/")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    image_tests = [item for item in items if item.get_closest_marker("image_tests")]
    problem = docker_engine_problem() if image_tests else None
    if problem:
        for item in image_tests:
            item.add_marker(pytest.mark.skip(reason=f"{NO_DOCKER_ENGINE}: {problem}"))
