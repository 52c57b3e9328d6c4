"""Runs the whole source through the CDK's `read` (the command line's code path, as the platform
runs it) and reads what it emitted: records, warnings, error traces, the last state."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import jsonschema
from airbyte_cdk.models import AirbyteErrorTraceMessage, AirbyteStateMessage, Level, SyncMode
from airbyte_cdk.test.catalog_builder import CatalogBuilder
from airbyte_cdk.test.entrypoint_wrapper import EntrypointOutput, read
from airbyte_cdk.test.models import ExpectedOutcome

from source_segment_profile.source import SourceSegmentProfile
from source_segment_profile.streams import load_schema


def read_streams(
    config: Mapping[str, Any],
    *streams: str,
    sync_mode: SyncMode = SyncMode.full_refresh,
    state: Optional[list[AirbyteStateMessage]] = None,
    expect_failure: bool = False,
) -> EntrypointOutput:
    """Reads `streams`; every record is checked against its stream's schema (as discover serves it),
    and the read must end as expected: with no error trace, or (`expect_failure`) with one."""
    catalog = CatalogBuilder()
    for stream in streams:
        catalog.with_stream(stream, sync_mode)
    outcome = ExpectedOutcome.EXPECT_EXCEPTION if expect_failure else ExpectedOutcome.EXPECT_SUCCESS
    output = read(SourceSegmentProfile(), config, catalog.build(), state, expected_outcome=outcome)
    for message in output.records:
        jsonschema.validate(message.record.data, load_schema(message.record.stream))
    errors = [message.trace.error.message for message in output.errors]
    assert bool(errors) == expect_failure, f"expected {'an error' if expect_failure else 'no error'}, got {errors}"
    return output


def records(output: EntrypointOutput, stream: Optional[str] = None) -> list[dict[str, Any]]:
    return [message.record.data for message in output.records if stream in (None, message.record.stream)]


def warnings(output: EntrypointOutput) -> list[str]:
    return [message.log.message for message in output.logs if message.log.level == Level.WARN]


def stream_error(output: EntrypointOutput, stream: str) -> AirbyteErrorTraceMessage:
    """The error trace that failed `stream`; the test fails when there is none."""
    for message in output.errors:
        error = message.trace.error
        if error.stream_descriptor is not None and error.stream_descriptor.name == stream:
            return error
    raise AssertionError(f"no error trace for {stream}: {[message.trace.error.message for message in output.errors]}")


def final_state(output: EntrypointOutput, stream: str) -> dict[str, Any]:
    """The stream's last state message, as a plain dict."""
    states = [message.state.stream for message in output.state_messages if message.state.stream.stream_descriptor.name == stream]
    assert states, f"no state message for {stream}"
    return dict(states[-1].stream_state.__dict__)


def final_status(output: EntrypointOutput, stream: str) -> str:
    return output.get_stream_statuses(stream)[-1].name
