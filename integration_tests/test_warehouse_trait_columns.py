"""Typed trait columns through PyAirbyte into DuckDB, at their edges (issue 23): a collision, a type
conflict, a value that does not fit and a trait that appears after discover.

The warehouse command (PyAirbyte running the installed connector, discover then read) syncs
user_traits from a local server whose answers the test writes: discover samples the first two
profiles, the sync also reads a third whose traits disagree with the sample.
"""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb

from unit_tests.builders import SPACE_ID, TOKEN, traits_page
from unit_tests.local_server import LocalProfileServer

SAMPLED = {
    "user_id:u1": {"plan": "pro", "seats": 3, "Team Size": 10, "team_size": 11, "mixed": 1, "renewal": "2026-12-01T00:00:00Z"},
    "user_id:u2": {"plan": "free", "seats": 1, "mixed": "one"},
}
LATER = {"user_id:u3": {"plan": "team", "seats": "three", "renewal": "soon", "referrer": "newsletter"}}


def test_collisions_conflicts_misfits_and_new_traits_in_duckdb(tmp_path):
    server = LocalProfileServer()
    for external_id, traits in {**SAMPLED, **LATER}.items():
        server.replies("user_traits", external_id, traits_page(traits))
    db_path = tmp_path / "warehouse.duckdb"

    with server.running():
        config = {
            "space_id": SPACE_ID, "access_token": TOKEN, "api_base_url": server.url,
            "user_external_ids": [*SAMPLED, *LATER], "trait_columns_sample_size": 2,
        }
        (tmp_path / "config.json").write_text(json.dumps(config))
        completed = subprocess.run(
            [sys.executable, "-m", "segment_profile_warehouse", "sync", "--config", str(tmp_path / "config.json"), "--db", str(db_path), "--streams", "user_traits"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    # The summary counts the values that did not fit: u3's seats and renewal.
    assert "2 trait values did not fit their typed column" in completed.stdout

    with duckdb.connect(str(db_path), read_only=True) as connection:
        columns = dict(connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'segment_profile' AND table_name = 'user_traits' "
            "AND column_name LIKE 'trait%'"
        ).fetchall())
        rows = {row[0]: row[1:] for row in connection.execute(
            "SELECT external_id, trait_plan, trait_seats, trait_renewal, json_extract(traits, '$.seats'), json_extract_string(traits, '$.referrer') "
            "FROM segment_profile.user_traits"
        ).fetchall()}

    # `Team Size` and `team_size` both make trait_team_size; `mixed` was an integer and a string:
    # all three stay in `traits` only.
    assert {name: kind for name, kind in columns.items() if name.startswith("trait_")} == {
        "trait_plan": "VARCHAR", "trait_seats": "BIGINT", "trait_renewal": "TIMESTAMP",
    }
    assert rows["user_id:u1"][:2] == ("pro", 3)
    # u3: `seats` does not fit BIGINT and `renewal` is not a timestamp: null columns, exact traits.
    # `referrer` appeared after discover: in traits, no column until the schema is refreshed.
    plan, seats, renewal, seats_in_traits, referrer = rows["user_id:u3"]
    assert (plan, seats, renewal) == ("team", None, None)
    assert json.loads(seats_in_traits) == "three" and referrer == "newsletter"
