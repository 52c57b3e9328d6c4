"""skip_unchanged_profiles (issue 25), against the emulator over real HTTP, syncs chained the way
Airbyte chains them (each gets the last state each stream emitted).

What a message changes reaches the next sync in every stream; an unchanged user costs one request
a sync; what changes without a message (a recomputed computed trait) reaches the destination
through the streams never skipped, and through the full pass in the others; a late event is still
delivered; an interrupted sync, resumed, loses nothing; and with the option off every user is read
in every stream, as before.

The emulator's clock starts at the real time, as the API's does (the connector judges the age of
the last full pass by its own clock), stands still during a sync and moves on 10 minutes before
each next one, letting in the events of those minutes; POST /_emulator/messages delivers messages
at its `now`. What each sync must read follows from the ground truth before it: the users whose
metadata moved since the sync before read them (`moved_since_last_read`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from integration_tests.conftest import emulator_config
from integration_tests.connector_cli import SKIPPABLE_STREAMS, configured_catalog, run_connector
from integration_tests.ground_truth import expected_records
from segment_profile_emulator.testing import running_emulator
from source_segment_profile.masking import profile_state_key
from source_segment_profile.read_through_state import format_timestamp, profiles_read_through

SKIPPED = tuple(SKIPPABLE_STREAMS)  # user_traits, user_events, user_external_ids, user_metadata, user_links
CATALOG = configured_catalog(SKIPPED, cursors=SKIPPABLE_STREAMS)
WITH_COMPUTED_TRAITS = configured_catalog(SKIPPED + ("user_computed_traits",), cursors=SKIPPABLE_STREAMS)
USERS = 30


def real_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def space(users=USERS, **options):
    return running_emulator(users=users, accounts=4, seed=25, now=real_now(), rate_limit=0, **options)


def profiles_requested(run):
    """Profile id -> the endpoints the sync requested it on (each once, pages aside); the listing
    of users (read_all_users) names no profile."""
    requested: dict[str, set] = {}
    for entry in run.requests:
        if entry["endpoint"] == "list_users":
            continue
        requested.setdefault(entry["external_id"], set()).add(entry["endpoint"])
    return requested


def canonical(record):
    return json.dumps({name: value for name, value in record.items() if name != "read_at"}, sort_keys=True)


def of_users(records, users):
    return sorted(canonical(record) for record in records if record["external_id"] in users)


# Between two syncs the API's clock moves on this much (a sync every 10 minutes).
BETWEEN_SYNCS_SECONDS = 600


class Connection:
    """One Airbyte connection: its config and the state its syncs hand on."""

    def __init__(self, emulator, tmp_path, **options):
        self.emulator = emulator
        self.tmp_path = tmp_path
        self.config = emulator_config(emulator, emulator.ground_truth(), **{"skip_unchanged_profiles": True, **options})
        if self.config.get("read_all_users"):
            self.config.update(user_external_ids=[], account_external_ids=[])
        self.states: dict[str, dict] = {}
        self.count = 0

    def read_as(self, user):
        """The id the connector reads a ground-truth user by: its lookup id, or its segment id
        when every user comes from the listing (read_all_users)."""
        return f"segment_id:{user['segment_id']}" if self.config.get("read_all_users") else user["lookup_id"]

    @property
    def users(self):
        return [self.read_as(user) for user in self.emulator.ground_truth()["users"]]

    def moved_since_last_read(self, stream="user_metadata"):
        """The users whose metadata `updated_at` (as the API shows it now) is not before the
        watermark `stream` last read them through: those the next sync must read."""
        read_through = profiles_read_through(self.states[stream]["stream"]["stream_state"])
        metadata = {self.read_as(user): user["metadata"].get("metadata", user["metadata"]) for user in self.emulator.ground_truth()["users"]}
        return {
            user
            for user in self.users
            if profile_state_key(user) not in read_through
            or datetime.fromisoformat(metadata[user]["updated_at"].replace("Z", "+00:00")) >= read_through[profile_state_key(user)]
        }

    def next_sync(self, catalog=CATALOG, succeed=True):
        """Lets 10 minutes pass on the API's clock, then syncs."""
        self.emulator.advance_clock(BETWEEN_SYNCS_SECONDS)
        return self.sync(catalog, succeed)

    def sync(self, catalog=CATALOG, succeed=True):
        """Runs a sync; returns it with the request log of the profile routes it made."""
        self.emulator.reset_stats()
        folder = self.tmp_path / f"sync-{self.count}"
        folder.mkdir()
        self.count += 1
        run = run_connector("read", folder, self.config, catalog, state=list(self.states.values()) or None)
        if succeed:
            assert run.returncode == 0 and run.errors == [], run.stderr[-2000:] + "\n".join(run.logs[-20:])
        for state in run.states:  # the platform keeps each stream's last state, of a failed attempt too
            self.states[state["stream"]["stream_descriptor"]["name"]] = state
        run.requests = self.emulator.requests()
        return run

    def expected(self):
        truth = self.emulator.ground_truth()
        read_as = {user["lookup_id"]: self.read_as(user) for user in truth["users"]}
        return {
            stream: [{**record, "external_id": read_as.get(record["external_id"], record["external_id"])} for record in records]
            for stream, records in expected_records(truth).items()
        }


def requests_by_endpoint(run):
    return Counter(entry["endpoint"] for entry in run.requests)


def summary(run, stream):
    (line,) = [log for log in run.logs if log.startswith(f"Summary {stream}:")]
    return line


def test_a_change_made_by_a_message_is_delivered_by_the_next_sync_in_every_stream(tmp_path):
    with space() as emulator:
        connection = Connection(emulator, tmp_path)
        first = connection.sync()
        assert profiles_requested(first) == {user: set(SKIPPED) for user in connection.users}

        identified, grouped, tracked = connection.users[3], connection.users[7], connection.users[11]
        identify = emulator.deliver_messages("identify", users=[identified])["users"][0]
        group = emulator.deliver_messages("group", users=[grouped])["users"][0]
        track = emulator.deliver_messages("track", users=[tracked])["users"][0]
        connection.emulator.advance_clock(BETWEEN_SYNCS_SECONDS)
        changed = connection.moved_since_last_read()
        assert {identified, grouped, tracked} <= changed and len(changed) < USERS / 2
        second = connection.sync()
        expected = connection.expected()

        # Every stream read the three changed users, and only them, each as the API now shows it.
        for stream in ("user_traits", "user_external_ids", "user_metadata", "user_links"):
            assert {record["external_id"] for record in second.records[stream]} <= changed, stream
            assert of_users(second.records[stream], changed) == of_users(expected[stream], changed), stream
        assert {record["external_id"] for record in second.records["user_metadata"]} == changed
        traits = {record["external_id"]: record for record in second.records["user_traits"]}
        assert "last_identified_at" in traits[identified]["traits"]
        assert identify["anonymous_ids"][0] in {record["id"] for record in second.records["user_external_ids"]}
        assert any(record["external_id"] == grouped and record["to_collection"] == "accounts" for record in second.records["user_links"])
        new_events = {record["messageId"] for record in second.records["user_events"]}
        assert {*identify["message_ids"], *group["message_ids"], *track["message_ids"]} <= new_events
        shown = {canonical(record) for record in expected["user_events"]}
        assert all(canonical(record) in shown for record in second.records["user_events"])

        # Each unchanged user cost its one metadata request; the changed ones were read in each stream.
        assert requests_by_endpoint(second)["user_metadata"] == USERS
        assert profiles_requested(second) == {user: set(SKIPPED) if user in changed else {"user_metadata"} for user in connection.users}
        assert f"{len(changed)} profiles read, {USERS - len(changed)} skipped as unchanged" in summary(second, "user_traits")


def test_an_unchanged_profile_costs_one_request_a_sync_and_keeps_its_watermark(tmp_path):
    with space() as emulator:
        connection = Connection(emulator, tmp_path)
        connection.sync()
        for _ in range(2):
            before = {stream: profiles_read_through(state["stream"]["stream_state"]) for stream, state in connection.states.items()}
            emulator.advance_clock(BETWEEN_SYNCS_SECONDS)
            moved = connection.moved_since_last_read()
            assert len(moved) < USERS / 2
            again = connection.sync()
            requested = profiles_requested(again)
            for user in set(connection.users) - moved:
                assert requested[user] == {"user_metadata"}
                assert sum(entry["external_id"] == user for entry in again.requests) == 1
                assert not any(record["external_id"] == user for records in again.records.values() for record in records)
            assert {user for user, endpoints in requested.items() if endpoints == set(SKIPPED)} == moved
            for stream in SKIPPED:
                assert f"{len(moved)} profiles read, {USERS - len(moved)} skipped as unchanged" in summary(again, stream)
            # A skipped user keeps the watermark it had; a user read moves to this sync's.
            after = {stream: profiles_read_through(state["stream"]["stream_state"]) for stream, state in connection.states.items()}
            for stream in SKIPPED:
                unchanged_keys = {profile_state_key(user) for user in set(connection.users) - moved}
                assert {key: after[stream][key] for key in unchanged_keys} == {key: before[stream][key] for key in unchanged_keys}
                assert all(after[stream][profile_state_key(user)] > before[stream][profile_state_key(user)] for user in moved)


def test_a_computed_trait_changed_without_a_message_is_delivered_by_its_stream_then_by_the_full_pass(tmp_path):
    with space() as emulator:
        connection = Connection(emulator, tmp_path)
        connection.sync(WITH_COMPUTED_TRAITS)
        emulator.set_faults(computed_traits_epoch=1)
        emulator.advance_clock(BETWEEN_SYNCS_SECONDS)
        expected = connection.expected()
        moved = connection.moved_since_last_read()
        recomputed = connection.sync(WITH_COMPUTED_TRAITS)

        # user_computed_traits is never skipped: every user's new values arrive at once.
        assert sorted(map(canonical, recomputed.records["user_computed_traits"])) == sorted(map(canonical, expected["user_computed_traits"]))
        # No message moved the metadata: user_traits skipped every user whose metadata the
        # minutes between syncs did not move either, and left their recomputed traits behind.
        assert {record["external_id"] for record in recomputed.records["user_traits"]} == moved
        assert len(moved) < USERS / 2

        # A week later the full pass reads every user again: the state says when the last one was
        # (the real state of the last sync, with that instant moved back 8 days).
        traits_state = connection.states["user_traits"]["stream"]["stream_state"]
        last_full_pass = datetime.fromisoformat(traits_state["full_pass_at"].replace("Z", "+00:00"))
        traits_state["full_pass_at"] = format_timestamp(last_full_pass - timedelta(days=8))
        moved_since = connection.moved_since_last_read("user_external_ids")
        full_pass = connection.sync(WITH_COMPUTED_TRAITS)
        assert sorted(map(canonical, full_pass.records["user_traits"])) == sorted(map(canonical, expected["user_traits"]))
        assert any(log.startswith("user_traits: a full pass reads every profile, skipping none") for log in full_pass.logs)
        assert {entry["external_id"] for entry in full_pass.requests if entry["endpoint"] == "user_traits" and "class" not in entry["query"]} == set(connection.users)
        # Its watermark is the new full pass's; the streams that were not due went on skipping.
        assert connection.states["user_traits"]["stream"]["stream_state"]["full_pass_at"] > format_timestamp(last_full_pass)
        assert {record["external_id"] for record in full_pass.records["user_external_ids"]} == moved_since


def test_with_full_passes_never_an_aged_state_goes_on_skipping(tmp_path):
    with space() as emulator:
        connection = Connection(emulator, tmp_path, full_pass_every_days=0)
        connection.sync()
        for state in connection.states.values():
            state["stream"]["stream_state"]["full_pass_at"] = "2020-01-01T00:00:00.000Z"
        emulator.advance_clock(BETWEEN_SYNCS_SECONDS)
        moved = connection.moved_since_last_read()
        again = connection.sync()
        assert {user for user, endpoints in profiles_requested(again).items() if endpoints != {"user_metadata"}} == moved
        assert len(moved) < USERS / 2


def test_a_late_event_that_arrives_between_syncs_is_delivered(tmp_path):
    # Every 5th user receives one event an hour that shows only 6 hours after its timestamp: its
    # arrival moves the metadata (the emulator's model of Segment), so the user is read again.
    with space(late_events="6") as emulator:
        connection = Connection(emulator, tmp_path)
        first_clock = emulator.clock()
        connection.sync()
        before = {canonical(record) for record in connection.expected()["user_events"]}
        emulator.advance_clock(3600)
        arrived = [record for record in connection.expected()["user_events"] if canonical(record) not in before]
        late = [record for record in arrived if record["timestamp"] < first_clock]
        assert late, "the emulator let no late event arrive"
        moved = connection.moved_since_last_read("user_events")
        second = connection.sync()
        delivered = {canonical(record) for record in second.records["user_events"]}
        assert all(canonical(record) in delivered for record in arrived)
        # The users read are those whose metadata moved: every user an event reached, late or not
        # (and those whose metadata moved in the margin before the last watermark); no one else.
        assert {record["external_id"] for record in arrived} <= moved
        assert Counter(entry["external_id"] for entry in second.requests if entry["endpoint"] == "user_events") == dict.fromkeys(moved, 1)


@pytest.mark.parametrize("listing", [False, True], ids=["configured-ids", "read-all-users"])
def test_an_interrupted_sync_resumed_loses_nothing(tmp_path, listing):
    # 450 users: every stream checkpoints twice within its pass (every 200 profiles); from the
    # listing, a checkpoint also says where the pass stood, and the resumed attempt goes on there.
    with space(users=450, fault_seed=7) as emulator:
        connection = Connection(emulator, tmp_path, max_retries=0, read_all_users=listing)
        connection.sync()
        delivered = emulator.deliver_messages("identify", fraction=0.5)["users"]
        emulator.advance_clock(BETWEEN_SYNCS_SECONDS)
        changed = connection.moved_since_last_read()
        read_as = {user["lookup_id"]: connection.read_as(user) for user in emulator.ground_truth()["users"]}
        assert {read_as[user["lookup_id"]] for user in delivered} <= changed
        expected = connection.expected()

        emulator.set_faults(fault_5xx=0.0015)  # with this seed, a 500 (max_retries 0: fatal) mid-sync
        interrupted = connection.sync(succeed=False)
        assert interrupted.returncode != 0 and interrupted.errors
        assert interrupted.records["user_metadata"], "the first attempt failed before it read anything"
        if listing:
            assert any("reading" in state["stream"]["stream_state"] for state in connection.states.values()), "no attempt left a position to resume at"
        emulator.set_faults(fault_5xx=0.0)
        resumed = connection.sync()
        # Nobody the interrupted attempt skipped was dropped from a state, to be read as new next time.
        for stream in SKIPPED:
            assert len(profiles_read_through(connection.states[stream]["stream"]["stream_state"])) == 450, stream

        for stream in ("user_traits", "user_external_ids", "user_metadata", "user_links"):
            union = {canonical(record) for run in (interrupted, resumed) for record in run.records[stream]}
            missing = set(of_users(expected[stream], changed)) - union
            assert not missing, f"{stream}: {len(missing)} records of changed users never delivered"
        events = {record["messageId"] for run in (interrupted, resumed) for record in run.records["user_events"]}
        assert {message for user in delivered for message in user["message_ids"]} <= events
        # And the next sync finds everyone read through: only users whose metadata moved since are read.
        emulator.advance_clock(BETWEEN_SYNCS_SECONDS)
        moved = connection.moved_since_last_read()
        settled = connection.sync()
        assert {user for user, endpoints in profiles_requested(settled).items() if endpoints != {"user_metadata"}} == moved
        assert len(moved) < 450 / 4


def test_with_the_option_off_every_user_is_read_in_every_stream_as_before(tmp_path):
    with space() as emulator:
        connection = Connection(emulator, tmp_path, skip_unchanged_profiles=False)
        connection.sync()
        emulator.deliver_messages("identify", fraction=0.1)
        second = connection.next_sync()
        expected = connection.expected()
        assert profiles_requested(second) == {user: set(SKIPPED) for user in connection.users}
        for stream in ("user_traits", "user_external_ids", "user_metadata", "user_links"):
            assert sorted(map(canonical, second.records[stream])) == sorted(map(canonical, expected[stream])), stream
        assert not any("skipped as unchanged" in log or "full pass" in log for log in second.logs)
        # The state is as it was before the option existed: no full pass is recorded.
        assert all("full_pass_at" not in state["stream"]["stream_state"] for state in connection.states.values())

        # A full refresh of the same streams (no state: the platform keeps none for it) makes the
        # same requests and the same records.
        connection.states = {}
        full_refresh = connection.sync(configured_catalog(SKIPPED, incremental=False))
        assert profiles_requested(full_refresh) == profiles_requested(second)
        assert {**requests_by_endpoint(full_refresh), "user_events": 0} == {**requests_by_endpoint(second), "user_events": 0}  # events: the whole window
        for stream in ("user_traits", "user_external_ids", "user_metadata", "user_links"):
            assert sorted(map(canonical, full_refresh.records[stream])) == sorted(map(canonical, second.records[stream]))
            assert all("read_at" not in record for record in full_refresh.records[stream])
        assert all(record["read_at"] for stream in ("user_traits", "user_links") for record in second.records[stream])


def test_a_message_that_arrives_after_the_metadata_was_read_is_delivered_by_the_next_sync(tmp_path):
    # A sync reads the metadata first; a message can reach a user after that, and before a later
    # stream's pass begins (at a million users, hours later). That stream skips the user by what it
    # knew, and must keep the user's older watermark, not take its own (which is after the
    # message): the next sync then sees the metadata moved past it and reads the user.
    with space(latency_ms=1000, latency_spread=0) as emulator:
        connection = Connection(emulator, tmp_path, max_concurrency=8)
        catalog = configured_catalog(("user_metadata", "user_traits"), cursors=SKIPPABLE_STREAMS)
        connection.sync(catalog)
        late_comer = connection.users[-1]
        emulator.deliver_messages("identify", users=connection.users[:10])  # user_traits reads these first
        emulator.advance_clock(BETWEEN_SYNCS_SECONDS)
        assert late_comer not in connection.moved_since_last_read()

        sync = {}
        emulator.reset_stats()  # the request log holds sync 1's requests until the sync's own reset
        running = threading.Thread(target=lambda: sync.setdefault("run", connection.sync(catalog)))
        running.start()
        deadline = time.monotonic() + 120
        while sum(entry["endpoint"] == "user_metadata" for entry in emulator.requests()) < USERS:
            assert time.monotonic() < deadline and running.is_alive(), "user_metadata never finished"
            time.sleep(0.01)
        # user_metadata is done; user_traits' first requests wait out their second: the message
        # arrives now, and the API's clock moves on 10 minutes before their answers are dated.
        delivery = emulator.deliver_messages("identify", users=[late_comer])
        emulator.advance_clock(BETWEEN_SYNCS_SECONDS)
        running.join(timeout=120)
        second = sync["run"]

        assert late_comer not in {record["external_id"] for record in second.records["user_metadata"]}, "the message came before the metadata was read"
        assert late_comer not in {record["external_id"] for record in second.records["user_traits"]}  # skipped by what it knew
        traits_state = profiles_read_through(connection.states["user_traits"]["stream"]["stream_state"])
        assert traits_state[profile_state_key(late_comer)] < datetime.fromisoformat(delivery["arrival"].replace("Z", "+00:00"))
        assert max(traits_state.values()) > datetime.fromisoformat(delivery["arrival"].replace("Z", "+00:00")), "the clock did not move before user_traits' first answer"

        third = connection.next_sync(catalog)
        traits = {record["external_id"]: record for record in third.records["user_traits"]}
        assert "last_identified_at" in traits[late_comer]["traits"]
        assert {record["external_id"]: record["updated_at"] for record in third.records["user_metadata"]}[late_comer] == delivery["arrival"]
