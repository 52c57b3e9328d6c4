"""What a stream's state says, and when it says it: two kinds, one interface.

- `ReadingCheckpoints`: a full refresh stream. Its state is empty, unless it reads every user of
  the space (`read_all_users`): that reading is worth resuming, so its state names where it stood
  (`{"reading": ...}`) until the pass is complete (the CDK's sentinel).
- `ReadThroughCheckpoints`: the incremental streams (user_events, and the user streams that skip
  unchanged profiles): each profile's watermark (read_through_state.py), when the last full pass
  was, plus where the reading stood while a pass with a listing is interrupted.

The stream tells either one when a profile is complete and when a checkpoint is due; the CDK
reads `message` after every record.
"""

from __future__ import annotations

import functools
import threading
from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional

import numpy as np

from source_segment_profile import key_sets
from source_segment_profile.read_through_state import ReadThroughState, format_timestamp, watermark_from_server_date
from source_segment_profile.masking import profile_key
from source_segment_profile.profile_ids import AccountIds, ReadProgress, ResumePoint, UserIds
from source_segment_profile.profile_reader import ProfileRead

# State is checkpointed after every this many profiles, so an interrupted sync resumes close to
# where it stopped instead of starting over.
CHECKPOINT_EVERY_PROFILES = 200
# An incremental stream's state names every profile, so each checkpoint is about as large as the
# final state: it is written at most this many times a pass (every 1/16th of the profiles), keeping
# all the state a sync writes under 20x the final state. At a million profiles and 100 requests/s
# that is a checkpoint every ~10 minutes; at 100,000 profiles, every minute.
CHECKPOINTS_PER_PASS = 16
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

    def answer_received(self, server_date: Optional[str]) -> None:
        """An answer of this stream came (its Date header: the API's clock)."""

    @property
    def skipping(self) -> bool:
        """This pass skips profiles whose metadata did not move (only an incremental one can)."""
        return False

    def _reading(self) -> Optional[dict[str, Any]]:
        """Where an unfinished reading stands, for streams whose reading is worth resuming."""
        return self.read_progress.checkpoint(self._profiles.fingerprint) if self._profiles.resumable else None


class ReadingCheckpoints(StreamCheckpoints):
    def load(self, value: Optional[Mapping[str, Any]]) -> None:
        """A finished pass (PyAirbyte hands it back on the next sync; Airbyte's platform does not)
        means: read everything again. So does an incremental sync's state (PyAirbyte hands it to a
        full refresh of the same stream): its reading position is not this pass's."""
        value = {} if value == FULL_REFRESH_COMPLETE or "state_version" in (value or {}) else dict(value or {})
        self.read_progress = ReadProgress(ResumePoint.from_checkpoint(value.get("reading")))
        self.message = value

    def checkpoint(self, reading_ended: bool) -> None:
        if not self._profiles.resumable:
            return
        reading = None if reading_ended else self._reading()
        self.message = FULL_REFRESH_COMPLETE if reading_ended else ({"reading": reading} if reading else {})


class ReadThroughCheckpoints(StreamCheckpoints):
    def __init__(self, profiles: UserIds, stream: str):
        super().__init__(profiles)
        self._stream = stream
        self.watermarks = ReadThroughState(stream=stream)  # each profile's watermark
        self.message = self.watermarks.message()
        self._reading_ended = False
        self._watermark_lock = threading.Lock()
        self.full_pass = True  # this pass reads every profile: no skipping (decided by start_pass)
        self._may_skip = False  # skipping is on: the state says when the last full pass was
        self._resumed_full_pass: Optional[bool] = None  # the kind of pass an interrupted attempt was in

    def load(self, value: Optional[Mapping[str, Any]]) -> None:
        value = {} if value == FULL_REFRESH_COMPLETE else dict(value or {})  # 0.3.0's state of a full refresh stream
        reading = value.pop("reading", None)
        self.read_progress = ReadProgress(ResumePoint.from_checkpoint(reading))
        self.watermarks = ReadThroughState.from_message(value, self._profiles.configured, datetime.now(timezone.utc), self._stream)
        self._resumed_full_pass = None
        if isinstance(reading, Mapping):
            if reading.get("watermark"):
                self.watermarks.resume_pass(reading["watermark"])
            if isinstance(reading.get("full_pass"), bool):
                self._resumed_full_pass = reading["full_pass"]
        self.message = self.watermarks.message(self._keys_to_keep())

    def start_pass(self, may_skip: bool, full_pass_every: Optional[timedelta], now: datetime) -> bool:
        """Decides whether this pass reads every profile (True) or may skip unchanged ones: a full
        pass when skipping is off, when the state has no full pass yet, or when the last one is
        `full_pass_every` old. A resumed attempt goes on with the kind of pass it interrupted."""
        last = self.watermarks.full_pass_at
        # A local clock behind the API's does not put the full pass off: the state's newest
        # watermark is the API's clock at the last pass.
        now = max(now, self.watermarks.newest or now)
        due = last is None or (full_pass_every is not None and now - last >= full_pass_every)
        resumed = self._resumed_full_pass
        self._may_skip = may_skip
        self.full_pass = not may_skip or (resumed if resumed is not None else due)
        return self.full_pass

    @property
    def skipping(self) -> bool:
        return self._may_skip and not self.full_pass

    def answer_received(self, server_date: Optional[str]) -> None:
        """The sync's watermark comes from the first answer's Date header: the API's clock."""
        if self.watermarks.watermark is None:
            with self._watermark_lock:
                if self.watermarks.watermark is None:
                    self.watermarks.watermark = watermark_from_server_date(server_date, datetime.now(timezone.utc))

    def profile_done(self, done: ProfileRead) -> None:
        super().profile_done(done)
        self.watermarks.profile_read(done.external_id, done.found, done.unchanged)

    def checkpoint(self, reading_ended: bool) -> None:
        self._reading_ended = reading_ended
        # Only with skipping on: with it off the state stays as it was before the option existed
        # (turning it on then starts with a full pass).
        if reading_ended and self._may_skip and self.full_pass and self.watermarks.watermark is not None:
            self.watermarks.full_pass_at = self.watermarks.watermark
        message = self.watermarks.message(self._keys_to_keep())
        reading = None if reading_ended else self._reading()
        if reading:
            # The pass's watermark and kind go along, so that a resumed attempt finishes the same pass.
            watermark = self.watermarks.watermark
            message["reading"] = {**reading, **({"watermark": format_timestamp(watermark)} if watermark else {})}
            if self._may_skip:
                message["reading"]["full_pass"] = self.full_pass
        self.message = message

    def profiles_per_checkpoint(self) -> int:
        """A 16th of the profiles the last checkpoint named (at least CHECKPOINT_EVERY_PROFILES):
        each checkpoint names them all, so a pass writes about 17 states as large as its last."""
        profiles_in_state = sum(entry["profile_count"] for entry in self.message["read_through"])
        return max(CHECKPOINT_EVERY_PROFILES, profiles_in_state // CHECKPOINTS_PER_PASS)

    def _keys_to_keep(self) -> Optional[np.ndarray]:
        """Profiles that stay in the state: the configured ones; with a listing, whoever this pass
        read (known only once it ends: until then every profile stays)."""
        if not self._profiles.resumable:
            return self._configured_keys
        if not self._reading_ended:
            return None
        if self.read_progress.resume_from is not None and not self.full_pass:
            # The interrupted attempt skipped users its checkpoints do not name: dropping them
            # would read them as new next time. Every profile stays until a pass not resumed.
            return None
        return self.watermarks.seen_this_pass()

    @functools.cached_property
    def _configured_keys(self) -> np.ndarray:
        return key_sets.sorted_keys([profile_key(external_id) for external_id in self._profiles.configured])
