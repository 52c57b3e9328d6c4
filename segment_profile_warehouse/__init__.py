"""Embedded-warehouse syncs of the connector (PyAirbyte + DuckDB); needs the `warehouse` extra."""
