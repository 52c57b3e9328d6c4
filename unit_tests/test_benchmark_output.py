"""The benchmark's reading of connector output and of its own arguments (benchmarks/):
whatever the block boundaries, every record line counts once, the first and last are kept, the last
state of each stream and the errors are decoded; saved output yields the user_events keys; the
skip-unchanged rows (issue 25) check a delivery against saved output and report one measurement."""

import argparse
import json

import pytest

from benchmarks.connector_output import OutputTally, emitted_at, event_digest, event_digests, event_keys, ground_truth_users
from benchmarks.lines_of_code import code_lines
from benchmarks.connector_runs import ConnectorRead
from benchmarks.report import verdict
from benchmarks.run import GROUPS, ROWS, batches, selected_rows
from benchmarks.skip_unchanged import SKIP_CATALOG, Delivered, SkipMeasurement, SyncFigures, check_delivered, daily_hours


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


def test_the_skip_unchanged_catalog_has_the_five_user_streams_incremental_with_their_cursors():
    streams = {entry["stream"]["name"]: entry for entry in SKIP_CATALOG["streams"]}
    assert {name: entry["cursor_field"] for name, entry in streams.items()} == {
        "user_traits": ["read_at"],
        "user_events": ["timestamp"],
        "user_external_ids": ["created_at"],
        "user_metadata": ["updated_at"],
        "user_links": ["read_at"],
    }
    assert {(entry["sync_mode"], entry["destination_sync_mode"]) for entry in streams.values()} == {("incremental", "append_dedup")}


def test_a_delivery_is_found_in_saved_output_by_user_event_and_anonymous_id(tmp_path):
    answer = {
        "users": [
            {"lookup_id": "user_id:a", "message_ids": ["m1"], "anonymous_ids": ["anon-1"]},
            {"lookup_id": "user_id:b", "message_ids": ["m2"], "anonymous_ids": ["anon-2"]},  # its id is missing
            {"lookup_id": "user_id:c", "message_ids": ["m3"], "anonymous_ids": ["anon-3"]},  # its event went to another user
        ]
    }
    external_id_of = {"user_id:a": "segment_id:A", "user_id:b": "segment_id:B", "user_id:c": "segment_id:C"}
    output = tmp_path / "output.jsonl"
    output.write_bytes(
        b"\n".join(
            [
                record_line(0, {"external_id": "segment_id:A", "messageId": "m1"}),
                record_line(1, {"external_id": "segment_id:A", "type": "anonymous_id", "id": "anon-1"}, stream="user_external_ids"),
                record_line(2, {"external_id": "segment_id:B", "messageId": "m2"}),
                record_line(3, {"external_id": "segment_id:B", "messageId": "m2"}),  # twice
                record_line(4, {"external_id": "segment_id:B", "type": "user_id", "id": "anon-2"}, stream="user_external_ids"),
                record_line(5, {"external_id": "segment_id:A", "messageId": "m3"}),
                record_line(6, {"external_id": "segment_id:C", "type": "anonymous_id", "id": "anon-3"}, stream="user_external_ids"),
                state_line("user_events", LAST_EVENTS_STATE),
            ]
        )
        + b"\n"
    )
    delivered = check_delivered(output, answer, external_id_of)
    assert (delivered.users, delivered.found, delivered.events_twice) == (3, 1, 1)
    assert delivered.events_missing == ["user_id:c"] and delivered.ids_missing == ["user_id:b"]
    assert not delivered.exact


def skip_sync(name: str, requests: int, users: int = 10_000) -> SyncFigures:
    stats = {"requests_total": requests, "by_endpoint": {"user_metadata": users, "list_users": requests - users}}
    return SyncFigures(name, 0, stats, ConnectorRead(records=1, wall_seconds=1.0, record_span_seconds=0.0, cpu_seconds=0.0, peak_rss_mib=0.0), users)


def test_the_skip_rows_report_one_measurement_against_the_issue_goals():
    measurement = SkipMeasurement(
        users=10_000,
        skipping={"1": skip_sync("1", 52_000), "2a": skip_sync("2a", 11_000), "2b": skip_sync("2b", 15_100), "2c": skip_sync("2c", 61_000)},
        today={"1": skip_sync("1", 52_000), "2": skip_sync("2", 50_000)},
        delivered=Delivered(users=1000, found=1000),
    )
    args = argparse.Namespace(skip_unchanged=measurement)
    rows = {name: ROWS[name][1](args) for name in GROUPS["skip"]}
    assert {name: verdict(row) for name, row in rows.items()} == {
        "skip-today": "no target",
        "skip-0": "PASS",  # 1.1 <= 1.1
        "skip-10": "FAIL",  # 1.51 > 1.5
        "skip-100": "FAIL",  # 6.1 > today 5.0 + 1
        "skip-delivered": "PASS",
        "skip-1m": "no target",
    }
    assert rows["skip-1m"].raw["ratio"] == pytest.approx(5.0 / 1.51)
    assert rows["skip-1m"].raw["today_hours"] == pytest.approx(daily_hours(5.0)) == pytest.approx(5.0 * 1e6 / 80 / 3600)
    assert "(1,000 of 1,000)" in rows["skip-delivered"].checks[0].shown


def test_a_failed_skip_measurement_fails_every_skip_row_without_measuring_again():
    args = argparse.Namespace(skip_unchanged=RuntimeError("the connector exited with status 1"))
    for name in GROUPS["skip"]:
        with pytest.raises(RuntimeError, match="exited with status 1"):
            ROWS[name][1](args)
