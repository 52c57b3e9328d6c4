"""Which profiles a stream reads (issue 16): how far a reading got (ReadProgress), the pages of ids
of the user streams (UserIds), the user listing on the fake API, the ids Segment never matches, and
the config of `read_all_users` / `accounts_from_user_links`."""

from __future__ import annotations

import json
import random
from typing import Optional

import pytest
from airbyte_cdk.models import FailureType, Level
from airbyte_cdk.test.state_builder import StateBuilder

from source_segment_profile.api_client import ProfileApiClient
from source_segment_profile.config import ConfigError, ids_segment_would_not_match, parse_config
from source_segment_profile.errors import CredentialsRejected, TransientApiError, UnexpectedResponse
from source_segment_profile.masking import profile_state_key
from source_segment_profile.profile_ids import IdPage, ListingUnavailable, ReadProgress, ResumePoint, UserIds, UserListing, ids_fingerprint
from source_segment_profile.rate_budget import RateBudget
from unit_tests.builders import ACCOUNT_STREAMS, ALL_STREAMS, SPACE_ID, Reply, config, cursor, data_page, traits_page
from unit_tests.conftest import check_status, run_read

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits

LISTING_PATH = f"/v1/spaces/{SPACE_ID}/collections/users/profiles"
# Segment's docs: list methods take limit 1..100.
LISTING_LIMIT = "100"


# --- helpers --------------------------------------------------------------------------------


def page(position: str, *ids: str) -> IdPage:
    return IdPage(position, list(ids))


def serve_listing(api, segment_ids: list[str]) -> None:
    """The fake API lists `segment_ids` as the real list method does: `next` is an offset."""

    def answer(request):
        offset = int(request.param("next") or "0")
        end = offset + int(request.param("limit") or "10")
        more = end < len(segment_ids)
        return Reply(200, {"data": [{"segment_id": value} for value in segment_ids[offset:end]], "cursor": cursor(str(end) if more else "")})

    api._handlers[LISTING_PATH] = answer


def refuse_listing(api, reply: Reply) -> None:
    api._handlers[LISTING_PATH] = lambda _request: reply


def listing_requests(api) -> list[tuple[Optional[str], Optional[str]]]:
    """(next, limit) of every listing request, in order."""
    return [(request.param("next"), request.param("limit")) for request in api.seen if request.path == LISTING_PATH]


def profile_requests(api) -> list[str]:
    return [request.path for request in api.seen if request.path != LISTING_PATH]


@pytest.fixture
def connect(api, clock):
    """(parsed config, client) for a config, the client answered by the fake API on the fake clock."""

    def build(**overrides):
        parsed = parse_config(config(**overrides))
        budget = RateBudget(parsed.requests_per_second, clock=clock.now, sleep=clock.sleep)
        return parsed, ProfileApiClient(parsed, budget, sleep=clock.sleep, clock=clock.now)

    return build


def segment_ids(count: int) -> list[str]:
    return [f"use_{n:04d}" for n in range(count)]


# --- ReadProgress ---------------------------------------------------------------------------


def keys(*external_ids: str) -> list[str]:
    """How a checkpoint names profiles: their digests, sorted."""
    return sorted(map(profile_state_key, external_ids))


FINGERPRINT = "f" * 16  # what the stream passes: the fingerprint of its configured ids


def reading(position: str, open_pages: int, *pending: str) -> dict:
    return {"position": position, "open_pages": open_pages, "pending": keys(*pending), "configured": FINGERPRINT}


def test_nothing_handed_out_means_no_checkpoint():
    assert ReadProgress().checkpoint(FINGERPRINT) is None


def test_checkpoint_is_the_earliest_page_not_complete_with_the_profiles_still_to_read_from_it_on():
    progress = ReadProgress()
    pages = [page("listed:0", "a1", "a2"), page("listed:2", "b1", "b2"), page("listed:4", "c1", "c2")]
    assert list(progress.ids(pages)) == ["a1", "a2", "b1", "b2", "c1", "c2"]

    # Workers complete profiles out of order: the position stays, the profiles pending shrink.
    for done in ("c1", "b1", "a1"):
        progress.profile_done(done)
    assert progress.checkpoint(FINGERPRINT) == reading("listed:0", 3, "a2", "b2", "c2")

    progress.profile_done("a2")  # page listed:0 complete: the position moves on
    assert progress.checkpoint(FINGERPRINT) == reading("listed:2", 2, "b2", "c2")

    progress.profile_done("b2")
    assert progress.checkpoint(FINGERPRINT) == reading("listed:4", 1, "c2")


def test_one_slow_profile_keeps_the_checkpoint_as_small_as_the_profiles_in_flight():
    # Issue 21: naming the profiles done since the oldest open page grew every checkpoint while
    # one profile was stuck (20 KB -> 400 KB); naming those still to read does not grow.
    progress = ReadProgress()
    pages = [page(f"listed:{start}", *(f"id{start + n}" for n in range(100))) for start in range(0, 5000, 100)]
    ids = progress.ids(pages)
    assert next(ids) == "id0"  # the slow one, never complete
    sizes = []
    for external_id in ids:
        progress.profile_done(external_id)
        if external_id.endswith("99"):
            sizes.append(len(json.dumps(progress.checkpoint(FINGERPRINT))))
    assert progress.checkpoint(FINGERPRINT) == reading("listed:0", 50, "id0")
    assert max(sizes) - min(sizes) <= 2 and max(sizes) < 200, sizes  # only open_pages grows, by its digits


def test_a_complete_last_page_stays_the_position_until_the_next_page_is_handed_out():
    progress = ReadProgress()
    ids = progress.ids([page("listed:0", "a1", "a2"), page("listed:2", "b1")])
    assert [next(ids), next(ids)] == ["a1", "a2"]
    progress.profile_done("a2")
    progress.profile_done("a1")

    # Resuming from here lists page listed:0 again and reads none of it: nothing is read twice.
    assert progress.checkpoint(FINGERPRINT) == reading("listed:0", 1)

    assert next(ids) == "b1"
    assert progress.checkpoint(FINGERPRINT) == reading("listed:2", 1, "b1")


def test_resuming_reads_the_open_pages_only_for_their_pending_profiles_then_every_page():
    progress = ReadProgress(ResumePoint.from_checkpoint(reading("listed:2", 2, "b1", "b3", "c2")))

    resumed = [page("listed:2", "b1", "b2", "b3"), page("listed:4", "c1", "c2"), page("listed:6", "d1")]
    assert list(progress.ids(UserIds._resumed(iter(resumed), progress.resume_from))) == ["b1", "b3", "c2", "d1"]
    progress.profile_done("b3")
    assert progress.checkpoint(FINGERPRINT) == reading("listed:2", 3, "b1", "c2", "d1")


def test_the_checkpoint_names_profiles_by_digest_not_by_id():
    progress = ReadProgress()
    list(progress.ids([page("configured:0", "email:jane.doe@example.com", "email:b@example.com")]))
    progress.profile_done("email:b@example.com")

    assert progress.checkpoint(FINGERPRINT) == reading("configured:0", 1, "email:jane.doe@example.com")
    assert "jane" not in str(progress.checkpoint(FINGERPRINT))


def test_a_checkpoint_of_0_2_0_skips_the_profiles_it_names_done():
    # As connector 0.2.0 wrote it: `done`, with ids (not digests) in its first release.
    progress = ReadProgress(ResumePoint.from_checkpoint({"position": "listed:0", "done": ["a1", "a2", *keys("b1")]}))

    assert list(progress.ids([page("listed:0", "a1", "a2"), page("listed:2", "b1", "b2")])) == ["b2"]
    assert progress.checkpoint(FINGERPRINT) == reading("listed:2", 1, "b2")


@pytest.mark.parametrize("seed", range(8))
def test_resuming_from_any_checkpoint_reads_exactly_the_profiles_not_done(seed):
    """Workers take ids in order and complete them in any order; whenever the reading is cut, the
    checkpoint resumed reads every profile not complete, once, and none that was complete."""
    rng = random.Random(seed)
    pages = [page(f"listed:{start}", *(f"id{start + n}" for n in range(rng.randint(1, 6)))) for start in range(0, 60, 6)]
    every_id = [external_id for each in pages for external_id in each.ids]

    def pages_from(resume: Optional[ResumePoint]) -> list[IdPage]:
        positions = [each.position for each in pages]
        return list(UserIds._resumed(iter(pages[positions.index(resume.position) :]), resume)) if resume else pages

    progress = ReadProgress()
    ids = progress.ids(pages)
    in_flight: list[str] = []
    completed: set[str] = set()
    exhausted = False
    while not exhausted or in_flight:
        if not exhausted and (not in_flight or rng.random() < 0.5) and len(in_flight) < 8:
            taken = next(ids, None)
            if taken is None:
                exhausted = True
            else:
                in_flight.append(taken)
        else:
            done = in_flight.pop(rng.randrange(len(in_flight)))
            progress.profile_done(done)
            completed.add(done)
        checkpoint = progress.checkpoint(FINGERPRINT)
        resumed = ReadProgress(ResumePoint.from_checkpoint(checkpoint))
        assert list(resumed.ids(pages_from(resumed.resume_from))) == [i for i in every_id if i not in completed], checkpoint
    assert completed == set(every_id)


@pytest.mark.parametrize(
    "reading",
    [
        pytest.param({"position": 3, "done": []}, id="position-not-a-string"),
        pytest.param({"done": ["a1"]}, id="no-position"),
        pytest.param({"position": "listed:0", "done": "a1"}, id="done-not-a-list"),
        pytest.param({"position": "listed:0", "pending": [], "open_pages": "many", "configured": "x"}, id="open-pages-not-a-number"),
        pytest.param("listed:0", id="a-string"),
        pytest.param(["listed:0"], id="a-list"),
    ],
)
def test_a_reading_position_of_an_unknown_shape_restarts_the_pass_with_a_warning(reading, caplog):
    assert ResumePoint.from_checkpoint(reading) is None
    (warning,) = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert "starts again from its first profile" in warning and "no profile is skipped" in warning
    assert "reset" not in warning.lower() and "clear" not in warning.lower()


# --- UserIds --------------------------------------------------------------------------------


def test_configured_ids_come_in_pages_of_100_named_by_their_index(connect):
    ids = [f"user_id:u{n}" for n in range(250)]
    parsed, _ = connect(user_external_ids=ids)
    users = UserIds(parsed, None)

    pages = list(users.pages())

    assert [each.position for each in pages] == ["configured:0", "configured:100", "configured:200"]
    assert [external_id for each in pages for external_id in each.ids] == ids
    assert (users.total, users.resumable) == (250, False)


def test_configured_ids_come_first_then_every_listed_user(api, connect):
    serve_listing(api, segment_ids(3))
    parsed, client = connect(user_external_ids=["user_id:u1", "user_id:u2"], read_all_users=True)
    users = UserIds(parsed, UserListing(parsed, client))

    pages = list(users.pages())

    assert [(each.position, each.ids) for each in pages] == [
        ("configured:0", ["user_id:u1", "user_id:u2"]),
        ("listed:0", ["segment_id:use_0000", "segment_id:use_0001", "segment_id:use_0002"]),
    ]
    assert (users.total, users.resumable) == (None, True)


def resume_at(position: str, parsed, **fields) -> ResumePoint:
    """A resume point as this version writes it, for the configured ids of `parsed`."""
    return ResumePoint(position, configured=ids_fingerprint(parsed.user_external_ids), **fields)


def test_resuming_inside_the_configured_ids_goes_on_to_the_listing(api, connect):
    serve_listing(api, segment_ids(2))
    parsed, client = connect(user_external_ids=[f"user_id:u{n}" for n in range(150)], read_all_users=True)

    pages = list(UserIds(parsed, UserListing(parsed, client)).pages(resume_at("configured:100", parsed)))

    assert [each.position for each in pages] == ["configured:100", "listed:0"]
    assert pages[0].ids == [f"user_id:u{n}" for n in range(100, 150)]


def test_resuming_inside_the_listing_lists_from_that_token_and_skips_the_configured_ids(api, connect):
    serve_listing(api, segment_ids(250))
    parsed, client = connect(user_external_ids=["user_id:u1"], read_all_users=True)

    pages = list(UserIds(parsed, UserListing(parsed, client)).pages(resume_at("listed:100", parsed)))

    assert [each.position for each in pages] == ["listed:100", "listed:200"]
    assert pages[0].ids[0] == "segment_id:use_0100" and pages[-1].ids[-1] == "segment_id:use_0249"
    assert listing_requests(api) == [("100", LISTING_LIMIT), ("200", LISTING_LIMIT)]


def test_ids_added_to_the_front_of_the_list_since_the_interruption_are_read(api, connect, caplog):
    # Issue 21: a position is an index into a list that may have changed; resumed after 10 ids
    # were added to the front, 0.2.0 read none of them and reported success.
    serve_listing(api, segment_ids(3))
    before, _ = connect(user_external_ids=[f"user_id:u{n}" for n in range(150)], read_all_users=True)
    parsed, client = connect(user_external_ids=[f"user_id:new{n}" for n in range(10)] + list(before.user_external_ids), read_all_users=True)

    pages = list(UserIds(parsed, UserListing(parsed, client)).pages(resume_at("configured:100", before)))

    read = [external_id for each in pages for external_id in each.ids]
    assert read == list(parsed.user_external_ids) + [f"segment_id:use_000{n}" for n in range(3)]
    assert any("is not used" in record.getMessage() and "none is skipped" in record.getMessage() for record in caplog.records)


def test_a_listing_position_with_changed_configured_ids_reads_them_all_then_goes_on_listing(api, connect, caplog):
    serve_listing(api, segment_ids(250))
    before, _ = connect(user_external_ids=["user_id:u1"], read_all_users=True)
    parsed, client = connect(user_external_ids=["user_id:u1", "user_id:u2"], read_all_users=True)

    pages = list(UserIds(parsed, UserListing(parsed, client)).pages(resume_at("listed:200", before)))

    assert [each.position for each in pages] == ["configured:0", "listed:200"]
    assert pages[0].ids == ["user_id:u1", "user_id:u2"]
    assert any("read again" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "position, read_all_users",
    [
        pytest.param("listed:100", False, id="listed-without-read-all-users"),
        pytest.param("configured:abc", True, id="configured-without-index"),
        pytest.param("configured:100", True, id="configured-beyond-two-ids"),
        pytest.param("elsewhere:3", True, id="unknown-kind"),
    ],
)
def test_a_position_this_configuration_does_not_have_restarts_the_pass_with_a_warning(api, connect, caplog, position, read_all_users):
    serve_listing(api, segment_ids(5))
    parsed, client = connect(user_external_ids=["user_id:u1", "user_id:u2"], read_all_users=read_all_users)
    users = UserIds(parsed, UserListing(parsed, client) if read_all_users else None)

    pages = list(users.pages(ResumePoint(position, done=frozenset())))

    read = [external_id for each in pages for external_id in each.ids]
    assert read == ["user_id:u1", "user_id:u2"] + ([f"segment_id:use_000{n}" for n in range(5)] if read_all_users else [])
    (warning,) = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert position in warning and "none is skipped" in warning and "reset" not in warning.lower()


# --- the user listing -----------------------------------------------------------------------


def test_the_listing_follows_next_offsets_asking_for_100_users_a_page(api, connect):
    serve_listing(api, segment_ids(230))
    parsed, client = connect(read_all_users=True)

    pages = list(UserListing(parsed, client).pages())

    assert [each.position for each in pages] == ["listed:0", "listed:100", "listed:200"]
    assert [external_id for each in pages for external_id in each.ids] == [f"segment_id:{value}" for value in segment_ids(230)]
    assert listing_requests(api) == [("0", LISTING_LIMIT), ("100", LISTING_LIMIT), ("200", LISTING_LIMIT)]
    assert all(request.headers["Authorization"].startswith("Basic ") for request in api.seen)


def test_the_listing_is_requested_a_page_at_a_time_as_ids_are_needed(api, connect):
    serve_listing(api, segment_ids(1000))
    parsed, client = connect(read_all_users=True)

    pages = UserListing(parsed, client).pages()
    first = next(pages)

    assert len(first.ids) == 100
    assert listing_requests(api) == [("0", LISTING_LIMIT)]


def test_an_empty_listing_has_one_empty_page(api, connect):
    serve_listing(api, [])
    parsed, client = connect(read_all_users=True)

    assert list(UserListing(parsed, client).pages()) == [IdPage("listed:0", [])]


def test_the_probe_asks_the_listing_for_one_user(api, connect):
    serve_listing(api, segment_ids(5))
    parsed, client = connect(read_all_users=True)

    UserListing(parsed, client).probe()

    assert listing_requests(api) == [("0", "1")]


@pytest.mark.parametrize("status", [400, 404])
@pytest.mark.parametrize("call", ["probe", "pages"])
def test_a_400_or_404_to_the_listing_is_a_config_error_naming_the_space(api, connect, status, call):
    refuse_listing(api, Reply.error(status))
    parsed, client = connect(read_all_users=True)
    listing = UserListing(parsed, client)

    with pytest.raises(ListingUnavailable) as raised:
        listing.probe() if call == "probe" else list(listing.pages())

    error = raised.value
    assert error.failure_type == FailureType.config_error
    assert f"'{SPACE_ID}'" in error.message and str(status) in error.message
    assert "listing is not available for this space" in error.message
    assert "user_external_ids" in error.message and "read_all_users" in error.message
    assert len(api.seen) == 1, "a missing list method is not retried"


@pytest.mark.parametrize(
    "reply, error_type",
    [
        pytest.param(Reply.error(500), TransientApiError, id="5xx-is-transient"),
        pytest.param(Reply.error(401), CredentialsRejected, id="401-is-credentials"),
        pytest.param(Reply(200, {"data": [{"id": "x"}], "cursor": cursor()}), UnexpectedResponse, id="no-segment-id"),
    ],
)
def test_other_listing_failures_are_not_taken_for_a_missing_list_method(api, connect, reply, error_type):
    refuse_listing(api, reply)
    parsed, client = connect(read_all_users=True, max_retries=0)

    with pytest.raises(error_type) as raised:
        list(UserListing(parsed, client).pages())
    assert not isinstance(raised.value, ListingUnavailable)


# --- the source with read_all_users on the fake API ----------------------------------------


def test_check_with_no_ids_probes_the_list_method_once(api):
    serve_listing(api, segment_ids(5))

    status, message, _ = check_status(config(user_external_ids=[], read_all_users=True))

    assert (status, message) == ("SUCCEEDED", None)
    assert [request.path for request in api.seen] == [LISTING_PATH]
    assert listing_requests(api) == [("0", "1")]


@pytest.mark.parametrize("status", [400, 404])
def test_check_fails_when_the_space_does_not_list_users(api, status):
    api.pages("user_traits", "user_id:u1", traits_page({"plan": "pro"}))
    refuse_listing(api, Reply.error(status))

    state, message, _ = check_status(config(read_all_users=True))

    assert state == "FAILED"
    assert "listing is not available for this space" in message and SPACE_ID in message


def test_read_fails_with_a_config_error_before_any_profile_request_when_the_space_does_not_list_users(api):
    refuse_listing(api, Reply.error(404))
    api.pages("user_traits", "user_id:u1", traits_page({"plan": "pro"}))

    result = run_read(config(read_all_users=True, account_external_ids=["group_id:g1"]), streams=ALL_STREAMS)

    assert result.records() == []
    errors = result.errors()
    assert errors and all(error.failure_type == FailureType.config_error for error in errors)
    assert any("listing is not available for this space" in error.message for error in errors)
    assert profile_requests(api) == []


def test_user_streams_read_the_configured_ids_then_every_listed_user_as_segment_id(api):
    serve_listing(api, ["use_a", "use_b"])
    for external_id in ("user_id:u1", "segment_id:use_a", "segment_id:use_b"):
        api.pages("user_traits", external_id, traits_page({"name": external_id}))

    result = run_read(config(read_all_users=True), streams=["user_traits"])

    assert result.errors() == []
    assert sorted(record["external_id"] for record in result.records("user_traits")) == [
        "segment_id:use_a",
        "segment_id:use_b",
        "user_id:u1",
    ]
    assert result.states("user_traits")[-1] == {"__ab_full_refresh_sync_complete": True}


def test_a_sync_pages_through_the_listing_once_and_every_user_stream_reads_the_same_users(api):
    serve_listing(api, [f"use_{n}" for n in range(250)])  # three pages of 100
    for n in range(250):
        api.pages("user_traits", f"segment_id:use_{n}", traits_page({"n": n}))
        api.pages("user_external_ids", f"segment_id:use_{n}", data_page([]))

    result = run_read(config(user_external_ids=[], read_all_users=True), streams=["user_traits", "user_external_ids"])

    assert result.errors() == []
    assert [token for token, limit in listing_requests(api) if limit != "1"] == ["0", "100", "200"]  # once, not once a stream
    for resource in ("traits", "external_ids"):
        assert sorted(path for path in profile_requests(api) if path.endswith(f"/{resource}")) == sorted(
            f"/v1/spaces/{SPACE_ID}/collections/users/profiles/segment_id:use_{n}/{resource}" for n in range(250)
        )


def test_a_resumed_user_stream_reads_only_the_profiles_its_state_does_not_say_done(api):
    serve_listing(api, ["use_a", "use_b", "use_c"])
    for external_id in ("segment_id:use_a", "segment_id:use_b", "segment_id:use_c"):
        api.pages("user_traits", external_id, traits_page({"name": external_id}))
    state = StateBuilder().with_stream_state("user_traits", {"reading": {"position": "listed:0", "done": ["segment_id:use_b"]}}).build()

    result = run_read(config(user_external_ids=[], read_all_users=True), streams=["user_traits"], state=state)

    assert result.errors() == []
    assert sorted(record["external_id"] for record in result.records("user_traits")) == ["segment_id:use_a", "segment_id:use_c"]
    assert not any(path.endswith("/segment_id:use_b/traits") for path in profile_requests(api))
    assert result.states("user_traits")[-1] == {"__ab_full_refresh_sync_complete": True}


def test_a_finished_pass_handed_back_on_the_next_sync_reads_every_user_again(api):
    serve_listing(api, ["use_a", "use_b"])
    for external_id in ("segment_id:use_a", "segment_id:use_b"):
        api.pages("user_traits", external_id, traits_page({"name": external_id}))
    state = StateBuilder().with_stream_state("user_traits", {"__ab_full_refresh_sync_complete": True}).build()

    result = run_read(config(user_external_ids=[], read_all_users=True), streams=["user_traits"], state=state)

    assert sorted(record["external_id"] for record in result.records("user_traits")) == ["segment_id:use_a", "segment_id:use_b"]
    assert result.states("user_traits")[-1] == {"__ab_full_refresh_sync_complete": True}


@pytest.mark.parametrize(
    "reading",
    [
        pytest.param({"position": "elsewhere:0", "done": []}, id="unknown-position"),
        pytest.param({"position": 3, "done": []}, id="position-not-a-string"),
        pytest.param("listed:0", id="a-string"),
    ],
)
def test_a_reading_position_that_cannot_be_used_restarts_the_pass_and_reads_every_profile(api, reading):
    serve_listing(api, ["use_a"])
    api.pages("user_traits", "segment_id:use_a", traits_page({}))
    state = StateBuilder().with_stream_state("user_traits", {"reading": reading}).build()

    result = run_read(config(user_external_ids=[], read_all_users=True), streams=["user_traits"], state=state)

    assert result.errors() == []
    assert [record["external_id"] for record in result.records("user_traits")] == ["segment_id:use_a"]
    assert any("starts again" in line for line in result.logs())


def test_account_streams_do_not_list_users(api):
    serve_listing(api, ["use_a"])
    api.pages("account_traits", "group_id:g1", traits_page({"plan": "pro"}))

    result = run_read(config(user_external_ids=[], account_external_ids=["group_id:g1"], read_all_users=True), streams=ACCOUNT_STREAMS)

    assert [record["external_id"] for record in result.records("account_traits")] == ["group_id:g1"]
    # Only the probe before reading: the account streams never page through the users.
    assert listing_requests(api) == [("0", "1")]


# --- ids Segment would not match ------------------------------------------------------------


@pytest.mark.parametrize(
    "external_id, matchable",
    [
        ("user_id:abc123", True),
        ("email:jane@example.com", True),
        ("user_id:Bob", False),
        ("EMAIL:jane@example.com", False),
        ("user_id:abc ", False),
        ("user_id: abc", True),  # inside the id, not around it
        ("\tuser_id:abc", False),
    ],
)
def test_ids_with_upper_case_or_surrounding_whitespace_are_the_ones_segment_would_not_match(external_id, matchable):
    assert ids_segment_would_not_match([external_id]) == ([] if matchable else [external_id])


def test_ids_segment_would_not_match_keep_their_order():
    ids = ["user_id:B", "user_id:ok", "email:Jane@x.com", "user_id:a "]
    assert ids_segment_would_not_match(ids) == ["user_id:B", "email:Jane@x.com", "user_id:a "]


def test_check_warns_about_ids_segment_would_not_match_without_changing_them(api):
    api.pages("user_traits", "user_id:Bob", traits_page({}))

    status, _, output = check_status(config(user_external_ids=["user_id:Bob", "user_id:ok", "email:Jane@x.com"]))

    assert status == "SUCCEEDED"
    warnings = [message.log.message for message in output.logs if message.log.level == Level.WARN]
    # Issue 21: every id type is masked (many user ids are emails), with its place in the config.
    assert any("2 configured ids" in line and "user_id:*** (user_external_ids[0])" in line and "email:J***@x.com" in line for line in warnings), warnings
    assert not any("Jane" in line or "Bob" in line for line in warnings)
    assert api.seen[0].path.endswith("/profiles/user_id:Bob/traits")


def test_the_stream_summary_warns_about_ids_segment_would_not_match_and_reads_them_as_given(api):
    for external_id in ("user_id:Bob", "user_id:ok"):
        api.pages("user_traits", external_id, traits_page({"a": 1}))

    result = run_read(config(user_external_ids=["user_id:Bob", "user_id:ok"]), streams=["user_traits"])

    assert sorted(record["external_id"] for record in result.records("user_traits")) == ["user_id:Bob", "user_id:ok"]
    summaries = [line for line in result.logs() if line.startswith("Summary user_traits")]
    assert len(summaries) == 1 and "1 configured ids" in summaries[0] and "user_id:*** (user_external_ids[0])" in summaries[0]


# --- config ---------------------------------------------------------------------------------


def test_both_id_lists_may_be_empty_when_read_all_users_is_on():
    parsed = parse_config(config(user_external_ids=[], account_external_ids=[], read_all_users=True))

    assert (parsed.user_external_ids, parsed.account_external_ids, parsed.read_all_users) == ((), (), True)


def test_the_account_list_may_be_empty_when_accounts_come_from_user_links():
    parsed = parse_config(config(account_external_ids=[], accounts_from_user_links=True))

    assert (parsed.account_external_ids, parsed.accounts_from_user_links) == ((), True)


def test_the_flags_are_off_by_default():
    parsed = parse_config(config())

    assert (parsed.read_all_users, parsed.accounts_from_user_links) == (False, False)


@pytest.mark.parametrize("flags", [{}, {"read_all_users": False}, {"accounts_from_user_links": True}])
def test_both_id_lists_empty_without_read_all_users_is_a_config_error_naming_the_fields(flags):
    with pytest.raises(ConfigError) as raised:
        parse_config(config(user_external_ids=[], account_external_ids=[], **flags))

    message = raised.value.message
    assert raised.value.failure_type == FailureType.config_error
    assert "'user_external_ids'" in message and "'account_external_ids'" in message and "'read_all_users'" in message


@pytest.mark.parametrize("field", ["read_all_users", "accounts_from_user_links"])
@pytest.mark.parametrize("value", ["true", 1, "yes"])
def test_a_flag_that_is_not_a_boolean_is_a_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError) as raised:
        parse_config(config(**{field: value}))

    assert f"'{field}'" in raised.value.message and repr(value) in raised.value.message


def test_check_fails_naming_a_flag_that_is_not_a_boolean(api):
    status, message, _ = check_status(config(read_all_users="true"))

    assert status == "FAILED"
    assert "'read_all_users'" in message and "true or false" in message
    assert api.seen == []
