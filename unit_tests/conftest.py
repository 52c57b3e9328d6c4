"""Shared fixtures: a fake clock for every wait, a fake Profile API, and entrypoint runners.

Every read goes through `run_read`, which validates each emitted record against its stream's
schema (schemas/<stream>.json), so no read test can emit a record the schema would reject.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import jsonschema
import pytest
from airbyte_cdk.models import AirbyteMessageSerializer, AirbyteStateBlob, AirbyteStateMessage, Level, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder, ConfiguredAirbyteStreamBuilder
import airbyte_cdk.test.entrypoint_wrapper as entrypoint_wrapper
from airbyte_cdk.test.entrypoint_wrapper import EntrypointOutput, _run_command, discover, read
from airbyte_cdk.test.state_builder import StateBuilder

import source_segment_profile.api_client as api_client_module
import source_segment_profile.source as source_module
import source_segment_profile.streams as streams_module
from source_segment_profile.api_client import ProfileApiClient
from source_segment_profile.progress import StreamProgress
from source_segment_profile.rate_budget import RateBudget
from source_segment_profile.run import SegmentProfileEntrypoint
from source_segment_profile.source import SourceSegmentProfile
from unit_tests.builders import ALL_STREAMS, FakeProfileApi

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = REPO_ROOT / "schemas"


# --- time -----------------------------------------------------------------------------------


class FakeClock:
    """Monotonic time for the connector's budget, retries and progress: `sleep` records the wait
    and moves time forward by it, so no test really waits."""

    def __init__(self, start: float = 1_000.0):
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []
        self.budgets: list[RateBudget] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float, stopping: Any = None) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Every RateBudget, client and progress tracker the source builds runs on one fake clock.

    Connector test modules use it for every test (`pytestmark = pytest.mark.usefixtures("clock")`);
    it is not autouse so that it stays out of other suites under unit_tests/ (emulator, distribution).
    """
    fake = FakeClock()

    def budget(requests_per_second: float) -> RateBudget:
        instance = RateBudget(requests_per_second, clock=fake.now, sleep=fake.sleep)
        fake.budgets.append(instance)
        return instance

    monkeypatch.setattr(source_module, "RateBudget", budget)
    monkeypatch.setattr(source_module, "ProfileApiClient", functools.partial(ProfileApiClient, sleep=fake.sleep, clock=fake.now))
    monkeypatch.setattr(streams_module, "StreamProgress", functools.partial(StreamProgress, clock=fake.now))
    return fake


@pytest.fixture(autouse=True)
def connector_entrypoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CDK's test wrapper runs commands through the entrypoint the console script uses."""
    monkeypatch.setattr(entrypoint_wrapper, "AirbyteEntrypoint", SegmentProfileEntrypoint)


# --- the fake API ---------------------------------------------------------------------------


@pytest.fixture
def api(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeProfileApi:
    """Every client the source builds sends its requests to this FakeProfileApi."""
    fake = FakeProfileApi(clock=clock.now)
    build_session = api_client_module.build_session

    def session_answered_by_fake(config: Any) -> Any:
        session = build_session(config)
        session.mount("https://", fake.adapter())
        session.mount("http://", fake.adapter())
        return session

    monkeypatch.setattr(api_client_module, "build_session", session_answered_by_fake)
    return fake


# --- running the connector ------------------------------------------------------------------


@functools.cache
def stream_schema(stream: str) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / f"{stream}.json").read_text())


def assert_valid_record(stream: str, record: Mapping[str, Any]) -> None:
    jsonschema.Draft7Validator(stream_schema(stream)).validate(record)


def catalog_for(streams: Iterable[str], sync_mode: SyncMode = SyncMode.full_refresh):
    builder = CatalogBuilder()
    for name in streams:
        builder.with_stream(ConfiguredAirbyteStreamBuilder().with_name(name).with_sync_mode(sync_mode).with_json_schema(stream_schema(name)))
    catalog = builder.build()
    for configured in catalog.streams:
        if configured.sync_mode == SyncMode.incremental:
            configured.cursor_field = ["timestamp"]
    return catalog


def events_state(value: Mapping[str, Any]) -> list[AirbyteStateMessage]:
    return StateBuilder().with_stream_state("user_events", dict(value)).build()


@dataclass
class ReadResult:
    output: EntrypointOutput

    def records(self, stream: Optional[str] = None) -> list[dict[str, Any]]:
        return [message.record.data for message in self.output.records if stream is None or message.record.stream == stream]

    def record_streams(self) -> list[str]:
        return [message.record.stream for message in self.output.records]

    def states(self, stream: str = "user_events") -> list[dict[str, Any]]:
        found = []
        for message in self.output.state_messages:
            stream_state = message.state.stream
            if stream_state and stream_state.stream_descriptor.name == stream:
                found.append(_as_dict(stream_state.stream_state))
        return found

    def logs(self, level: Optional[Level] = None) -> list[str]:
        return [message.log.message for message in self.output.logs if level is None or message.log.level == level]

    def errors(self) -> list[Any]:
        return [message.trace.error for message in self.output.errors]

    def stream_error(self, stream: str) -> Any:
        """The error trace of `stream`; fails the test when there is none."""
        for error in self.errors():
            if error.stream_descriptor and error.stream_descriptor.name == stream:
                return error
        raise AssertionError(f"no error trace for {stream}; errors: {[error.message for error in self.errors()]}")

    def statuses(self, stream: str) -> list[str]:
        return [status.name for status in self.output.get_stream_statuses(stream)]

    def all_text(self) -> str:
        """Every message of the run, serialised: what a user or the platform would see."""
        return output_text(self.output)


def _as_dict(blob: Any) -> dict[str, Any]:
    if isinstance(blob, AirbyteStateBlob):
        return {key: value for key, value in blob.__dict__.items()}
    return dict(blob or {})


def run_read(
    config: Mapping[str, Any],
    streams: Iterable[str] = ALL_STREAMS,
    sync_mode: SyncMode = SyncMode.full_refresh,
    state: Optional[list[AirbyteStateMessage]] = None,
    debug: bool = False,
    catalog_schema: Optional[Mapping[str, Any]] = None,
) -> ReadResult:
    """Runs `read` through the CDK entrypoint and checks every record against its stream's schema
    (`catalog_schema`: the schema the catalog gives every selected stream, e.g. a discovered one)."""
    streams = list(streams)
    catalog = catalog_for(streams, sync_mode)
    for configured in catalog.streams if catalog_schema is not None else []:
        configured.stream.json_schema = dict(catalog_schema)
    output = read(SourceSegmentProfile(), dict(config), catalog, state=state, debug=debug)
    result = ReadResult(output)
    for message in output.records:
        assert message.record.stream in streams, f"record of a stream that was not selected: {message.record.stream}"
        if catalog_schema is None:
            assert_valid_record(message.record.stream, message.record.data)
        else:
            jsonschema.validate(message.record.data, catalog_schema)
    return result


def run_check(config: Mapping[str, Any]) -> EntrypointOutput:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.json"
        path.write_text(json.dumps(dict(config)))
        return _run_command(SourceSegmentProfile(), ["check", "--config", str(path)])


def check_status(config: Mapping[str, Any]) -> tuple[str, Optional[str], EntrypointOutput]:
    """(status name, message, output) of `check`."""
    output = run_check(config)
    statuses = output.connection_status_messages
    assert len(statuses) == 1, f"expected one connection status, got {statuses} / errors {[e.trace.error.message for e in output.errors]}"
    status = statuses[0].connectionStatus
    return status.status.name, status.message, output


def run_discover(config: Mapping[str, Any]) -> EntrypointOutput:
    return discover(SourceSegmentProfile(), dict(config))


def run_spec() -> EntrypointOutput:
    return _run_command(SourceSegmentProfile(), ["spec"])


def output_text(output: EntrypointOutput) -> str:
    """Every message of an entrypoint run, serialised as the connector would print it."""
    return "\n".join(json.dumps(AirbyteMessageSerializer.dump(message)) for message in output.get_message_iterator())


# --- the real command line ------------------------------------------------------------------


def run_main(*args: str, folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DEPLOYMENT_MODE", None)  # cloud mode forbids http to 127.0.0.1 (cdk-notes)
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "main.py"), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_json(path: Path, value) -> str:
    path.write_text(json.dumps(value))
    return str(path)
