"""user_events: newest first (`sort=desc`), incremental with a watermark per profile.

The state says, for each profile, the instant its events were read through: the sync's start on
the API's clock (the first answer's Date) less five minutes. The next sync asks each profile for
events from its watermark less the late-events window (`start`), and stops paging at the first
page that reaches back past it.

https://segment.com/docs/unify/profile-api/#get-user-events
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Optional
from unittest import TestCase

import numpy as np
from airbyte_cdk.models import AirbyteStateMessage, SyncMode
from airbyte_cdk.test.entrypoint_wrapper import EntrypointOutput
from airbyte_cdk.test.state_builder import StateBuilder

from source_segment_profile.masking import profile_key, profile_state_key
from source_segment_profile.read_through_state import ReadThroughState, profiles_read_through
from unit_tests.integration.config import ConfigBuilder
from unit_tests.integration.profile_stream_scenarios import ProfileStreamScenarios
from unit_tests.integration.request_builders import ProfileRequestBuilder
from unit_tests.integration.response_builders import DataResponseBuilder, ErrorResponseBuilder, MetadataResponseBuilder, event_record
from unit_tests.integration.source_run import final_state, read_streams, records
from unit_tests.integration.strict_http_mocker import StrictHttpMocker

STREAM = "user_events"
EMAIL_ID = "email:jane+news@example.com"
USER_ID = "user_id:u2"
# This sync's first answer is dated SYNC_STARTS: its watermark is five minutes earlier.
SYNC_STARTS = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
WATERMARK = datetime(2026, 11, 20, 11, 55, tzinfo=timezone.utc)
# The last sync's watermark, and `start` for it: 24 hours (the default late-events window) earlier.
LAST_WATERMARK = datetime(2026, 11, 19, 11, 55, tzinfo=timezone.utc)
START = "2026-11-18T11:55:00.000Z"


def _event(message_id: str, timestamp: str) -> dict[str, Any]:
    return event_record().with_id(message_id).with_cursor(timestamp).build()


def _page(*events: dict[str, Any]) -> DataResponseBuilder:
    page = DataResponseBuilder.of(STREAM)
    for event in events:
        page.with_item(event)
    return page.with_date(SYNC_STARTS)


def _emitted(external_id: str, *events: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**event, "external_id": external_id} for event in events]


def _events_state(watermarks: dict[str, datetime]) -> dict[str, Any]:
    """The state (version 3) the connector writes when each profile was read through its watermark."""
    keys = np.array([profile_key(external_id) for external_id in watermarks], dtype=np.uint64)
    return ReadThroughState.from_read_through(keys, list(watermarks.values())).message()


def _incoming(watermarks: dict[str, datetime]) -> list[AirbyteStateMessage]:
    return StateBuilder().with_stream_state(STREAM, _events_state(watermarks)).build()


def _read_incrementally(*external_ids: str, state: Optional[list[AirbyteStateMessage]] = None, config: Optional[ConfigBuilder] = None) -> EntrypointOutput:
    config = (config or ConfigBuilder()).with_user_ids(*external_ids)
    return read_streams(config.build(), STREAM, sync_mode=SyncMode.incremental, state=state)


class TestUserEvents(ProfileStreamScenarios, TestCase):
    stream = STREAM
    query = {"limit": 200, "sort": "desc"}  # newest first, said explicitly

    def answer(self, external_id: str) -> tuple[DataResponseBuilder, list[dict[str, Any]]]:
        event = _event(f"m-{external_id}", "2026-11-20T10:00:00.000Z")
        return _page(event), _emitted(external_id, event)

    @StrictHttpMocker()
    def test_pages_are_followed_with_next_and_every_event_is_emitted(self, http_mocker: StrictHttpMocker) -> None:
        newer, older = _event("m2", "2026-11-20T10:30:00.000Z"), _event("m1", "2026-11-20T09:00:00.000Z")
        http_mocker.get(self.request(USER_ID).build(), _page(newer).with_next("cD0y+/a==").build())
        http_mocker.get(
            ProfileRequestBuilder.user("events", USER_ID).with_limit(200).with_param("sort", "desc").with_next("cD0y+/a==").build(),
            _page(older).build(),
        )

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID).build(), STREAM)

        assert records(output) == _emitted(USER_ID, newer, older)

    @StrictHttpMocker()
    def test_an_event_with_only_message_id_gets_message_id_as_messageId(self, http_mocker: StrictHttpMocker) -> None:
        event = {"type": "track", "event": "Signed Up", "message_id": "legacy-1", "timestamp": "2026-11-20T10:00:00.000Z"}
        http_mocker.get(self.request(USER_ID).build(), _page(event).build())

        output = read_streams(ConfigBuilder().with_user_ids(USER_ID).build(), STREAM)

        assert records(output) == [{**event, "messageId": "legacy-1", "external_id": USER_ID}]

    @StrictHttpMocker()
    def test_a_first_incremental_sync_sends_no_start_and_saves_the_api_clock_less_five_minutes(self, http_mocker: StrictHttpMocker) -> None:
        event = _event("m1", "2026-11-20T10:00:00.000Z")
        http_mocker.get(self.request(USER_ID).build(), _page(event).build())

        output = _read_incrementally(USER_ID)

        assert records(output) == _emitted(USER_ID, event)
        assert final_state(output, STREAM) == _events_state({USER_ID: WATERMARK})

    @StrictHttpMocker()
    def test_a_state_sends_start_at_the_watermark_less_the_window_and_moves_the_watermark(self, http_mocker: StrictHttpMocker) -> None:
        event = _event("m1", "2026-11-20T10:00:00.000Z")
        http_mocker.get(self.request(USER_ID).with_param("start", START).build(), _page(event).build())

        output = _read_incrementally(USER_ID, state=_incoming({USER_ID: LAST_WATERMARK}))

        assert records(output) == _emitted(USER_ID, event)
        assert final_state(output, STREAM) == _events_state({USER_ID: WATERMARK})

    @StrictHttpMocker()
    def test_later_pages_keep_start_and_paging_stops_at_the_first_page_reaching_past_it(self, http_mocker: StrictHttpMocker) -> None:
        # The server may ignore `start`: the second page holds an event older than it, and says there is more.
        newest, inside, before_start = (_event("m3", "2026-11-20T08:00:00.000Z"), _event("m2", "2026-11-19T08:00:00.000Z"), _event("m1", "2026-11-18T09:00:00.000Z"))
        http_mocker.get(self.request(USER_ID).with_param("start", START).build(), _page(newest).with_next("p2").build())
        http_mocker.get(self.request(USER_ID).with_param("start", START).with_next("p2").build(), _page(inside, before_start).with_next("p3").build())

        output = _read_incrementally(USER_ID, state=_incoming({USER_ID: LAST_WATERMARK}))

        assert records(output) == _emitted(USER_ID, newest, inside)

    @StrictHttpMocker()
    def test_a_profile_new_to_the_state_is_read_without_start(self, http_mocker: StrictHttpMocker) -> None:
        known, new = _event("m1", "2026-11-20T10:00:00.000Z"), _event("e1", "2026-11-02T10:00:00.000Z")
        http_mocker.get(self.request(USER_ID).with_param("start", START).build(), _page(known).build())
        http_mocker.get(self.request(EMAIL_ID).build(), _page(new).build())

        output = _read_incrementally(USER_ID, EMAIL_ID, state=_incoming({USER_ID: LAST_WATERMARK}))

        assert sorted(record["messageId"] for record in records(output)) == ["e1", "m1"]
        assert final_state(output, STREAM) == _events_state({USER_ID: WATERMARK, EMAIL_ID: WATERMARK})

    @StrictHttpMocker()
    def test_start_date_bounds_a_profile_the_state_does_not_know(self, http_mocker: StrictHttpMocker) -> None:
        http_mocker.get(self.request(USER_ID).with_param("start", "2026-11-15T00:00:00.000Z").build(), _page().build())

        output = _read_incrementally(USER_ID, config=ConfigBuilder().with_field("start_date", "2026-11-15T00:00:00Z"))

        assert records(output) == []

    @StrictHttpMocker()
    def test_a_profile_answering_404_keeps_its_watermark_while_the_others_move(self, http_mocker: StrictHttpMocker) -> None:
        http_mocker.get(self.request(EMAIL_ID).with_param("start", START).build(), ErrorResponseBuilder.of(404).build())
        http_mocker.get(self.request(USER_ID).with_param("start", START).build(), _page().build())

        output = _read_incrementally(EMAIL_ID, USER_ID, state=_incoming({EMAIL_ID: LAST_WATERMARK, USER_ID: LAST_WATERMARK}))

        assert final_state(output, STREAM) == _events_state({EMAIL_ID: LAST_WATERMARK, USER_ID: WATERMARK})


class TestUserEventsSkippingUnchanged(TestCase):
    """With skip_unchanged_profiles: user_metadata is read first, and a user whose metadata did not
    move since its watermark is not asked for events, unless that watermark is so old that what a
    late event left unread could leave the API's ~14 days (EVENTS_KEPT less the lookback)."""

    @StrictHttpMocker()
    def test_an_unchanged_user_read_through_long_ago_is_still_read_and_a_recent_one_is_skipped(self, http_mocker: StrictHttpMocker) -> None:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        long_ago, recently = now - timedelta(days=12, hours=1), now - timedelta(hours=1)  # 12 days + the 24 h lookback > 13 days
        unchanged = (now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        for external_id in (USER_ID, EMAIL_ID):
            http_mocker.get(ProfileRequestBuilder.user("metadata", external_id).build(), MetadataResponseBuilder.of("use_1").wrapped(updated_at=unchanged).with_date(now).build())
        start = (long_ago - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        event = _event("m1", (long_ago + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        http_mocker.get(ProfileRequestBuilder.user("events", USER_ID).with_limit(200).with_param("sort", "desc").with_param("start", start).build(), _page(event).with_date(now).build())
        state = (
            StateBuilder()
            .with_stream_state(STREAM, {**_events_state({USER_ID: long_ago, EMAIL_ID: recently}), "full_pass_at": recently.strftime("%Y-%m-%dT%H:%M:%S.000Z")})
            .build()
        )
        config = ConfigBuilder().with_user_ids(USER_ID, EMAIL_ID).with_field("skip_unchanged_profiles", True).build()

        output = read_streams(config, "user_metadata", STREAM, sync_mode=SyncMode.incremental, state=state)

        assert records(output, STREAM) == _emitted(USER_ID, event)  # EMAIL_ID: no request (strict mocker)
        assert profiles_read_through(final_state(output, STREAM))[profile_state_key(EMAIL_ID)] == recently
