"""The benchmark's reading of connector output (benchmarks/run.py OutputTally): whatever the block
boundaries, it counts every record line once, keeps the first and last, and sizes the last
user_events state."""

import json

import pytest

from benchmarks.run import OutputTally, _emitted_at


def record_line(index: int, data: dict | None = None) -> bytes:
    message = {"type": "RECORD", "record": {"stream": "user_events", "data": data or {"n": index}, "emitted_at": 1000 + index}}
    return json.dumps(message, separators=(",", ":")).encode()


def state_line(stream: str, state: dict) -> bytes:
    message = {"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": stream}, "stream_state": state}}}
    return json.dumps(message, separators=(",", ":")).encode()


def log_line(text: str) -> bytes:
    return json.dumps({"type": "LOG", "log": {"level": "INFO", "message": text}}, separators=(",", ":")).encode()


OUTPUT = b"\n".join(
    [
        log_line("Starting syncing"),
        *[record_line(index) for index in range(5)],
        state_line("user_events", {"state_version": 1, "profiles": {"a": "2026-11-20T10:00:00.000Z"}}),
        # A record whose data holds the marker text must still count once.
        record_line(5, {"nested": {"type": "RECORD"}}),
        state_line("user_traits", {"ignored": True}),
        *[record_line(index) for index in range(6, 9)],
        state_line("user_events", {"state_version": 1, "profiles": {"a": "2026-11-21T10:00:00.000Z", "b": "2026-11-21T11:00:00.000Z"}}),
        log_line("Finished syncing"),
    ]
) + b"\n"


@pytest.mark.parametrize("block_size", [1, 7, 64, 1000, len(OUTPUT)])
def test_counts_records_keeps_first_and_last_and_sizes_the_last_events_state(block_size, tmp_path):
    tally = OutputTally(tmp_path / "output.jsonl")
    for start in range(0, len(OUTPUT), block_size):
        tally.feed(OUTPUT[start : start + block_size])
    tally.close()

    assert tally.records == 9
    assert _emitted_at(tally.first_record) == 1000
    assert _emitted_at(tally.last_record) == 1008
    last_state = {"state_version": 1, "profiles": {"a": "2026-11-21T10:00:00.000Z", "b": "2026-11-21T11:00:00.000Z"}}
    assert tally.events_state_bytes == len(json.dumps(last_state))
    assert (tmp_path / "output.jsonl").read_bytes() == OUTPUT  # the whole output, for the ceiling source


def test_output_without_a_final_newline_still_counts_its_last_record():
    tally = OutputTally()
    tally.feed(log_line("start") + b"\n" + record_line(0) + b"\n" + record_line(1))
    tally.close()
    assert tally.records == 2
    assert _emitted_at(tally.last_record) == 1001
