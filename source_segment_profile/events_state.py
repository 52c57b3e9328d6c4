"""The user_events state: for each profile, the instant its events were read through.

The API keeps ~14 days of events, so what an incremental sync misses is gone for good. An event's
`timestamp` is when it happened on the device: mobile SDKs send queued events hours or days late,
and device clocks can be a year off. So a profile's cursor is never an event's timestamp. It is
the sync's own start time on the API's clock (the Date header of the first events answer) minus
SKEW_MARGIN: every event that had reached the API by then was read. The next sync asks for events
from that watermark minus the lookback window, so an event that reaches the API up to `lookback`
after it happened is delivered, a future-stamped event is delivered (and hides nothing), and the
overlap is the same records again, which append + dedup on the primary key removes.

A profile the state does not know (new to the config) is read with no lower bound but the
configured start date: its whole history the API keeps.

State (version 2): {"state_version": 2, "read_through": [{"watermark": ts, "profiles": [key, ...]}]},
one entry per watermark, so a profile costs its key only. Keys are `profile_state_key(id)`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Iterable, Mapping, Optional

from source_segment_profile.config import parse_timestamp
from source_segment_profile.errors import StateError
from source_segment_profile.masking import mask_external_id

STATE_VERSION = 2
# The API's Date header has whole seconds and is written once the first answer is ready; other
# requests of the sync may have been served a little before it. Five minutes covers that, and
# any drift between the clock that writes Date and the one that files arriving events.
SKEW_MARGIN = timedelta(minutes=5)
# Version 1 keyed profiles by the first 80 bits (20 hex digits) of the same digest.
KEY_HEX_DIGITS = 16
RESET_HINT = "Reset the user_events stream in Airbyte (its next sync reads every event the API still keeps)."


def profile_state_key(external_id: str) -> str:
    """A profile's key in the state: a digest of its id, not the id itself.

    Ids are often emails; the state is stored by the platform and the CDK logs every incoming
    state in full, so the state holds no id in clear. 64 bits: no collision in practice.
    """
    return hashlib.sha256(external_id.encode("utf-8")).hexdigest()[:KEY_HEX_DIGITS]


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def watermark_from_server_date(date_header: Optional[str], local_now: datetime) -> datetime:
    """The sync's start on the API's clock minus the skew margin; the local clock if no Date came."""
    moment = local_now
    if date_header:
        try:
            moment = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            pass
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    return moment - SKEW_MARGIN


class EventsState:
    """Which profiles were read through which watermark, and the state message that says so."""

    def __init__(self, known: Optional[Mapping[str, datetime]] = None):
        self._known: dict[str, datetime] = dict(known or {})  # key -> watermark of a past sync
        self._read_now: set[str] = set()  # keys read completely in this sync
        self._dropped: set[str] = set()  # keys this sync found gone (404)
        self._resumed_watermark: Optional[datetime] = None
        self.watermark: Optional[datetime] = None  # this sync's, once the first answer came

    @classmethod
    def from_message(cls, value: Optional[Mapping[str, Any]], configured_ids: Iterable[str], now: datetime) -> "EventsState":
        """Reads a state message; a state this version cannot read is a StateError.

        Accepted: `{}`; version 2; version 1 (`{"state_version": 1, "profiles": {key: newest
        event timestamp}}`), whose cursors become watermarks, never later than `now` (a v1 cursor
        could be a future-stamped event's); and a stream-wide `{"timestamp": ...}`, which becomes
        the watermark of every configured profile.
        """
        if not value:
            return cls()
        if not isinstance(value, Mapping):
            raise StateError(f"The user_events state is {type(value).__name__}, not an object. {RESET_HINT}")
        version = value.get("state_version")
        if version is None and set(value) == {"timestamp"}:
            watermark = min(_timestamp(value["timestamp"], "timestamp"), now)
            return cls({profile_state_key(external_id): watermark for external_id in configured_ids})
        if version == 1 and isinstance(value.get("profiles"), Mapping):
            return cls(
                {
                    str(key)[:KEY_HEX_DIGITS]: min(_timestamp(cursor, f"profiles[{mask_external_id(str(key))!r}]"), now)
                    for key, cursor in value["profiles"].items()
                }
            )
        if version == STATE_VERSION and isinstance(value.get("read_through"), list):
            known: dict[str, datetime] = {}
            for position, entry in enumerate(value["read_through"]):
                if not isinstance(entry, Mapping) or not isinstance(entry.get("profiles"), list):
                    raise StateError(f"The user_events state's read_through[{position}] is not {{watermark, profiles}}. {RESET_HINT}")
                watermark = _timestamp(entry.get("watermark"), f"read_through[{position}].watermark")
                for key in map(str, entry["profiles"]):
                    if key not in known or known[key] < watermark:
                        known[key] = watermark
            return cls(known)
        raise StateError(
            f"The user_events state has a shape this connector version cannot read "
            f"(state_version {version!r}, keys {sorted(value)[:5]}). {RESET_HINT}"
        )

    def read_through(self, external_id: str) -> Optional[datetime]:
        """The watermark a past sync read this profile's events through, or None for a new profile."""
        return self._known.get(profile_state_key(external_id))

    def known_profiles(self) -> dict[str, datetime]:
        """Profile key -> watermark, for every profile the state came with."""
        return dict(self._known)

    def seen_this_pass(self) -> set[str]:
        """Profiles read in this pass: by this attempt, or by an interrupted attempt it resumes."""
        resumed = {key for key, watermark in self._known.items() if watermark == self._resumed_watermark}
        return self._read_now | resumed

    def resume_pass(self, watermark: Any) -> None:
        """Goes on with an interrupted attempt's pass, at its watermark (still before every read)."""
        self.watermark = self._resumed_watermark = _timestamp(watermark, "reading.watermark")

    def profile_read(self, external_id: str, found: bool) -> None:
        """Every event of the profile up to this sync's watermark has been emitted (or it is gone)."""
        key = profile_state_key(external_id)
        (self._read_now if found else self._dropped).add(key)

    def message(self, configured_keys: Optional[set[str]] = None) -> dict[str, Any]:
        """The state as of now: profiles read in this sync at its watermark, the rest as they were.

        `configured_keys`: when given, profiles no longer configured leave the state.
        """
        groups: dict[datetime, list[str]] = {}
        if self.watermark is not None and self._read_now:
            groups[self.watermark] = sorted(self._read_now)
        for key, watermark in self._known.items():
            if key in self._read_now or key in self._dropped:
                continue
            if configured_keys is not None and key not in configured_keys:
                continue
            groups.setdefault(watermark, []).append(key)
        return {
            "state_version": STATE_VERSION,
            "read_through": [
                {"watermark": format_timestamp(watermark), "profiles": sorted(keys)} for watermark, keys in sorted(groups.items())
            ],
        }


def profiles_read_through(stream_state: Mapping[str, Any]) -> dict[str, datetime]:
    """Profile key (`profile_state_key`) -> the watermark a user_events state says it was read
    through: the state decoded, for tests, benchmarks and whoever inspects a stored state."""
    return EventsState.from_message(stream_state, (), datetime.now(timezone.utc)).known_profiles()


def _timestamp(value: Any, where: str) -> datetime:
    try:
        return parse_timestamp(value)
    except (TypeError, ValueError):
        raise StateError(f"The user_events state holds {value!r} at {where}, which is not a timestamp. {RESET_HINT}") from None
