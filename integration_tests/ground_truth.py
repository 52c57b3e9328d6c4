"""What the connector must emit for an emulator's ground truth: the records of each stream."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable


# Streams whose incremental records carry the connector's `read_at` (streams.READ_AT).
READ_AT_STREAMS = ("user_traits", "user_links")
def read_at_of(truth: dict[str, Any]) -> str:
    """The `read_at` of an incremental sync of a frozen emulator clock: its now less the skew margin."""
    from source_segment_profile.config import parse_timestamp
    from source_segment_profile.read_through_state import SKEW_MARGIN, format_timestamp

    return format_timestamp(parse_timestamp(truth["now"]) - SKEW_MARGIN)


def with_read_at(records: dict[str, list[dict[str, Any]]], read_at: str) -> dict[str, list[dict[str, Any]]]:
    """The records of an incremental sync: user_traits and user_links rows carry `read_at`."""
    return {stream: [{**record, "read_at": read_at} for record in rows] if stream in READ_AT_STREAMS else rows for stream, rows in records.items()}


def expected_records(truth: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    expected: dict[str, list[dict[str, Any]]] = {stream: [] for stream in (
        "user_traits", "user_events", "user_external_ids", "user_metadata", "user_links",
        "user_audiences", "user_computed_traits", "account_traits", "account_external_ids",
    )}
    for user in truth["users"]:
        lookup = user["lookup_id"]
        expected["user_traits"].append(traits_record(lookup, user))
        for name, detail in user["trait_details"].items():
            update = {"updated_at": detail["updated_at"], "source_id": detail["source_id"]}
            value = user["traits"][name]
            if detail["class"] == "audience":
                expected["user_audiences"].append({"external_id": lookup, "audience": name, "in_audience": value if isinstance(value, bool) else None, **update})
            elif detail["class"] == "computed_trait":
                expected["user_computed_traits"].append({"external_id": lookup, "trait": name, "value": value, **update})
        for event in user["events"]:
            record = {**event, "external_id": lookup}
            if record.get("messageId") is None and record.get("message_id") is not None:
                record["messageId"] = record["message_id"]
            expected["user_events"].append(record)
        expected["user_external_ids"] += [{**item, "external_id": lookup} for item in user["external_ids"]]
        metadata = user["metadata"].get("metadata", user["metadata"])
        expected["user_metadata"].append({**metadata, "external_id": lookup})
        for link in user["links"]:
            ids = [f"{entry['type']}:{entry['id']}" for entry in link.get("external_ids") or []]
            expected["user_links"].append({**link, "external_id": lookup, "linked_external_id": min(ids, default="")})
    for account in truth["accounts"]:
        lookup = account["lookup_id"]
        expected["account_traits"].append(traits_record(lookup, account))
        expected["account_external_ids"] += [{**item, "external_id": lookup} for item in account["external_ids"]]
    return expected


def traits_record(lookup: str, profile: dict[str, Any]) -> dict[str, Any]:
    """A traits stream's record: the plain values and, from verbose=true, each trait's last update.
    (A profile without traits answers an empty page: no provenance.)"""
    record = {"external_id": lookup, "traits": profile["traits"]}
    if profile["traits"]:
        record["traits_provenance"] = {
            name: {"updated_at": detail["updated_at"], "source_id": detail["source_id"]} for name, detail in profile["trait_details"].items()
        }
    return record


def as_multiset(records: Iterable[dict[str, Any]]) -> Counter[str]:
    """Records as canonical JSON strings, counted: equal multisets mean every record exactly once."""
    return Counter(json.dumps(record, sort_keys=True) for record in records)


def lookup_ids(truth: dict[str, Any]) -> tuple[list[str], list[str]]:
    return [user["lookup_id"] for user in truth["users"]], [account["lookup_id"] for account in truth["accounts"]]
