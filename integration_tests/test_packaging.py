"""The connector installed the way Airbyte and PyAirbyte users install it.

Once per session, the standard build frontend (`python -m build`) builds an sdist from the Docker
build context and the wheel from that sdist; then PyAirbyte's `get_source(..., pip_url=<the
wheel>)` creates a fresh virtualenv and installs the wheel into it with uv, as it does for a user,
with the versions of constraints.txt (UV_CONSTRAINT). That is the Dockerfile's `pip install -c
constraints.txt .` without Docker, and the session's only fresh install: it downloads the
connector's ~60 dependencies. PyAirbyte then checks, discovers and reads the session's emulator,
and the virtualenv's console script answers `spec` outside the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integration_tests.acceptance import INTEGRATION_TESTS
from integration_tests.connector_cli import STREAMS
from integration_tests.connector_folder import CONNECTOR_NAME, REPO_ROOT, build_context, metadata, package_version, registry_entry, setup_keyword

# A read of these two covers a stream of one record per profile and the incremental one.
PYAIRBYTE_STREAMS = ("user_traits", "user_events")
# Variables that would let a process outside the checkout import the checkout's packages.
CHECKOUT_VARIABLES = ("PYTHONPATH", "VIRTUAL_ENV")


@dataclass
class Distributions:
    sdist: Path
    wheel: Path


@dataclass
class PyAirbyteRun:
    completed: subprocess.CompletedProcess
    directory: Path

    @property
    def connector(self) -> Path:
        """The console script in the virtualenv PyAirbyte made (`.venv-<name>` in its directory)."""
        return self.directory / f".venv-{CONNECTOR_NAME}" / "bin" / CONNECTOR_NAME

    def report(self) -> dict[str, Any]:
        assert self.completed.returncode == 0, self.completed.stderr[-4000:]
        return json.loads(self.completed.stdout.strip().splitlines()[-1])


def outside_the_checkout() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in CHECKOUT_VARIABLES}


@pytest.fixture(scope="session")
def distributions(tmp_path_factory: pytest.TempPathFactory) -> Distributions:
    work = tmp_path_factory.mktemp("distributions")
    context = build_context(work / "context")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(work / "dist"), str(context)],
        cwd=work, env=outside_the_checkout(), capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (sdist,) = (work / "dist").glob("*.tar.gz")
    (wheel,) = (work / "dist").glob("*.whl")
    return Distributions(sdist, wheel)


@pytest.fixture(scope="session")
def pyairbyte_run(distributions: Distributions, live_sample_config: dict, tmp_path_factory: pytest.TempPathFactory) -> PyAirbyteRun:
    work = tmp_path_factory.mktemp("pyairbyte")
    config = work / "config.json"
    config.write_text(json.dumps(live_sample_config))
    registry = work / "registry.json"
    registry.write_text(json.dumps({"sources": [registry_entry()], "destinations": []}))
    (work / "tmp").mkdir(mode=0o700)
    bin_dir = str(Path(sys.executable).parent)  # uv, which PyAirbyte installs with, is beside this interpreter
    environment = {key: value for key, value in outside_the_checkout().items() if key != "AIRBYTE_OFFLINE_MODE"}
    environment.update(
        PATH=os.pathsep.join([bin_dir, environment.get("PATH", "")]),
        # PyAirbyte looks the connector up in this registry instead of Airbyte's online one.
        AIRBYTE_LOCAL_REGISTRY=str(registry),
        DO_NOT_TRACK="1",
        NO_LIVE_PROGRESS="1",
        AIRBYTE_TEMP_DIR=str(work / "tmp"),
        AIRBYTE_LOGGING_ROOT=str(work / "logs"),
        UV_CONSTRAINT=str(REPO_ROOT / "constraints.txt"),
        UV_PYTHON=sys.executable,
    )
    completed = subprocess.run(
        # -I: no module of the checkout is importable, only what the virtualenvs installed.
        [sys.executable, "-I", str(INTEGRATION_TESTS / "pyairbyte_user.py"), str(distributions.wheel), str(config), *PYAIRBYTE_STREAMS],
        cwd=work, env=environment, capture_output=True, text=True, timeout=900,
    )
    return PyAirbyteRun(completed, work)


def test_sdist_ships_the_sources_and_the_wheel_the_package_data_and_console_scripts(distributions):
    with tarfile.open(distributions.sdist) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"setup.py", "source_segment_profile/spec.json", *(f"schemas/{stream}.json" for stream in STREAMS)} <= in_sdist

    with zipfile.ZipFile(distributions.wheel) as wheel:
        in_wheel = set(wheel.namelist())
        info = f"source_segment_profile-{package_version()}.dist-info"
        core_metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert {"source_segment_profile/spec.json", *(f"source_segment_profile/schemas/{stream}.json" for stream in STREAMS)} <= in_wheel
    assert f"Name: {CONNECTOR_NAME}\n" in core_metadata and f"Version: {package_version()}\n" in core_metadata
    assert all(f"Requires-Dist: {pin}\n" in core_metadata for pin in setup_keyword("install_requires"))
    assert all(f"{script.replace('=', ' = ')}\n" in entry_points for script in setup_keyword("entry_points")["console_scripts"])


def expected_external_ids() -> dict[str, Counter]:
    expected: dict[str, Counter] = defaultdict(Counter)
    for line in (INTEGRATION_TESTS / "expected_records.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        expected[record["stream"]][record["data"]["external_id"]] += 1
    return expected


def test_pyairbyte_get_source_with_the_wheel_checks_and_reads_into_duckdb(pyairbyte_run):
    report = pyairbyte_run.report()

    # The registry entry made from metadata.yaml names the PyPI package: how get_source() installs
    # the connector by its name alone, and where it reads the installed version from.
    assert report["registry"] == {"package": CONNECTOR_NAME, "install_type": "python"}
    assert report["installed_version"] == metadata()["dockerImageTag"] == package_version()
    # discover: every stream schema is packaged.
    assert sorted(report["streams"]) == sorted(STREAMS)
    expected = expected_external_ids()
    for stream in PYAIRBYTE_STREAMS:
        assert Counter(report["external_ids"][stream]) == expected[stream], stream


def test_wheel_installed_in_a_fresh_virtualenv_answers_spec_outside_the_checkout(pyairbyte_run, tmp_path):
    assert pyairbyte_run.connector.exists(), f"PyAirbyte did not install the wheel:\n{pyairbyte_run.completed.stderr[-4000:]}"
    # As the image's system user 'airbyte': no home directory to write caches into.
    environment = {**outside_the_checkout(), "HOME": "/nonexistent"}
    completed = subprocess.run([str(pyairbyte_run.connector), "spec"], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    messages = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    assert [message["spec"]["documentationUrl"] for message in messages if message["type"] == "SPEC"] == [
        metadata()["documentationUrl"]
    ]
