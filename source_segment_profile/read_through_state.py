"""A profile stream's incremental state: for each profile, the instant it was read through.

user_events reads every event that reached the API before that instant; the streams that skip
unchanged profiles (skip_unchanged_profiles: user_traits, user_external_ids, user_links,
user_metadata) compare it with the profile's metadata `updated_at`: a profile whose metadata has
not moved since it was read through is current in the destination.

The API keeps ~14 days of events, so what an incremental sync misses is gone for good. An event's
`timestamp` is when it happened on the device: mobile SDKs send queued events hours or days late,
and device clocks can be a year off. So a profile's cursor is never an event's timestamp. It is
the sync's own start time on the API's clock (the Date header of the stream's first answer) minus
SKEW_MARGIN: everything that had reached the API by then was read. The next sync asks for events
from that watermark minus the lookback window, so an event that reaches the API up to `lookback`
after it happened is delivered, a future-stamped event is delivered (and hides nothing), and the
overlap is the same records again, which append + dedup on the primary key removes. A profile
skipped as unchanged, or that answered 404, keeps the watermark it had.

A profile the state does not know (new to the config) is read with no lower bound but the
configured start date: its whole history the API keeps.

State (version 3), sized for a million profiles:
  {"state_version": 3, "read_through": [{"watermark": ts, "profile_count": n, "profile_keys": text}],
   "full_pass_at": ts}
One entry per watermark: a finished sync leaves one, an interrupted one a few, skipping syncs one
more each until the next full pass. A profile costs only its 64-bit key (a digest of its id), and a
set of keys is coded compactly (key_sets.py): about 7.7 bytes a profile at 100,000 profiles, 7.2 at
a million. `full_pass_at` is the watermark of the last pass that read every profile (no skipping).
Version 2 (lists of 16-hex keys) and version 1 (a newest-event timestamp per 20-hex key) are migrated.
"""

from __future__ import annotations

import logging
from array import array
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np

from source_segment_profile import key_sets
from source_segment_profile.config import parse_timestamp
from source_segment_profile.errors import StateError
from source_segment_profile.masking import KEY_HEX_DIGITS, key_as_hex, mask_external_id, profile_key

STATE_VERSION = 3
logger = logging.getLogger("airbyte")
# The API's Date header has whole seconds and is written once the first answer is ready; other
# requests of the sync may have been served a little before it. Five minutes covers that, and
# any drift between the clock that writes Date and the one that files arriving events.
SKEW_MARGIN = timedelta(minutes=5)
# Keys are masking.profile_key's 64 bits (version 1 kept 80 bits of the same digest as hex, version 2 64).
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Each sync that skips unchanged profiles leaves one more watermark group (its skipped profiles
# keep theirs), and a state migrated from version 1 has a watermark per profile. Beyond this many
# groups, watermarks are lowered to the earliest of their bucket: an earlier watermark only
# re-reads (events again, or a profile it could have skipped), it never misses anything.
MAX_WATERMARK_GROUPS = 32


def state_error_advice(stream: str) -> str:
    """What a user does about a state that has no usable watermark at all. Never "Reset" or "Clear
    data": in Airbyte that deletes the stream's rows, and the API keeps only ~14 days of events, so
    the destination holds the only copy of everything older."""
    deleted = (
        "it deletes the events older than 14 days, which only your destination still holds"
        if stream == "user_events"
        else "it deletes the stream's rows in your destination, and a profile the API no longer finds would not come back"
    )
    window = "every event the API still keeps (~14 days)" if stream == "user_events" else "every profile"
    return (
        "Nothing was read and the state was not changed. To go on: run the connector version that wrote this state, "
        f"or in Airbyte refresh the {stream} stream keeping its records (Refresh, 'Retain records'): its next sync "
        f"then reads {window} and append + dedup removes the overlap. Do not use "
        f"Airbyte's Clear action on this stream: {deleted}."
    )


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def watermark_from_server_date(date_header: Optional[str], local_now: datetime) -> datetime:
    """The sync's start on the API's clock minus the skew margin; the local clock if no Date came.

    Whole milliseconds (the state's precision), rounded down: a resumed attempt reads back the
    same instant it wrote."""
    moment = local_now
    if date_header:
        try:
            moment = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            pass
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    moment = moment - SKEW_MARGIN
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class ReadThroughState:
    """Which profiles were read through which watermark, and the state message that says so.

    Profiles a past sync read are a sorted array of keys with, beside each, the index of its
    watermark: 16 bytes a profile in memory, looked up by binary search from any worker thread
    (they are never changed once loaded). Profiles this sync completes are appended to arrays of
    keys on the consumer's thread, and merged in when a message is built.
    """

    def __init__(
        self,
        keys: Optional[np.ndarray] = None,
        watermark_indexes: Optional[np.ndarray] = None,
        watermarks: Iterable[datetime] = (),
        stream: str = "user_events",
    ):
        self.stream = stream
        self._keys = keys if keys is not None else np.zeros(0, dtype=np.uint64)  # sorted, distinct
        self._watermark_indexes = watermark_indexes if watermark_indexes is not None else np.zeros(0, dtype=np.int64)
        self._watermarks = list(watermarks)  # ascending, distinct
        self._read_now = array("Q")  # keys read completely in this sync
        self._kept_now = array("Q")  # keys seen in this sync that keep their watermark: not found (404), or unchanged
        self._resumed_watermark: Optional[datetime] = None
        self.watermark: Optional[datetime] = None  # this sync's, once the first answer came
        self.full_pass_at: Optional[datetime] = None  # the watermark of the last pass that read every profile

    @classmethod
    def from_read_through(cls, keys: np.ndarray, watermarks: list[datetime], stream: str = "user_events") -> "ReadThroughState":
        """From each profile's key and watermark (in any order; for a key given twice, its latest watermark)."""
        distinct = sorted(set(watermarks))
        position = {watermark: index for index, watermark in enumerate(distinct)}
        indexes = np.fromiter((position[watermark] for watermark in watermarks), dtype=np.int64, count=len(watermarks))
        order = np.lexsort((indexes, keys))  # by key, then by watermark
        keys, indexes = keys[order], indexes[order]
        last_of_key = np.append(keys[1:] != keys[:-1], True) if len(keys) else np.zeros(0, dtype=bool)
        return cls(keys[last_of_key], indexes[last_of_key], distinct, stream)

    @classmethod
    def from_message(
        cls, value: Optional[Mapping[str, Any]], configured_ids: Iterable[str], now: datetime, stream: str = "user_events"
    ) -> "ReadThroughState":
        """Reads a state message; a state this version cannot read is a StateError.

        Accepted: `{}`; version 3; version 2 (`{"state_version": 2, "read_through": [{"watermark",
        "profiles": [16-hex key, ...]}]}`); version 1 (`{"state_version": 1, "profiles": {20-hex
        key: newest event timestamp}}`), whose cursors become watermarks, never later than `now`
        (a v1 cursor could be a future-stamped event's); and a stream-wide `{"timestamp": ...}`,
        which becomes the watermark of every configured profile. An unreadable `full_pass_at` is
        dropped (a full pass is then due: it only reads more).
        """
        state = cls._from_read_through_message(value, configured_ids, now, stream)
        try:
            state.full_pass_at = _timestamp(value.get("full_pass_at"), "full_pass_at") if value and value.get("full_pass_at") is not None else None
        except _Unreadable as problem:
            logger.warning(f"The {stream} state {problem}; the next pass reads every profile.")
        return state

    @classmethod
    def _from_read_through_message(cls, value: Any, configured_ids: Iterable[str], now: datetime, stream: str) -> "ReadThroughState":
        if not value:
            return cls(stream=stream)
        advice = state_error_advice(stream)
        if not isinstance(value, Mapping):
            raise StateError(f"The {stream} state is {type(value).__name__}, not an object. {advice}")
        version = value.get("state_version")
        try:
            if version is None and set(value) == {"timestamp"}:
                watermark = min(_timestamp(value["timestamp"], "timestamp"), now)
                keys = key_sets.sorted_keys([profile_key(external_id) for external_id in configured_ids])
                return cls.from_read_through(keys, [watermark] * len(keys), stream)
        except _Unreadable as problem:
            raise StateError(f"The {stream} state {problem}. {advice}") from None
        if version == 1 and isinstance(value.get("profiles"), Mapping):
            entries = [(f"profiles[{mask_external_id(str(key))!r}]", (key, cursor)) for key, cursor in value["profiles"].items()]
            usable = _usable(stream, entries, lambda where, item: (np.array([_hex_key(item[0], where)], dtype=np.uint64), min(_timestamp(item[1], where), now)))
        elif version in (2, STATE_VERSION) and isinstance(value.get("read_through"), list):
            read_keys = _v2_keys if version == 2 else _v3_keys
            entries = [(f"read_through[{position}]", entry) for position, entry in enumerate(value["read_through"])]
            usable = _usable(stream, entries, lambda where, entry: (read_keys(entry, where), _timestamp(entry.get("watermark") if isinstance(entry, Mapping) else None, f"{where}.watermark")))
        else:
            usable = None
        if usable is not None:
            keys = [keys for keys, _ in usable]
            watermarks = [watermark for group, watermark in usable for _ in range(len(group))]
            return cls.from_read_through(np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64), watermarks, stream)
        raise StateError(
            f"The {stream} state has a shape this connector version cannot read "
            f"(state_version {version!r}, keys {sorted(value)[:5]}). {advice}"
        )

    def read_through(self, external_id: str) -> Optional[datetime]:
        """The watermark a past sync read this profile through, or None for a new profile."""
        key = np.uint64(profile_key(external_id))
        position = int(np.searchsorted(self._keys, key))
        if position < len(self._keys) and self._keys[position] == key:
            return self._watermarks[self._watermark_indexes[position]]
        return None

    @property
    def newest(self) -> Optional[datetime]:
        """The latest watermark the state came with (the API's clock when the last pass began)."""
        return self._watermarks[-1] if self._watermarks else None

    def known_profiles(self) -> dict[str, datetime]:
        """Profile key (16 hex digits) -> watermark, for every profile the state came with."""
        return {key_as_hex(int(key)): self._watermarks[index] for key, index in zip(self._keys, self._watermark_indexes)}

    def seen_this_pass(self) -> np.ndarray:
        """Keys of the profiles read in this pass: by this attempt, or by an interrupted attempt it resumes.
        (A profile an interrupted attempt skipped or did not find kept an older watermark: it is not
        among them, leaves a listing's state, and is read as new next time: more requests, nothing lost.)"""
        resumed = self._keys[:0]
        if self._resumed_watermark in self._watermarks:
            resumed = self._keys[self._watermark_indexes == self._watermarks.index(self._resumed_watermark)]
        return np.union1d(np.union1d(resumed, key_sets.sorted_keys(self._read_now)), key_sets.sorted_keys(self._kept_now))

    def resume_pass(self, watermark: Any) -> None:
        """Goes on with an interrupted attempt's pass, at its watermark (still before every read);
        one that cannot be read leaves this pass its own watermark (a later one: nothing is skipped,
        since the interrupted attempt's profiles are in the state at theirs)."""
        try:
            self.watermark = self._resumed_watermark = _timestamp(watermark, "reading.watermark")
        except _Unreadable as problem:
            logger.warning(f"The {self.stream} state {problem}. This pass takes a watermark of its own.")

    def profile_read(self, external_id: str, found: bool, unchanged: bool = False) -> None:
        """Every record of the profile up to this sync's watermark has been emitted. Or it keeps the
        watermark it had: it answered 404 (a profile missing for one sync, a merge or a lag, that
        answers again is read from where it was, not over its whole window), or it was skipped as
        unchanged (nothing reached it since that watermark, as far as its metadata shows: keeping it
        means a late event that did not move the metadata is still read next time)."""
        (self._read_now if found and not unchanged else self._kept_now).append(profile_key(external_id))

    def message(self, keys_to_keep: Optional[np.ndarray] = None) -> dict[str, Any]:
        """The state as of now: profiles read in this sync at its watermark, the rest as they were.

        `keys_to_keep` (sorted keys): when given, profiles not in it leave the state.
        """
        read_now = key_sets.sorted_keys(self._read_now)
        staying = ~key_sets.contains(read_now, self._keys)
        if keys_to_keep is not None:
            staying &= key_sets.contains(keys_to_keep, self._keys)
        groups = self._groups(self._keys[staying], self._watermark_indexes[staying])
        if self.watermark is not None and len(read_now):
            groups[self.watermark] = np.union1d(groups.get(self.watermark, read_now[:0]), read_now)
        message: dict[str, Any] = {
            "state_version": STATE_VERSION,
            "read_through": [
                {"watermark": format_timestamp(watermark), "profile_count": len(keys), "profile_keys": key_sets.encode(keys)}
                for watermark, keys in sorted(groups.items())
            ],
        }
        if self.full_pass_at is not None:
            message["full_pass_at"] = format_timestamp(self.full_pass_at)
        return message

    def _groups(self, keys: np.ndarray, indexes: np.ndarray) -> dict[datetime, np.ndarray]:
        """Sorted keys by watermark, at most MAX_WATERMARK_GROUPS of them."""
        distinct = np.unique(indexes)  # ascending: watermarks are kept sorted
        if len(distinct) > MAX_WATERMARK_GROUPS:
            bucket = np.arange(len(distinct)) * MAX_WATERMARK_GROUPS // len(distinct)
            earliest_of_bucket = distinct[np.searchsorted(bucket, bucket)]
            indexes = earliest_of_bucket[np.searchsorted(distinct, indexes)]
        order = np.lexsort((keys, indexes))  # by watermark, then by key
        keys, indexes = keys[order], indexes[order]
        starts = np.flatnonzero(np.diff(indexes, prepend=-1))
        return {self._watermarks[indexes[start]]: group for start, group in zip(starts, np.split(keys, starts[1:]))}


def profiles_read_through(stream_state: Mapping[str, Any]) -> dict[str, datetime]:
    """Profile key (`masking.profile_state_key`) -> the watermark a stream's state says it was read
    through: the state decoded, for tests, benchmarks and whoever inspects a stored state."""
    return ReadThroughState.from_message(stream_state, (), datetime.now(timezone.utc)).known_profiles()


class _Unreadable(Exception):
    """A part of a state that cannot be read; its text completes "The <stream> state ..."."""


def _usable(stream: str, entries: list[tuple[str, Any]], read: Callable[[str, Any], tuple[np.ndarray, datetime]]) -> list[tuple[np.ndarray, datetime]]:
    """Each entry read as (keys, watermark). An entry that cannot be read is left out with a
    warning (its profiles are read as new: their whole window again, deduplicated downstream);
    only a state none of whose entries can be read is an error."""
    usable, problems = [], []
    for where, entry in entries:
        try:
            usable.append(read(where, entry))
        except _Unreadable as problem:
            problems.append(f"it {problem}")
    if problems and not usable:
        raise StateError(f"No watermark of the {stream} state can be read ({len(problems)} entries; the first: {problems[0]}). {state_error_advice(stream)}")
    if problems:
        logger.warning(
            f"{len(problems)} of {len(entries)} entries of the {stream} state cannot be read and are left out "
            f"(the first: {problems[0]}); their profiles are read as new, over the whole window the API keeps, and "
            "append + dedup removes what the destination already has. Every other watermark is kept."
        )
    return usable


def _hex_key(value: Any, where: str) -> int:
    """A key of version 1 (20 hex digits) or 2 (16): its first 64 bits."""
    key = str(value)
    if len(key) < KEY_HEX_DIGITS or not set(key) <= HEX_DIGITS:
        raise _Unreadable(f"holds a key at {where} that is not a digest (hex digits)")
    return int(key[:KEY_HEX_DIGITS], 16)


def _v2_keys(entry: Any, where: str) -> np.ndarray:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("profiles"), list):
        raise _Unreadable(f"has a {where} that is not {{watermark, profiles}}")
    return np.array([_hex_key(key, f"{where}.profiles") for key in entry["profiles"]], dtype=np.uint64)


def _v3_keys(entry: Any, where: str) -> np.ndarray:
    count, text = (entry.get("profile_count"), entry.get("profile_keys")) if isinstance(entry, Mapping) else (None, None)
    if not isinstance(text, str) or type(count) is not int or count < 0:
        raise _Unreadable(f"has a {where} that is not {{watermark, profile_count, profile_keys}}")
    try:
        return key_sets.decode(text, count)
    except key_sets.KeySetError as error:
        raise _Unreadable(f"has a {where}.profile_keys that cannot be read ({error})") from None


def _timestamp(value: Any, where: str) -> datetime:
    try:
        return parse_timestamp(value)
    except (TypeError, ValueError):
        raise _Unreadable(f"holds {value!r} at {where}, which is not a timestamp") from None
