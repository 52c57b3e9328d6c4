"""Syncing the connector into an embedded DuckDB warehouse through PyAirbyte.

    segment-profile-warehouse demo                       # emulator + ~1,000 users -> demo-output/
    segment-profile-warehouse sync --config my.json --db segment.duckdb   # a real space

PyAirbyte keeps the incremental state in the DuckDB file (`<schema>._airbyte_state`), so running
either command again continues where the last run stopped (user_events appends only new events).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

from source_segment_profile.source import STREAM_NAMES

SCHEMA_NAME = "segment_profile"
DEMO_OUTPUT = Path("demo-output")
# The connector's own progress and summary lines; PyAirbyte only writes connector logs to its file.
CONNECTOR_LINES_SHOWN = ("Progress ", "Summary ")


def _prepare_pyairbyte_environment(work_dir: Path) -> None:
    """Must run before `import airbyte`: PyAirbyte reads these settings when it is imported.

    Offline mode: without it get_source() looks the name up in Airbyte's online registry (and
    can hang: no timeout). Telemetry is a blocking POST. A private temp dir: a killed read leaves
    the config, token included, in it. Google's client libraries, which PyAirbyte imports for its
    BigQuery cache, warn at import that they will drop this Python release one day: nothing for a
    user of DuckDB to act on.
    """
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core\._python_version_support")
    os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("NO_LIVE_PROGRESS", "1")
    private_tmp = work_dir / ".pyairbyte-tmp"
    private_tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.setdefault("AIRBYTE_TEMP_DIR", str(private_tmp))
    os.environ.setdefault("AIRBYTE_LOGGING_ROOT", str(work_dir / "logs"))


def _quiet_about_any_json_fields(types_module: Any) -> None:
    """PyAirbyte prints "Could not determine airbyte type from JSON schema" for a field of no single
    JSON type (user_computed_traits' `value`: any JSON, as Airbyte's destinations store it) once per
    batch, then stores it as text holding the JSON: nothing a user acts on. Its other notices pass."""
    shown = types_module.print

    def print_unless_any_json(*args: Any, **kwargs: Any) -> None:
        if not (args and str(args[0]).startswith("Could not determine airbyte type from JSON schema: {'description'")):
            shown(*args, **kwargs)

    types_module.print = print_unless_any_json


def connector_executable() -> str:
    """The installed connector CLI, next to this interpreter (the same venv) or on PATH."""
    beside = Path(sys.executable).parent / "source-segment-profile"
    found = str(beside) if beside.exists() else shutil.which("source-segment-profile")
    if not found:
        raise SystemExit("source-segment-profile is not installed: run `make demo` or `pip install .[warehouse]`.")
    return found


def sync_to_duckdb(config: Mapping[str, Any], db_path: Path, streams: tuple[str, ...] = STREAM_NAMES) -> dict[str, int]:
    """Reads the selected streams into the DuckDB file; returns the row count of every table."""
    db_path = db_path.resolve()
    if db_path.stem == SCHEMA_NAME:
        # DuckDB then cannot tell the catalog from the schema ("Ambiguous reference").
        raise SystemExit(f"Name the DuckDB file something other than {SCHEMA_NAME}.duckdb, e.g. segment.duckdb.")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    _prepare_pyairbyte_environment(db_path.parent)
    import airbyte as ab  # noqa: E402 (the environment above must be set first)
    import airbyte.types
    from airbyte.caches import DuckDBCache

    _quiet_about_any_json_fields(airbyte.types)

    source = ab.get_source("source-segment-profile", config=dict(config), local_executable=connector_executable())
    _show_connector_progress(source)
    source.select_streams(list(streams))
    cache = DuckDBCache(db_path=str(db_path), schema_name=SCHEMA_NAME)
    try:
        print(f"Syncing {len(streams)} streams into {db_path} (schema {SCHEMA_NAME})...", flush=True)
        source.read(cache=cache)
        counts = {
            stream: cache.run_sql_query(f"SELECT count(*) AS n FROM {SCHEMA_NAME}.{stream}")[0]["n"]
            for stream in streams
        }
        print("\nRows per table:")
        for stream, count in counts.items():
            print(f"  {SCHEMA_NAME}.{stream:<22} {count:>9,}")
        _print_example_queries(cache, streams)
    finally:
        cache.close()
    print(f"\nDuckDB file: {db_path}")
    return counts


def _show_connector_progress(source: Any) -> None:
    # PyAirbyte sends connector LOG messages only to its log file; echo ours so that the user sees
    # the same progress and summary figures as in an Airbyte job log. (A private hook of the
    # pinned PyAirbyte 0.71.3; if it changes, progress is simply not echoed.)
    write_to_file = getattr(source, "_print_info_message", None)
    if write_to_file is None:
        return

    def print_info_message(message: str) -> None:
        write_to_file(message)
        if message.startswith(CONNECTOR_LINES_SHOWN):
            print(f"  {message}", flush=True)

    source._print_info_message = print_info_message


def _print_example_queries(cache: Any, streams: tuple[str, ...]) -> None:
    if "user_events" in streams:
        print("\nMost frequent events:")
        rows = cache.run_sql_query(
            f"SELECT coalesce(event, type) AS name, count(*) AS n FROM {SCHEMA_NAME}.user_events "
            "GROUP BY 1 ORDER BY n DESC, name LIMIT 5"
        )
        for row in rows:
            print(f"  {row['name']:<28} {row['n']:>9,}")
    typed = _typed_trait_columns(cache)
    if {"trait_is_vip", "trait_ltv"} <= typed.get("user_traits", set()):
        print("\nUsers by VIP status (typed columns trait_is_vip, trait_ltv: no JSON extraction):")
        rows = cache.run_sql_query(
            f"SELECT trait_is_vip AS vip, count(*) AS n, round(avg(trait_ltv), 2) AS ltv FROM {SCHEMA_NAME}.user_traits "
            "GROUP BY 1 ORDER BY 1 NULLS LAST"
        )
        for row in rows:
            print(f"  vip={str(row['vip']):<5}  {row['n']:>7,} users, average lifetime value {row['ltv']}")
    if "trait_favorite_color" in typed.get("user_traits", set()):
        print("\nUsers per favorite color (typed column trait_favorite_color):")
        rows = cache.run_sql_query(
            f"SELECT trait_favorite_color AS color, count(*) AS n FROM {SCHEMA_NAME}.user_traits GROUP BY 1 ORDER BY n DESC, 1 LIMIT 5"
        )
        for row in rows:
            print(f"  {str(row['color']):<28} {row['n']:>9,}")
    if "user_audiences" in streams:
        print("\nAudience sizes (user_audiences):")
        rows = cache.run_sql_query(
            f"SELECT audience, count(*) FILTER (WHERE in_audience) AS members, count(*) AS profiles "
            f"FROM {SCHEMA_NAME}.user_audiences GROUP BY 1 ORDER BY 1"
        )
        for row in rows:
            print(f"  {row['audience']:<32} {row['members']:>7,} of {row['profiles']:,} profiles")
    if "user_traits" in streams:
        rows = cache.run_sql_query(
            f"SELECT external_id, traits FROM {SCHEMA_NAME}.user_traits ORDER BY external_id LIMIT 1"
        )
        if rows:
            traits = rows[0]["traits"]
            traits = json.loads(traits) if isinstance(traits, str) else traits
            shown = dict(list(traits.items())[:6])
            print(f"\nTraits of {rows[0]['external_id']} (first {len(shown)} of {len(traits)}):")
            print("  " + json.dumps(shown, ensure_ascii=False, default=str)[:400])


def _typed_trait_columns(cache: Any) -> dict[str, set[str]]:
    """The trait_<name> columns each table of the warehouse has (none when discover sampled no profile)."""
    rows = cache.run_sql_query(
        f"SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = '{SCHEMA_NAME}' AND column_name LIKE 'trait\\_%' ESCAPE '\\'"
    )
    columns: dict[str, set[str]] = {}
    for row in rows:
        columns.setdefault(row["table_name"], set()).add(row["column_name"])
    return columns


def run_demo(users: int, accounts: int, db_path: Path, seed: int) -> dict[str, int]:
    """Starts the local emulator, syncs every user it lists and every account they link to, stops the emulator."""
    from segment_profile_emulator.testing import running_emulator

    print(f"Starting the local Profile API emulator with {users} users and {accounts} accounts...", flush=True)
    with running_emulator(users=users, accounts=accounts, seed=seed) as emulator:
        # Nobody is listed by hand: every user comes from the API's list method, every account
        # from the users' links, as a warehouse sync of a whole space would read them.
        config = {
            "space_id": emulator.space_id,
            "access_token": emulator.token,
            "api_base_url": emulator.url,
            "read_all_users": True,
            "accounts_from_user_links": True,
            "requests_per_second": 80,
        }
        print(f"Emulator at {emulator.url} (clock {emulator.clock()}).", flush=True)
        counts = sync_to_duckdb(config, db_path)
    print("Emulator stopped. Run the same command again to continue incrementally.")
    return counts


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="segment-profile-warehouse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="sync the local emulator's profiles into DuckDB")
    demo.add_argument("--users", type=int, default=1000)
    demo.add_argument("--accounts", type=int, default=100)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--db", type=Path, default=DEMO_OUTPUT / "segment_profile_demo.duckdb")
    sync = commands.add_parser("sync", help="sync a real space (a connector config file) into DuckDB")
    sync.add_argument("--config", type=Path, required=True, help="a connector config JSON (see README)")
    sync.add_argument("--db", type=Path, required=True, help="the DuckDB file to create or continue")
    sync.add_argument("--streams", nargs="+", choices=STREAM_NAMES, default=list(STREAM_NAMES))
    args = parser.parse_args(argv)
    if args.command == "demo":
        run_demo(args.users, args.accounts, args.db, args.seed)
    else:
        sync_to_duckdb(json.loads(args.config.read_text()), args.db, tuple(args.streams))
    return 0


if __name__ == "__main__":
    sys.exit(main())
