"""The benchmark's reading of connector output and of its own arguments (benchmarks/):
whatever the block boundaries, every record line counts once, the first and last are kept, the last
state of each stream and the errors are decoded; saved output yields the user_events keys."""

import json

import pytest

from benchmarks.connector_output import OutputTally, emitted_at, event_digest, event_digests, event_keys, ground_truth_users
from benchmarks.lines_of_code import code_lines
from benchmarks.run import GROUPS, ROWS, batches, selected_rows


def compact(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def record_line(index: int, data: dict | None = None, stream: str = "user_events") -> bytes:
    return compact({"type": "RECORD", "record": {"stream": stream, "data": data or {"n": index}, "emitted_at": 1000 + index}})


def state_line(stream: str, state: dict) -> bytes:
    return compact({"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": stream}, "stream_state": state}}})


def log_line(text: str) -> bytes:
    return compact({"type": "LOG", "log": {"level": "INFO", "message": text}})


def trace_line(trace: dict) -> bytes:
    return compact({"type": "TRACE", "trace": {"emitted_at": 1.0, **trace}})


FIRST_EVENTS_STATE = {"state_version": 1, "profiles": {"a": "2026-11-20T10:00:00.000Z"}}
LAST_EVENTS_STATE = {"state_version": 1, "profiles": {"a": "2026-11-21T10:00:00.000Z", "b": "2026-11-21T11:00:00.000Z"}}
OUTPUT = b"\n".join(
    [
        log_line("Starting syncing"),
        trace_line({"type": "STREAM_STATUS", "stream_status": {"stream_descriptor": {"name": "user_events"}, "status": "STARTED"}}),
        *[record_line(index) for index in range(5)],
        state_line("user_events", FIRST_EVENTS_STATE),
        # A record whose data holds the markers' text must still count once, and decode nothing.
        record_line(5, {"nested": {"type": "RECORD"}, "text": '\n{"type":"STATE"'}),
        state_line("user_traits", {"checkpoint": 1}),
        *[record_line(index) for index in range(6, 9)],
        state_line("user_events", LAST_EVENTS_STATE),
        trace_line({"type": "ERROR", "error": {"message": "Segment answered 401", "failure_type": "config_error"}}),
        log_line("Finished syncing"),
    ]
) + b"\n"


@pytest.mark.parametrize("block_size", [1, 7, 64, 1000, len(OUTPUT)])
def test_counts_records_and_keeps_first_last_states_and_errors_whatever_the_blocks(block_size, tmp_path):
    tally = OutputTally(tmp_path / "output.jsonl")
    for start in range(0, len(OUTPUT), block_size):
        tally.feed(OUTPUT[start : start + block_size])
    tally.close()

    assert tally.records == 9
    assert emitted_at(tally.first_record) == 1000
    assert emitted_at(tally.last_record) == 1008
    assert tally.last_states["user_events"]["stream"]["stream_state"] == LAST_EVENTS_STATE
    assert tally.last_states["user_traits"]["stream"]["stream_state"] == {"checkpoint": 1}
    assert tally.state_bytes("user_events") == len(json.dumps(LAST_EVENTS_STATE, separators=(",", ":")))
    assert tally.state_bytes("user_metadata") == 0
    # STATE lines as written, without their newline: both of user_events, and the last alone.
    events_lines = [state_line("user_events", FIRST_EVENTS_STATE), state_line("user_events", LAST_EVENTS_STATE)]
    assert tally.state_messages == {"user_events": 2, "user_traits": 1}
    assert tally.state_line_bytes["user_events"] == sum(map(len, events_lines))
    assert tally.last_state_line_bytes["user_events"] == len(events_lines[-1])
    assert tally.errors == ["Segment answered 401"]
    assert (tmp_path / "output.jsonl").read_bytes() == OUTPUT


def test_output_without_a_final_newline_still_counts_its_last_record():
    tally = OutputTally()
    tally.feed(log_line("start") + b"\n" + record_line(0) + b"\n" + record_line(1))
    tally.close()
    assert tally.records == 2
    assert emitted_at(tally.last_record) == 1001


def test_emitted_at_is_read_whatever_follows_it():
    with_more_fields = b'{"type":"RECORD","record":{"stream":"s","data":{"emitted_at":1},"emitted_at":1796229285136,"namespace":null}}'
    assert emitted_at(with_more_fields) == 1796229285136
    assert emitted_at(record_line(7)) == 1007


def test_event_keys_are_the_user_events_primary_keys_of_saved_output(tmp_path):
    output = tmp_path / "output.jsonl"
    output.write_bytes(
        b"\n".join(
            [
                log_line("start"),
                record_line(0, {"external_id": "user_id:a", "messageId": "m1"}),
                record_line(1, {"external_id": "user_id:a", "messageId": "m2"}),
                record_line(2, {"external_id": "user_id:b", "messageId": "m1"}),
                record_line(3, {"external_id": "user_id:a", "messageId": "m1"}),  # a duplicate
                record_line(4, {"external_id": "user_id:a", "traits": {}}, stream="user_traits"),
                state_line("user_events", LAST_EVENTS_STATE),
            ]
        )
        + b"\n"
    )
    assert event_keys(output) == {("user_id:a", "m1"), ("user_id:a", "m2"), ("user_id:b", "m1")}
    # The digests keep one per record: the duplicate is there twice.
    assert sorted(event_digests(output).tolist()) == sorted(event_digest(*key) for key in [("user_id:a", "m1"), ("user_id:a", "m2"), ("user_id:b", "m1"), ("user_id:a", "m1")])


GROUND_TRUTH_USERS = [
    {"segment_id": "use_1", "traits": {"name": "Zoë ]}"}, "events": [{"messageId": "m1"}, {"message_id": "m2"}]},
    {"segment_id": "use_2", "traits": {}, "events": []},
]
GROUND_TRUTH = json.dumps(
    {"space_id": "spa_demo", "now": "2026-12-02T00:00:00.000Z", "users": GROUND_TRUTH_USERS, "accounts": [{"segment_id": "acc_1"}]},
    ensure_ascii=False,
    separators=(",", ":"),
).encode()


@pytest.mark.parametrize("piece_size", [1, 5, 64, len(GROUND_TRUTH)])
def test_ground_truth_users_come_one_at_a_time_whatever_the_pieces(piece_size):
    # Pieces of one byte split the two-byte "ë" and every user between its braces.
    pieces = (GROUND_TRUTH[start : start + piece_size] for start in range(0, len(GROUND_TRUTH), piece_size))
    assert list(ground_truth_users(pieces)) == GROUND_TRUTH_USERS


def test_ground_truth_cut_inside_its_users_is_an_error():
    with pytest.raises(ValueError, match="ends inside its users"):
        list(ground_truth_users([GROUND_TRUTH[:100]]))


def test_code_lines_leave_out_blank_and_comment_only_lines_but_count_docstrings():
    source = '"""A module."""\n\n# why\nimport os  # inline comments stay code\n\n    # indented comment\ndef f():\n    """Doc."""\n    return 1\n'
    assert code_lines(source) == 5


def test_rows_are_selected_by_name_or_group_in_table_order():
    assert selected_rows(None) == list(ROWS)
    assert selected_rows("lookback, budget") == ["budget", "lookback"]
    assert selected_rows("rss,loc") == ["rss-scale", "rss-heavy", "loc"]
    assert selected_rows("contention") == GROUPS["contention"]
    with pytest.raises(SystemExit, match="unknown row 'speed'"):
        selected_rows("budget,speed")


def test_the_limit_bound_rows_run_side_by_side_unless_sequential():
    assert batches(["budget", "limit50-none", "limit20-seconds", "lookback"], sequential=False) == [
        ["budget"],
        ["limit50-none", "limit20-seconds"],
        ["lookback"],
    ]
    assert batches(["limit50-none", "limit20-seconds"], sequential=True) == [["limit50-none"], ["limit20-seconds"]]
