"""The README's first command, `make demo`, on a small profile count, so that it cannot rot."""

import re
import subprocess
import sys
from pathlib import Path

import duckdb

from integration_tests.connector_cli import STREAMS

WAREHOUSE = [sys.executable, "-m", "segment_profile_warehouse"]


def run_demo(db_path: Path) -> str:
    completed = subprocess.run(
        [*WAREHOUSE, "demo", "--users", "30", "--accounts", "3", "--db", str(db_path)],
        capture_output=True, text=True, timeout=600, cwd=db_path.parent,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    # Only what a user acts on: no library's warnings (Google's clients print four at import).
    assert not re.search(r"^\w*Warning: ", completed.stdout + completed.stderr, re.M), completed.stderr[:3000]
    assert "Could not determine airbyte type" not in completed.stdout + completed.stderr
    return completed.stdout


def table_counts(output: str) -> dict[str, int]:
    return {name: int(count.replace(",", "")) for name, count in re.findall(r"segment_profile\.(\w+)\s+([\d,]+)", output)}


def test_demo_syncs_every_stream_into_duckdb_and_continues_incrementally(tmp_path):
    db_path = tmp_path / "demo.duckdb"
    first = run_demo(db_path)

    counts = table_counts(first)
    assert set(counts) == set(STREAMS)
    assert counts["user_traits"] == 30 and counts["user_metadata"] == 30 and counts["account_traits"] == 3
    assert counts["user_events"] > 0
    assert "Summary user_events: 30 profiles read" in first
    assert "Most frequent events:" in first and f"DuckDB file: {db_path}" in first
    # Issue 23: queries on typed trait columns, no JSON extraction.
    assert "Users by VIP status (typed columns trait_is_vip, trait_ltv" in first, first
    assert "Users per favorite color (typed column trait_favorite_color):" in first
    audiences = re.findall(r"^  (audience_\w+)\s+[\d,]+ of [\d,]+ profiles$", first, re.M)
    assert audiences == ["audience_churn_risk", "audience_high_value", "audience_newsletter_engaged"]
    vip_lines = [line for line in first.splitlines() if line.strip().startswith("vip=")]
    assert sum(int(line.split()[1].replace(",", "")) for line in vip_lines) == 30
    assert db_path.exists()
    with duckdb.connect(str(db_path), read_only=True) as connection:
        events = connection.execute('SELECT count(*), count(DISTINCT (external_id, "messageId")) FROM segment_profile.user_events').fetchone()
    assert events[0] == events[1] == counts["user_events"]

    second = run_demo(db_path)
    # The second run reads only the events since each profile's watermark (less the lookback):
    # far fewer than the first, one request per profile, and the table does not double.
    first_events = int(re.search(r"Summary user_events: .*?, (\d+) records", first).group(1))
    second_events = int(re.search(r"Summary user_events: .*?, (\d+) records, (\d+) requests", second).group(1))
    second_requests = int(re.search(r"Summary user_events: .*?, \d+ records, (\d+) requests", second).group(1))
    assert second_events < first_events
    assert second_requests == 30
    assert table_counts(second)["user_events"] < 2 * counts["user_events"]
    assert table_counts(second)["user_traits"] == 30
