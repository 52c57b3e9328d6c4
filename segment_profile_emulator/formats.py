"""Time and text as the Profile API writes them: epoch-millisecond units, ISO 8601 timestamps,
compact UTF-8 JSON, and what a count is in it."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# "Only about the last 14 days of events are kept" (Segment Profile API docs).
RETENTION_MS = 14 * DAY_MS
YEAR_MS = 365 * DAY_MS


_SURROGATE = re.compile("[\ud800-\udfff]")


def to_json_bytes(value: Any, lone_surrogates: str = "escape") -> bytes:
    """Compact UTF-8 JSON, as the API sends it.

    A lone surrogate (a Python str can hold one, UTF-8 cannot) is written as its six-character
    \\uXXXX escape, as JavaScript's JSON.stringify writes it: the body is valid UTF-8 that
    Python's json accepts and strict parsers (orjson) reject. With lone_surrogates="replace" it
    becomes U+FFFD instead, as a client that cannot hold lone surrogates delivers it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:  # only text with a lone surrogate pays for the substitution
        if lone_surrogates == "replace":
            return _SURROGATE.sub("\ufffd", text).encode()
        return _SURROGATE.sub(lambda match: "\\u%04x" % ord(match.group()), text).encode()


def format_timestamp(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds, as the Profile API writes it: 2026-11-20T10:11:12.345Z."""
    seconds, millis = divmod(epoch_ms, 1000)
    moment = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (*moment[:6], millis)


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 timestamp; a timestamp without offset is UTC."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
