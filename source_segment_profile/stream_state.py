"""What a stream's state says, and when it says it: two kinds, one interface.

- `ReadingCheckpoints`: a full refresh stream. Its state is empty, unless it reads every user of
  the space (`read_all_users`): that reading is worth resuming, so its state names where it stood
  (`{"reading": ...}`) until the pass is complete (the CDK's sentinel).
- `EventsCheckpoints`: user_events, incremental: each profile's watermark (events_state.py), plus
  where the reading stood while a pass with a listing is interrupted.

The stream tells either one when a profile is complete and when a checkpoint is due; the CDK
reads `message` after every record.
"""

from __future__ import annotations

import functools
import threading
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

import numpy as np

from source_segment_profile import key_sets
from source_segment_profile.events_state import EventsState, format_timestamp, watermark_from_server_date
from source_segment_profile.masking import profile_key
from source_segment_profile.profile_ids import AccountIds, ReadProgress, ResumePoint, UserIds
from source_segment_profile.profile_reader import ProfileRead

# State is checkpointed after every this many profiles, so an interrupted sync resumes close to
# where it stopped instead of starting over.
CHECKPOINT_EVERY_PROFILES = 200
# user_events' state names every profile, so each checkpoint is about as large as the final state:
# it is written at most this many times a pass (every 1/16th of the profiles), keeping all the
# state a sync writes under 20x the final state. At a million profiles and 100 requests/s that is
# a checkpoint every ~10 minutes; at 100,000 profiles, every minute.
USER_EVENTS_CHECKPOINTS_PER_PASS = 16
# What a resumable full refresh stream's state is once it has read everything (the CDK's sentinel).
FULL_REFRESH_COMPLETE = {"__ab_full_refresh_sync_complete": True}


class StreamCheckpoints(ABC):
    """A stream's state: loaded from the last sync's, advanced as profiles complete."""

    def __init__(self, profiles: "UserIds | AccountIds"):
        self._profiles = profiles
        self.read_progress = ReadProgress()
        self.message: Mapping[str, Any] = {}

    @abstractmethod
    def load(self, value: Optional[Mapping[str, Any]]) -> None:
        """The state the sync starts from (an interrupted attempt's, or the last sync's)."""

    def profile_done(self, done: ProfileRead) -> None:
        """Every record of the profile was emitted (or it answered 404)."""
        self.read_progress.profile_done(done.external_id)

    @abstractmethod
    def checkpoint(self, reading_ended: bool) -> None:
        """Builds `message` as of now: the CDK emits it after the slice that ends here."""

    def profiles_per_checkpoint(self) -> int:
        return CHECKPOINT_EVERY_PROFILES

    def _reading(self) -> Optional[dict[str, Any]]:
        """Where an unfinished reading stands, for streams whose reading is worth resuming."""
        return self.read_progress.checkpoint(self._profiles.fingerprint) if self._profiles.resumable else None


class ReadingCheckpoints(StreamCheckpoints):
    def load(self, value: Optional[Mapping[str, Any]]) -> None:
        """A finished pass (PyAirbyte hands it back on the next sync; Airbyte's platform does not)
        means: read everything again."""
        value = {} if value == FULL_REFRESH_COMPLETE else dict(value or {})
        self.read_progress = ReadProgress(ResumePoint.from_checkpoint(value.get("reading")))
        self.message = value

    def checkpoint(self, reading_ended: bool) -> None:
        if not self._profiles.resumable:
            return
        reading = None if reading_ended else self._reading()
        self.message = FULL_REFRESH_COMPLETE if reading_ended else ({"reading": reading} if reading else {})


class EventsCheckpoints(StreamCheckpoints):
    def __init__(self, profiles: UserIds):
        super().__init__(profiles)
        self.events = EventsState()
        self.message = self.events.message()
        self._reading_ended = False
        self._watermark_lock = threading.Lock()

    def load(self, value: Optional[Mapping[str, Any]]) -> None:
        value = dict(value or {})
        reading = value.pop("reading", None)
        self.read_progress = ReadProgress(ResumePoint.from_checkpoint(reading))
        self.events = EventsState.from_message(value, self._profiles.configured, datetime.now(timezone.utc))
        if isinstance(reading, Mapping) and reading.get("watermark"):
            self.events.resume_pass(reading["watermark"])
        self.message = self.events.message(self._keys_to_keep())

    def answer_received(self, server_date: Optional[str]) -> None:
        """The sync's watermark comes from the first answer's Date header: the API's clock."""
        if self.events.watermark is None:
            with self._watermark_lock:
                if self.events.watermark is None:
                    self.events.watermark = watermark_from_server_date(server_date, datetime.now(timezone.utc))

    def profile_done(self, done: ProfileRead) -> None:
        super().profile_done(done)
        self.events.profile_read(done.external_id, done.found)

    def checkpoint(self, reading_ended: bool) -> None:
        self._reading_ended = reading_ended
        message = self.events.message(self._keys_to_keep())
        reading = None if reading_ended else self._reading()
        if reading:
            # The pass's watermark goes along, so that a resumed attempt finishes the same pass.
            watermark = self.events.watermark
            message["reading"] = {**reading, **({"watermark": format_timestamp(watermark)} if watermark else {})}
        self.message = message

    def profiles_per_checkpoint(self) -> int:
        """A 16th of the profiles the last checkpoint named (at least CHECKPOINT_EVERY_PROFILES):
        each checkpoint names them all, so a pass writes about 17 states as large as its last."""
        profiles_in_state = sum(entry["profile_count"] for entry in self.message["read_through"])
        return max(CHECKPOINT_EVERY_PROFILES, profiles_in_state // USER_EVENTS_CHECKPOINTS_PER_PASS)

    def _keys_to_keep(self) -> Optional[np.ndarray]:
        """Profiles that stay in the state: the configured ones; with a listing, whoever this pass
        read (known only once it ends: until then every profile stays)."""
        if not self._profiles.resumable:
            return self._configured_keys
        return self.events.seen_this_pass() if self._reading_ended else None

    @functools.cached_property
    def _configured_keys(self) -> np.ndarray:
        return key_sets.sorted_keys([profile_key(external_id) for external_id in self._profiles.configured])
