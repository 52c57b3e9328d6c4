"""The parts of skip_unchanged_profiles that decide (issue 25): when a pass reads every profile
(ReadThroughCheckpoints.start_pass), and the metadata the user streams share (ProfileChanges).
The syncs themselves run against the emulator in integration_tests/test_skip_unchanged.py."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from source_segment_profile.config import parse_config
from source_segment_profile.profile_changes import ProfileChanges
from source_segment_profile.profile_ids import UserIds
from source_segment_profile.profile_reader import ProfileRead, RecordsRead
from source_segment_profile.read_through_state import format_timestamp
from source_segment_profile.stream_state import ReadingCheckpoints, ReadThroughCheckpoints

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
WEEK = timedelta(days=7)
IDS = ["user_id:a", "user_id:b"]


def checkpoints(state=None, **config):
    parsed = parse_config({"space_id": "spa_1", "access_token": "token", "user_external_ids": IDS, **config})
    loaded = ReadThroughCheckpoints(UserIds(parsed, None), "user_traits")
    loaded.load(state)
    return loaded


def state_after(full_pass_at=None):
    """The state a first skipping-on pass leaves: both profiles read through NOW - 1 h (the API's
    Date less five minutes); `full_pass_at` replaced if given."""
    done = checkpoints()
    assert done.start_pass(may_skip=True, full_pass_every=WEEK, now=NOW) is True
    done.answer_received("Mon, 07 Dec 2026 11:05:00 GMT")
    for external_id in IDS:
        done.profile_done(ProfileRead(external_id, 1, found=True))
    done.checkpoint(reading_ended=True)
    message = dict(done.message)
    if full_pass_at is not None:
        message["full_pass_at"] = full_pass_at
    return message


def test_the_first_pass_with_skipping_on_is_full_and_records_its_watermark_as_the_last_full_pass():
    state = state_after()
    assert state["full_pass_at"] == "2026-12-07T11:00:00.000Z"  # the API's Date less five minutes


@pytest.mark.parametrize(
    "age, every, full",
    [
        (timedelta(days=1), WEEK, False),
        (WEEK - timedelta(seconds=1), WEEK, False),
        (WEEK, WEEK, True),
        (timedelta(days=30), WEEK, True),
        (timedelta(days=300), None, False),  # full_pass_every_days 0: never
    ],
)
def test_a_full_pass_is_due_when_the_last_one_is_full_pass_every_days_old(age, every, full):
    state = state_after(full_pass_at=format_timestamp(NOW - age))
    assert checkpoints(state).start_pass(may_skip=True, full_pass_every=every, now=NOW) is full


def test_without_skipping_every_pass_is_full_and_the_state_records_no_full_pass():
    state = state_after(full_pass_at=format_timestamp(NOW - timedelta(days=1)))
    plain = checkpoints(state)
    assert plain.start_pass(may_skip=False, full_pass_every=WEEK, now=NOW) is True
    plain.answer_received("Mon, 07 Dec 2026 11:55:00 GMT")
    plain.checkpoint(reading_ended=True)
    assert plain.message["full_pass_at"] == format_timestamp(NOW - timedelta(days=1))  # kept, not moved


def test_an_unreadable_full_pass_instant_makes_the_pass_full(caplog):
    state = state_after(full_pass_at="yesterday")
    assert checkpoints(state).start_pass(may_skip=True, full_pass_every=WEEK, now=NOW) is True
    assert "the next pass reads every profile" in caplog.text


@pytest.mark.parametrize("interrupted_full", [True, False])
def test_a_resumed_attempt_goes_on_with_the_kind_of_pass_it_interrupted(interrupted_full):
    # A full pass due now, but the interrupted attempt was skipping (or the reverse): the resumed
    # attempt finishes the same pass, so `full_pass_at` never claims a pass that skipped.
    aged = NOW - timedelta(days=30) if not interrupted_full else NOW - timedelta(days=1)
    state = {**state_after(full_pass_at=format_timestamp(aged)), "reading": {"position": "configured:1", "full_pass": interrupted_full}}
    assert checkpoints(state, read_all_users=True).start_pass(may_skip=True, full_pass_every=WEEK, now=NOW) is interrupted_full


def test_a_skipped_profile_keeps_its_watermark_and_a_read_one_moves_to_this_pass():
    before = state_after()
    skipping = checkpoints(before)
    assert skipping.start_pass(may_skip=True, full_pass_every=WEEK, now=NOW) is False
    skipping.answer_received("Mon, 07 Dec 2026 11:55:00 GMT")
    skipping.profile_done(ProfileRead("user_id:a", 0, found=True, unchanged=True))
    skipping.profile_done(ProfileRead("user_id:b", 1, found=True))
    skipping.checkpoint(reading_ended=True)
    read_through = skipping.watermarks
    after = checkpoints(skipping.message).watermarks
    assert after.read_through("user_id:a") == datetime(2026, 12, 7, 11, 0, tzinfo=timezone.utc)
    assert after.read_through("user_id:b") == datetime(2026, 12, 7, 11, 50, tzinfo=timezone.utc)
    assert skipping.message["full_pass_at"] == before["full_pass_at"]  # a skipping pass is not a full one
    assert read_through.watermark == datetime(2026, 12, 7, 11, 50, tzinfo=timezone.utc)


class MetadataReads:
    """A stand-in for the user_metadata stream's engine: what it answers, and who it was asked for."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def __call__(self, external_id, stopping):
        self.asked.append(external_id)
        answer = self.answers[external_id]
        if answer == "stopped":
            return
        if answer is None:
            yield ProfileRead(external_id, 1, found=False)
            return
        yield RecordsRead(external_id, [{"external_id": external_id, **answer}])
        yield ProfileRead(external_id, 1, found=True)


def test_metadata_is_read_once_per_user_and_sync_and_what_cannot_be_read_is_not_known():
    reads = MetadataReads({"user_id:a": {"updated_at": "2026-12-07T10:00:00.000Z"}, "user_id:gone": None, "user_id:odd": {"updated_at": "soon"}})
    changes = ProfileChanges()
    changes.read_with(reads)
    changes.remember("user_id:seen", {"updated_at": "2026-12-06T00:00:00Z"})
    stopping = threading.Event()

    assert changes.updated_at("user_id:seen", stopping) == datetime(2026, 12, 6, tzinfo=timezone.utc)
    assert changes.updated_at("user_id:a", stopping) == datetime(2026, 12, 7, 10, tzinfo=timezone.utc)
    assert changes.updated_at("user_id:a", stopping) == datetime(2026, 12, 7, 10, tzinfo=timezone.utc)
    assert changes.updated_at("user_id:gone", stopping) is None  # 404: read, never skipped
    assert changes.updated_at("user_id:odd", stopping) is None  # unreadable: read, never skipped
    assert reads.asked == ["user_id:a", "user_id:gone", "user_id:odd"]
    assert changes.lookups == 3


def test_a_metadata_read_cut_short_is_not_remembered():
    reads = MetadataReads({"user_id:a": "stopped"})
    changes = ProfileChanges()
    changes.read_with(reads)
    assert changes.updated_at("user_id:a", threading.Event()) is None
    assert changes.updated_at("user_id:a", threading.Event()) is None
    assert reads.asked == ["user_id:a", "user_id:a"]


def test_a_metadata_that_moved_within_the_watermarks_millisecond_is_not_before_it():
    # Watermarks are whole milliseconds: 11:00:00.000400 must not count as before 11:00:00.001.
    watermark = datetime(2026, 12, 7, 11, 0, 0, 1000, tzinfo=timezone.utc)
    changes = ProfileChanges()
    changes.remember("user_id:a", {"updated_at": "2026-12-07T11:00:00.000400Z"})
    assert not changes.updated_at("user_id:a", threading.Event()) < watermark


def test_a_local_clock_behind_the_apis_does_not_put_the_full_pass_off():
    # The last pass's watermark says the API's clock was at NOW - 1 h then; the local clock says
    # 30 days earlier. The full pass, 8 days old by the API's clock, is due.
    state = state_after(full_pass_at=format_timestamp(NOW - timedelta(days=8)))
    assert checkpoints(state).start_pass(may_skip=True, full_pass_every=WEEK, now=NOW - timedelta(days=30)) is True


def listing_checkpoints(state):
    parsed = parse_config({"space_id": "spa_1", "access_token": "token", "read_all_users": True})
    loaded = ReadThroughCheckpoints(UserIds(parsed, object()), "user_traits")  # any listing: resumable
    loaded.load(state)
    return loaded


def test_a_resumed_skipping_pass_of_the_listing_keeps_every_profile_the_state_knows():
    # The interrupted attempt skipped user_id:a (its checkpoint names only what it read); the
    # resumed one reads user_id:c. Dropping a would read it as new next time, in every stream.
    known = state_after(full_pass_at=format_timestamp(NOW - timedelta(days=1)))
    resumed = listing_checkpoints({**known, "reading": {"position": "listing:1", "watermark": "2026-12-07T11:50:00.000Z", "full_pass": False}})
    assert resumed.start_pass(may_skip=True, full_pass_every=WEEK, now=NOW) is False
    resumed.profile_done(ProfileRead("user_id:c", 1, found=True))
    resumed.checkpoint(reading_ended=True)
    after = checkpoints(resumed.message).watermarks
    assert [after.read_through(user) is not None for user in ("user_id:a", "user_id:b", "user_id:c")] == [True, True, True]


def test_a_full_pass_of_the_listing_not_resumed_leaves_out_who_it_no_longer_lists():
    known = state_after(full_pass_at=format_timestamp(NOW - timedelta(days=1)))
    fresh = listing_checkpoints(known)
    assert fresh.start_pass(may_skip=False, full_pass_every=WEEK, now=NOW) is True
    fresh.answer_received("Mon, 07 Dec 2026 11:55:00 GMT")
    fresh.profile_done(ProfileRead("user_id:c", 1, found=True))
    fresh.checkpoint(reading_ended=True)
    after = checkpoints(fresh.message).watermarks
    assert [after.read_through(user) is not None for user in ("user_id:a", "user_id:b", "user_id:c")] == [False, False, True]


def test_a_full_refresh_handed_an_incremental_state_reads_from_the_start():
    # PyAirbyte hands a stream's last state back whatever the mode: an incremental pass's reading
    # position is not a full refresh's, whose table would then miss the users before it.
    incremental = {**state_after(), "reading": {"position": "listing:3"}}
    full_refresh = ReadingCheckpoints(UserIds(parse_config({"space_id": "spa_1", "access_token": "token", "read_all_users": True}), object()))
    full_refresh.load(incremental)
    assert full_refresh.read_progress.resume_from is None
    assert full_refresh.message == {}
