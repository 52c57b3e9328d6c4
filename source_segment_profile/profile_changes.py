"""The change signal the user streams of a sync share: each user's metadata `updated_at`.

With skip_unchanged_profiles, a stream skips a user whose metadata has not moved since the stream
last read it (read_through_state.py holds when that was). Segment moves a profile's metadata with
every message that reaches it, so one metadata request tells whether any of the user's other
resources can have changed. It is read once per user and sync: the user_metadata stream reads it
first (source.py orders it before the other user streams) and remembers what it read; a stream that
meets a user not looked up yet (user_metadata not selected, or read by an interrupted attempt)
reads it through the user_metadata stream's own engine: one request, the same contract.
"""

from __future__ import annotations

import math
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, Optional

from source_segment_profile.config import parse_timestamp
from source_segment_profile.masking import profile_key
from source_segment_profile.profile_reader import ProfileRead, ReadItem, RecordsRead

ReadMetadata = Callable[[str, threading.Event], Iterator[ReadItem]]


class ProfileChanges:
    """Each user's metadata `updated_at` as read in this sync, by profile key.

    A dict of two ints a user (~110 bytes in CPython: ~110 MB at a million users), filled on many
    threads at once; each user is written by one thread (a stream reads a profile once).
    """

    def __init__(self) -> None:
        self._updated_at: dict[int, Optional[int]] = {}  # milliseconds since the epoch; None: not known (404, absent)
        self._read_metadata: Optional[ReadMetadata] = None
        self._lookups = 0
        self._lookups_lock = threading.Lock()

    def read_with(self, read_metadata: ReadMetadata) -> None:
        """How a user missing here is read: the user_metadata stream's engine (its pages, records, errors)."""
        self._read_metadata = read_metadata

    def remember(self, external_id: str, metadata: Optional[Mapping[str, Any]]) -> None:
        """The metadata read for the user (None: it answered 404). An `updated_at` that cannot be
        read counts as not known: such a user is never skipped."""
        self._updated_at[profile_key(external_id)] = _milliseconds((metadata or {}).get("updated_at"))

    @property
    def lookups(self) -> int:
        """Users whose metadata a stream had to read for itself (not read earlier in the sync)."""
        return self._lookups

    def updated_at(self, external_id: str, stopping: threading.Event) -> Optional[datetime]:
        """The user's metadata `updated_at`, read now if no stream read it yet in this sync; None
        when not known, or when the reading stopped before it came."""
        key = profile_key(external_id)
        if key not in self._updated_at:
            with self._lookups_lock:
                self._lookups += 1
            for item in self._read_metadata(external_id, stopping):
                if isinstance(item, RecordsRead):
                    self.remember(external_id, item.records[0] if item.records else None)
                elif isinstance(item, ProfileRead) and not item.found:
                    self.remember(external_id, None)
        milliseconds = self._updated_at.get(key)
        return None if milliseconds is None else datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc)


def _milliseconds(value: Any) -> Optional[int]:
    try:
        # Up, not to the nearest: a metadata that moved within the watermark's millisecond is never skipped.
        return math.ceil(parse_timestamp(value).timestamp() * 1000)
    except (TypeError, ValueError):
        return None
