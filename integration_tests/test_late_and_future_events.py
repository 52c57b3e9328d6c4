"""Events that reach the API late, or stamped in the future, across incremental syncs (issue 15).

An event's `timestamp` is when it happened on the device: mobile SDKs send queued events hours
late and device clocks can be a year ahead. The emulator makes every 5th user (index % 5 == 1,
then 2, 4, 0 for each further lateness) receive one event an hour that becomes visible only L
hours after its timestamp, and users 4, 14, 24 an event stamped a year ahead. Its clock stands
still during a sync and moves only when a test advances it, and its ground truth is what the API
shows at the current clock: so what arrived between two syncs is exactly the difference of two
ground truths, and the later sync must deliver it.
"""

import json
from datetime import datetime, timedelta

from integration_tests.conftest import FIXED_NOW, emulator_config
from integration_tests.connector_cli import configured_catalog, run_connector
from integration_tests.ground_truth import expected_records
from segment_profile_emulator.testing import running_emulator

EVENTS_ONLY = configured_catalog(("user_events",))
LATE_USER_PERIOD = 5
FUTURE_USER_PERIOD, FUTURE_USER_OFFSET = 10, 4


def parse(timestamp):
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def key(record):
    return record["external_id"], record["messageId"]


def canonical(record):
    return json.dumps(record, sort_keys=True)


class Sync:
    """One incremental sync of user_events and the ground truth at the emulator's clock when it ran."""

    def __init__(self, emulator, config, tmp_path, state=None):
        self.truth = emulator.ground_truth()
        self.clock = parse(self.truth["now"])
        self.run = run_connector("read", tmp_path, config, EVENTS_ONLY, state=state)
        assert self.run.returncode == 0 and self.run.errors == [], self.run.stderr[-2000:] + "\n".join(self.run.logs[-20:])
        self.records = self.run.records["user_events"]
        self.keys = {key(record) for record in self.records}
        assert len(self.keys) == len(self.records), "a sync emitted an event twice"
        self.visible = {key(record): record for record in expected_records(self.truth)["user_events"]}

    @property
    def final_state(self):
        return [self.run.last_state_of("user_events")]

    def arrived_since(self, previous):
        """Keys of the events the API shows now and did not show at the previous sync."""
        return set(self.visible) - set(previous.visible)


def users_with_index(truth, remainder, period=LATE_USER_PERIOD):
    return {user["lookup_id"] for index, user in enumerate(truth["users"]) if index % period == remainder}


def late_arrivals(sync, previous, users):
    """Events of `users` that arrived since the previous sync although stamped before it: only a
    late event does that (an ordinary event arrives at its timestamp)."""
    return {
        event_key
        for event_key in sync.arrived_since(previous)
        if event_key[0] in users and parse(sync.visible[event_key]["timestamp"]) < previous.clock
    }


def assert_union_is_the_union_of_ground_truths(syncs):
    """Deduplicated on the primary key, the syncs hold exactly what the API showed at their clocks."""
    delivered = {canonical(record) for sync in syncs for record in sync.records}
    shown = {canonical(record) for sync in syncs for record in sync.visible.values()}
    assert len(delivered - shown) == 0 and len(shown - delivered) == 0, (
        f"{len(shown - delivered)} events the API showed were never delivered; {len(delivered - shown)} delivered events differ"
    )
    delivered_keys = {event_key for sync in syncs for event_key in sync.keys}
    assert delivered_keys == {event_key for sync in syncs for event_key in sync.visible}
    # One record per primary key: a re-read event is the same record again.
    assert len(delivered) == len(delivered_keys)


def test_late_and_future_stamped_events_reach_a_later_sync_with_the_default_lookback(tmp_path):
    with running_emulator(
        users=25, accounts=1, seed=13, now=FIXED_NOW, rate_limit=0,
        late_events="6,23", future_events=True, events_per_user=168,
    ) as emulator:
        config = emulator_config(emulator, emulator.ground_truth())
        first = Sync(emulator, config, tmp_path)
        # Two steps of 12 h: 6 h-late events stamped around each sync, and 23 h-late events
        # stamped 11 to 23 h before it, arrive between it and the next sync.
        emulator.advance_clock(12 * 3600)
        second = Sync(emulator, config, tmp_path, state=first.final_state)
        emulator.advance_clock(12 * 3600)
        third = Sync(emulator, config, tmp_path, state=second.final_state)

    syncs = [first, second, third]
    assert_union_is_the_union_of_ground_truths(syncs)
    assert first.keys == set(first.visible)
    for previous, sync in zip(syncs, syncs[1:]):
        # Whatever arrived between two syncs is in the later one.
        arrived = sync.arrived_since(previous)
        assert arrived and arrived <= sync.keys
        # Incremental: a sync re-reads its lookback, not every event the API keeps.
        assert len(sync.records) < len(sync.visible)
        for remainder, hours in ((1, 6), (2, 23)):
            late = late_arrivals(sync, previous, users_with_index(first.truth, remainder))
            assert late, f"no {hours} h-late event arrived between the syncs at {previous.clock} and {sync.clock}"
            assert late <= sync.keys, f"{len(late - sync.keys)} of {len(late)} {hours} h-late events were not delivered"
            # The scenario exercises the whole lateness: some arrivals are older than the previous
            # sync by more than half of it, so a lookback shorter than that would miss them.
            oldest = min(parse(sync.visible[event_key]["timestamp"]) for event_key in late)
            assert oldest < previous.clock - timedelta(hours=hours / 2)

    future_users = users_with_index(first.truth, FUTURE_USER_OFFSET, FUTURE_USER_PERIOD)
    assert len(future_users) == 3
    for user in future_users:
        (future_event,) = [k for k, event in first.visible.items() if k[0] == user and parse(event["timestamp"]) > first.clock]
        assert parse(first.visible[future_event]["timestamp"]) > first.clock + timedelta(days=300)
        assert future_event in first.keys
        # A cursor at the year-ahead stamp would hide every later event of the profile.
        for previous, sync in zip(syncs, syncs[1:]):
            later = {event_key for event_key in sync.arrived_since(previous) if event_key[0] == user}
            assert later and later <= sync.keys, f"events that arrived after a future-stamped one were not delivered ({user})"


def test_72_hour_late_events_need_a_72_hour_lookback(tmp_path):
    with running_emulator(users=12, accounts=1, seed=17, now=FIXED_NOW, rate_limit=0, late_events="72") as emulator:
        truth = emulator.ground_truth()
        long_lookback = emulator_config(emulator, truth, events_lookback_hours=72)
        default_lookback = emulator_config(emulator, truth)
        # Without a state the lookback plays no part: one first sync serves both configs.
        first = Sync(emulator, long_lookback, tmp_path)
        emulator.advance_clock(24 * 3600)
        with_72_hours = Sync(emulator, long_lookback, tmp_path, state=first.final_state)
        with_default = Sync(emulator, default_lookback, tmp_path, state=first.final_state)

    late = late_arrivals(with_72_hours, first, users_with_index(truth, 1))
    assert late, "no 72 h-late event arrived between the syncs"
    # The 72 h-late arrivals were stamped 48 to 72 h before the first sync: beyond a day's reach.
    assert max(parse(with_72_hours.visible[event_key]["timestamp"]) for event_key in late) < first.clock - timedelta(hours=25)

    assert late <= with_72_hours.keys
    assert with_72_hours.arrived_since(first) <= with_72_hours.keys
    assert_union_is_the_union_of_ground_truths([first, with_72_hours])

    # The control: with the default 24 h lookback the same events are lost, and only they.
    missed = with_default.arrived_since(first) - with_default.keys
    assert missed and missed <= late
