"""Typed trait columns: besides the `traits` object, one top-level `trait_<name>` column per trait.

Which traits get a column, and of which type, is decided at `discover` from a sample of profiles
(`trait_columns_sample_size`), and lands in the catalog; a sync fills the columns its configured
catalog declares, so a trait that appears later stays in `traits` until the schema is refreshed.

- Names: lower-case letters, digits and underscores (`Plan Type` -> `trait_plan_type`), safe in
  every destination. Traits whose names become the same column stay in `traits` only.
- Types: boolean, integer, number, string, date-time (every sampled value an ISO 8601 timestamp),
  object and array (JSON). Integers and numbers together make a number; timestamps and other
  strings together a string; anything else together is a conflict: that trait stays in `traits`.
- A value that does not fit its column (a string where the sample saw numbers, an integer beyond
  64 bits) leaves the column null; `traits` keeps it exact, and the stream summary counts it.
  Nothing fails a sync and nothing is lost.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping, Optional

COLUMN_PREFIX = "trait_"
UNSAFE = re.compile(r"[^a-z0-9_]+")
# An ISO 8601 date-time with a time zone (Segment writes `2026-11-20T10:00:00.000Z`).
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")
# Destinations store integers in 64 bits (BIGINT): larger ones stay in `traits`.
INT64 = range(-(2**63), 2**63)
# Airbyte's number becomes a DECIMAL(38, 9) in some destinations (PyAirbyte's DuckDB among them):
# 29 digits before the point. A larger number (or inf, nan) would fail the load: it stays in `traits`.
NUMBER_LIMIT = 1e29

SCHEMAS = {
    "boolean": {"type": ["null", "boolean"]},
    "integer": {"type": ["null", "integer"]},
    "number": {"type": ["null", "number"]},
    "string": {"type": ["null", "string"]},
    "date-time": {"type": ["null", "string"], "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
    "object": {"type": ["null", "object"], "additionalProperties": True},
    "array": {"type": ["null", "array"]},
}


def column_name(trait: str) -> str:
    return COLUMN_PREFIX + UNSAFE.sub("_", trait.lower()).strip("_")


def kind_of(value: Any) -> Optional[str]:
    """The column type one value asks for; None for a null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if value in INT64 else "integer beyond 64 bits"
    if isinstance(value, float):
        return "number" if abs(value) < NUMBER_LIMIT else "number beyond 29 digits"
    if isinstance(value, str):
        return "date-time" if TIMESTAMP.match(value) else "string"
    return "object" if isinstance(value, dict) else "array"


def column_kind(kinds: set[str]) -> Optional[str]:
    """The type of a column whose sampled values asked for `kinds`; None when they conflict."""
    if kinds <= {"integer", "number"}:
        return "number" if "number" in kinds else "integer"
    if kinds <= {"string", "date-time"}:
        return "date-time" if kinds == {"date-time"} else "string"
    if len(kinds) == 1 and next(iter(kinds)) in SCHEMAS:
        return next(iter(kinds))
    return None  # a mix, or integers beyond 64 bits (no destination column holds them exactly)


def fits(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) and value in INT64
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < NUMBER_LIMIT
    if kind == "date-time":
        return isinstance(value, str) and bool(TIMESTAMP.match(value)) and _parses(value)
    return kind_of(value) == kind or (kind == "string" and kind_of(value) == "date-time")


def _parses(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@dataclass
class TraitColumns:
    """Trait name -> (column, type); and, when sampled, what stayed in `traits` only and why."""

    columns: dict[str, tuple[str, str]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)  # trait -> why it has no column

    @classmethod
    def from_sample(cls, traits_of_profiles: Iterable[Mapping[str, Any]], only: tuple[str, ...] = ()) -> "TraitColumns":
        kinds: dict[str, set[str]] = defaultdict(set)
        for traits in traits_of_profiles:
            for name, value in traits.items():
                if not only or name in only:
                    kinds[name].update(filter(None, [kind_of(value)]))
        found = cls()
        by_column: dict[str, list[str]] = defaultdict(list)
        for name in kinds:
            by_column[column_name(name)].append(name)
        for column, names in by_column.items():
            for name in names:
                kind = column_kind(kinds[name]) if kinds[name] else None
                if len(names) > 1:
                    found.left_out[name] = f"its column name {column} is also that of {', '.join(repr(other) for other in names if other != name)}"
                elif column == COLUMN_PREFIX:
                    found.left_out[name] = "its name has no letter or digit"
                elif not kinds[name]:
                    found.left_out[name] = "every sampled value was null"
                elif kind is None:
                    found.left_out[name] = f"no column type holds every sampled value ({', '.join(sorted(kinds[name]))})"
                else:
                    found.columns[name] = (column, kind)
        for name in only:
            if name not in kinds:
                found.left_out[name] = "no sampled profile had it"
        return found

    @classmethod
    def from_schema(cls, json_schema: Mapping[str, Any]) -> "TraitColumns":
        """The columns a configured catalog declares (each column's `title` is its trait's name)."""
        found = cls()
        for column, declared in (json_schema.get("properties") or {}).items():
            if column.startswith(COLUMN_PREFIX) and isinstance(declared, Mapping) and declared.get("title"):
                kind = next((kind for kind, schema in SCHEMAS.items() if _same_type(schema, declared)), None)
                if kind:
                    found.columns[declared["title"]] = (column, kind)
        return found

    def schema_properties(self) -> dict[str, Any]:
        return {
            column: {**SCHEMAS[kind], "title": name, "description": f"The trait {name!r} ({kind}); null when a profile lacks it or its value does not fit."}
            for name, (column, kind) in sorted(self.columns.items(), key=lambda item: item[1][0])
        }

    def cells(self, traits: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        """Every column's value for a profile's traits, and how many values did not fit their column."""
        cells, misfits = {}, 0
        for name, (column, kind) in self.columns.items():
            value = traits.get(name)
            if value is not None and not fits(value, kind):
                misfits += 1
                value = None
            cells[column] = value
        return cells, misfits


def _same_type(schema: Mapping[str, Any], declared: Mapping[str, Any]) -> bool:
    return sorted(schema["type"]) == sorted(declared.get("type") or []) and schema.get("format") == declared.get("format")
