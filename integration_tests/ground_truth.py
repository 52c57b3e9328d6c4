"""What the connector must emit for an emulator's ground truth: the records of each stream."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Iterable


def expected_records(truth: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    expected: dict[str, list[dict[str, Any]]] = {stream: [] for stream in (
        "user_traits", "user_events", "user_external_ids", "user_metadata", "user_links",
        "account_traits", "account_external_ids",
    )}
    for user in truth["users"]:
        lookup = user["lookup_id"]
        expected["user_traits"].append({"external_id": lookup, "traits": user["traits"]})
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
        expected["account_traits"].append({"external_id": lookup, "traits": account["traits"]})
        expected["account_external_ids"] += [{**item, "external_id": lookup} for item in account["external_ids"]]
    return expected


def as_multiset(records: Iterable[dict[str, Any]]) -> Counter[str]:
    """Records as canonical JSON strings, counted: equal multisets mean every record exactly once."""
    return Counter(json.dumps(record, sort_keys=True) for record in records)


def lookup_ids(truth: dict[str, Any]) -> tuple[list[str], list[str]]:
    return [user["lookup_id"] for user in truth["users"]], [account["lookup_id"] for account in truth["accounts"]]
