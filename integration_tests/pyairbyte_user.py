"""What a PyAirbyte user runs: get_source() with a pip_url, check, a read into DuckDB.

    python pyairbyte_user.py WHEEL_OR_PIP_URL CONFIG.json STREAM...

From the current directory, as PyAirbyte does by default: it installs the connector into a fresh
virtualenv `.venv-source-segment-profile` there (with uv) and reads into `pyairbyte.duckdb`. Then
it prints one JSON line: what PyAirbyte's registry knows of the connector, the version it sees
installed, the streams the connector discovers, and the external id of each row read.

integration_tests/test_packaging.py runs it in a process of its own: PyAirbyte takes its settings
(registry, telemetry) from the environment when it is imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

CONNECTOR_NAME = "source-segment-profile"
SCHEMA_NAME = "segment_profile"


def main(pip_url: str, config_path: str, *streams: str) -> None:
    import airbyte as ab
    from airbyte.caches import DuckDBCache
    from airbyte.registry import get_connector_metadata

    registered = get_connector_metadata(CONNECTOR_NAME)
    source = ab.get_source(CONNECTOR_NAME, config=json.loads(Path(config_path).read_text()), pip_url=pip_url)
    source.check()
    source.select_streams(list(streams))
    cache = DuckDBCache(db_path="pyairbyte.duckdb", schema_name=SCHEMA_NAME)
    try:
        source.read(cache=cache)
        tables = {
            stream: [row["external_id"] for row in cache.run_sql_query(f"SELECT external_id FROM {SCHEMA_NAME}.{stream}")]
            for stream in streams
        }
    finally:
        cache.close()
    print(json.dumps({
        "registry": {"package": registered.pypi_package_name, "install_type": registered.default_install_type.value},
        "installed_version": source.executor.get_installed_version(),
        "streams": source.get_available_streams(),
        "external_ids": tables,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
