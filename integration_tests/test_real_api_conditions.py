"""What the real Profile API does that a tidy emulator forgets, all at once, in every mode that ships.

One emulator answers gzip-compressed, writes a lone UTF-16 surrogate into a trait of every 7th
user (`"\\ud83d rocket"`, which strict JSON parsers reject) and refuses `limit` above 100 on
events, external_ids and links with a 400 validation_error, as some Segment docs say (traits
keep 200). The connector asks for 200, so it must step down to 100 once per endpoint per sync,
warn once, and still deliver every record exactly once; the surrogate must arrive as U+FFFD.
"""

import base64
import gzip
import json
from datetime import datetime, timezone
from decimal import Decimal
import re
import urllib.error
import urllib.request
from collections import Counter

import pytest

from integration_tests.conftest import FIXED_NOW, emulator_config
from integration_tests.connector_cli import STREAMS, configured_catalog, run_connector
from integration_tests.ground_truth import as_multiset, expected_records
from segment_profile_emulator.testing import running_emulator

# Users 3, 10 and 17 carry the lone-surrogate trait; user 0 (450 events) and user 5 (the dataset's
# heavy user: thousands of events, 300+ traits, 250+ ids) read several pages of every paginated stream.
USERS, ACCOUNTS = 24, 4
SURROGATE_USERS = (3, 10, 17)
WIRE_VALUE = b'"\\ud83d rocket"'
DELIVERED_VALUE = "\ufffd rocket"
LIST_LIMIT = 100
# The endpoints the connector asks for 200 items and the emulator refuses it; links ask for 20
# (Segment's page size for links), traits may have 200.
STEPPED_DOWN = {"user_events", "user_external_ids", "account_external_ids"}
REQUESTED_LIMIT = {"user_traits": "200", "account_traits": "200", "user_links": "20", "user_metadata": None}
STEP_DOWN_WARNING = re.compile(r"^The Profile API refused limit=(\d+) on .*; (\w+) asks for (\d+) items per page")
EVENTS_ONLY = configured_catalog(("user_events",))


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(
        users=USERS, accounts=ACCOUNTS, seed=7, now=FIXED_NOW, rate_limit=0,
        gzip=True, lone_surrogate_trait=True, max_list_limit=LIST_LIMIT, heavy_user_events=450,
    ) as running:
        yield running


def assert_records_equal_the_truth(records, expected, streams):
    for stream in streams:
        missing = as_multiset(expected[stream]) - as_multiset(records[stream])
        extra = as_multiset(records[stream]) - as_multiset(expected[stream])
        assert not missing and not extra, (
            f"{stream}: {sum(missing.values())} missing, {sum(extra.values())} extra; "
            f"first missing {next(iter(missing), None)}; first extra {next(iter(extra), None)}"
        )


def step_down_warnings(run):
    """(refused limit, endpoint, new limit) of every step-down warning the sync logged."""
    found = []
    for message in run.messages:
        if message["type"] == "LOG":
            match = STEP_DOWN_WARNING.match(message["log"]["message"])
            if match:
                assert message["log"]["level"] == "WARN", message["log"]
                found.append((int(match.group(1)), match.group(2), int(match.group(3))))
    return found


def assert_limit_stepped_down_once(emulator, endpoints, max_concurrency):
    """The emulator's request log: only requests already on their way when the first refusal
    came back asked for 200; every page served was asked with limit 100."""
    for endpoint in endpoints:
        requests = [entry for entry in emulator.requests() if entry["endpoint"] == endpoint]
        refused = [entry for entry in requests if entry["status"] == 400]
        served = [entry for entry in requests if entry["status"] != 400]
        assert refused and all(entry["query"].get("limit") == "200" for entry in refused), endpoint
        assert len(refused) <= max_concurrency, f"{endpoint}: {len(refused)} requests refused for limit=200"
        assert served and all(entry["status"] == 200 for entry in served), endpoint
        assert Counter(entry["query"].get("limit") for entry in served) == {str(LIST_LIMIT): len(served)}, endpoint


def test_the_emulator_sends_gzip_a_lone_surrogate_and_refuses_limit_200(emulator):
    """Guards the tests below: they only prove something if these conditions reach the wire."""
    lookup = emulator.ground_truth()["users"][SURROGATE_USERS[0]]["lookup_id"]
    authorization = "Basic " + base64.b64encode(f"{emulator.token}:".encode()).decode()
    request = urllib.request.Request(
        emulator.profile_url("users", lookup, "traits") + "?limit=200",
        headers={"Authorization": authorization, "Accept-Encoding": "gzip, deflate"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert WIRE_VALUE in gzip.decompress(response.read())

    events = urllib.request.Request(
        emulator.profile_url("users", lookup, "events") + "?limit=200", headers={"Authorization": authorization}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(events)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["code"] == "validation_error"


@pytest.mark.parametrize("max_concurrency", [16, 1], ids=["concurrent", "sequential"])
def test_full_refresh_of_all_seven_streams_delivers_the_ground_truth_exactly_once(emulator, tmp_path, max_concurrency):
    truth = emulator.ground_truth()
    emulator.reset_stats()
    config = emulator_config(emulator, truth, max_concurrency=max_concurrency)
    run = run_connector("read", tmp_path, config, configured_catalog(incremental=False))

    assert run.returncode == 0 and run.errors == [], run.stderr[-2000:] + "\n".join(run.logs[-20:])
    expected = expected_records(truth)
    assert_records_equal_the_truth(run.records, expected, STREAMS)
    # The scenario reads several pages of 100 for some profiles.
    assert max(Counter(record["external_id"] for record in run.records["user_events"]).values()) > 3 * LIST_LIMIT
    assert max(Counter(record["external_id"] for record in run.records["user_external_ids"]).values()) > 2 * LIST_LIMIT

    delivered = {record["external_id"]: record["traits"] for record in run.records["user_traits"]}
    for index in SURROGATE_USERS:
        assert delivered[truth["users"][index]["lookup_id"]]["nickname"] == DELIVERED_VALUE
    # Every record can be written as UTF-8 by a destination: no lone surrogate anywhere.
    for stream in STREAMS:
        for record in run.records[stream]:
            json.dumps(record, ensure_ascii=False).encode("utf-8")

    assert sorted(step_down_warnings(run)) == sorted((200, endpoint, LIST_LIMIT) for endpoint in STEPPED_DOWN)
    assert_limit_stepped_down_once(emulator, STEPPED_DOWN, max_concurrency)
    for endpoint, limit in REQUESTED_LIMIT.items():
        requests = [entry for entry in emulator.requests() if entry["endpoint"] == endpoint]
        assert requests and all(entry["status"] == 200 and entry["query"].get("limit") == limit for entry in requests), endpoint


def test_incremental_user_events_deliver_the_ground_truth_exactly_once_in_each_sync(emulator, tmp_path):
    first_truth = emulator.ground_truth()
    config = emulator_config(emulator, first_truth)
    emulator.reset_stats()
    first = run_connector("read", tmp_path, config, EVENTS_ONLY)

    assert first.returncode == 0 and first.errors == [], first.stderr[-2000:] + "\n".join(first.logs[-20:])
    assert_records_equal_the_truth(first.records, expected_records(first_truth), ["user_events"])
    assert step_down_warnings(first) == [(200, "user_events", LIST_LIMIT)]
    assert_limit_stepped_down_once(emulator, ["user_events"], config["max_concurrency"])

    emulator.advance_clock(6 * 3600)
    second_truth = emulator.ground_truth()
    emulator.reset_stats()
    second = run_connector("read", tmp_path, config, EVENTS_ONLY, state=[first.last_state_of("user_events")])

    assert second.returncode == 0 and second.errors == [], second.stderr[-2000:] + "\n".join(second.logs[-20:])
    # Each page size is learnt anew by each sync, and warned about once.
    assert step_down_warnings(second) == [(200, "user_events", LIST_LIMIT)]
    assert_limit_stepped_down_once(emulator, ["user_events"], config["max_concurrency"])
    second_records = as_multiset(second.records["user_events"])
    assert max(second_records.values()) == 1
    # Incremental: the second sync re-reads only its lookback, and together the two syncs hold
    # exactly what the API showed at either clock (the overlap is the same records again).
    expected_first, expected_second = (as_multiset(expected_records(truth)["user_events"]) for truth in (first_truth, second_truth))
    arrived_since_first = set(expected_second) - set(expected_first)
    assert arrived_since_first and arrived_since_first <= set(second_records) <= set(expected_second)
    assert len(second_records) < len(expected_second)
    assert set(as_multiset(first.records["user_events"])) | set(second_records) == set(expected_first) | set(expected_second)


def test_check_succeeds_with_gzip_a_lone_surrogate_and_the_100_item_limit(emulator, tmp_path):
    config = emulator_config(emulator, emulator.ground_truth())
    check = run_connector("check", tmp_path, config)
    statuses = [message["connectionStatus"] for message in check.messages if message["type"] == "CONNECTION_STATUS"]
    assert [status["status"] for status in statuses] == ["SUCCEEDED"], statuses


def test_the_warehouse_command_loads_the_ground_truth_exactly_once(emulator, tmp_path):
    """The third mode that ships: PyAirbyte runs the installed connector into DuckDB."""
    import subprocess
    import sys

    import duckdb

    truth = emulator.ground_truth()
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(emulator_config(emulator, truth)))
    db_path = tmp_path / "warehouse.duckdb"
    completed = subprocess.run(
        [sys.executable, "-m", "segment_profile_warehouse", "sync", "--config", str(config_path), "--db", str(db_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    expected = expected_records(truth)
    with duckdb.connect(str(db_path), read_only=True) as connection:
        for stream in STREAMS:
            count = connection.execute(f"SELECT count(*) FROM segment_profile.{stream}").fetchone()[0]
            assert count == len(expected[stream]), f"{stream}: {count} rows, {len(expected[stream])} in the ground truth"
        events = connection.execute('SELECT count(*), count(DISTINCT (external_id, "messageId")) FROM segment_profile.user_events').fetchone()
        assert events[0] == events[1]
        nicknames = connection.execute(
            "SELECT json_extract_string(traits, '$.nickname') FROM segment_profile.user_traits WHERE json_extract_string(traits, '$.nickname') IS NOT NULL"
        ).fetchall()
    assert sorted(value for (value,) in nicknames) == [DELIVERED_VALUE] * len(SURROGATE_USERS)
    assert_typed_trait_columns(db_path, truth)


# What PyAirbyte creates in DuckDB for each column type (issue 23; the docs' data type map).
DUCKDB_TYPES = {
    "string": "VARCHAR", "integer": "BIGINT", "number": "DECIMAL(38,9)", "boolean": "BOOLEAN",
    "date-time": "TIMESTAMP", "object": "JSON", "array": "JSON",
}


def assert_typed_trait_columns(db_path, truth):
    """Every trait column of user_traits and account_traits lands with its DuckDB type and holds the
    API's value, null where a profile lacks the trait (the sample is the first 50 profiles: the
    typed columns come from the same data)."""
    import duckdb

    from source_segment_profile.trait_columns import TraitColumns, kind_of

    with duckdb.connect(str(db_path), read_only=True) as connection:
        for stream, profiles in (("user_traits", truth["users"]), ("account_traits", truth["accounts"])):
            sampled = TraitColumns.from_sample([profile["traits"] for profile in profiles[:50]])
            types = dict(connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'segment_profile' AND table_name = ?", [stream]
            ).fetchall())
            columns = {name: column for name, (column, _) in sampled.columns.items()}
            assert {column for column in types if column.startswith("trait_")} == set(columns.values()), stream
            for name, (column, kind) in sampled.columns.items():
                assert types[column] == DUCKDB_TYPES[kind], (stream, column, types[column])
            seen_kinds = {kind for _, kind in sampled.columns.values()}
            assert {"string", "integer", "number", "boolean", "object", "array"} <= seen_kinds or stream == "account_traits"
            rows = connection.execute(f"SELECT external_id, {', '.join(columns.values())} FROM segment_profile.{stream}").fetchall()
            by_id = {row[0]: dict(zip(columns, row[1:])) for row in rows}
            for profile in profiles:
                cells = by_id[profile["lookup_id"]]
                for name, (column, kind) in sampled.columns.items():
                    value, landed = profile["traits"].get(name), cells[name]
                    if value is None or kind_of(value) not in (kind, "date-time" if kind == "string" else kind, "integer" if kind == "number" else kind):
                        assert landed is None, (stream, name, value, landed)
                    elif kind in ("object", "array"):
                        assert json.loads(landed) == value, (stream, name)
                    elif kind == "date-time":
                        instant = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
                        assert landed == instant.replace(tzinfo=None), (stream, name, value, landed)  # UTC
                    elif kind == "number":  # DECIMAL(38, 9): nine decimal places
                        assert landed == Decimal(repr(value)).quantize(Decimal("1e-9")), (stream, name, value, landed)
                    else:
                        assert landed == value, (stream, name, value, landed)
