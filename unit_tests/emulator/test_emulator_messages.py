"""Messages delivered while the emulator runs (POST /_emulator/messages): each reaches its user at
the emulated clock's now and shows at once on the routes it changes, and only those, and in the
ground truth. The tests share one emulator, each with users of its own, and compare what the
routes serve before and after its deliveries, so that they hold in any order."""

from __future__ import annotations

import threading

import pytest
import requests

from integration_tests.ground_truth import expected_records
from segment_profile_emulator.formats import DAY_MS, HOUR_MS, format_timestamp, parse_timestamp
from segment_profile_emulator.messages import IDENTIFY_TRAIT, chosen_by_fraction
from segment_profile_emulator.testing import running_emulator
from unit_tests.emulator.paging import api_session, fields, get, message_id, page_through

NOW = "2026-11-20T10:00:00Z"
USERS, ACCOUNTS = 40, 4
# index % 5 == 1 users get an event an hour that arrives 6 hours after its timestamp
SPACE = dict(users=USERS, accounts=ACCOUNTS, seed=7, now=NOW, rate_limit=0, late_events="6")
HEAVY_USER = 5  # 300+ traits and 260+ ids
NO_EVENTS_USER = 18  # index % 10 == 8; fraction 0.25 and 0.1 do not choose it
NO_CURSOR_LINKS_USER = 3  # index % 4 == 3: links answered without a cursor
LATE_USER = 11
EXTERNAL_ID_KEYS = ["id", "type", "source_id", "collection", "created_at", "encoding", "first_message_id"]


@pytest.fixture(scope="module")
def emulator():
    with running_emulator(**SPACE) as running:
        yield running


@pytest.fixture(scope="module")
def lookup(emulator):
    return emulator.lookup_ids()


@pytest.fixture(scope="module")
def sources(truth):
    """The space's sources: those its profiles' ids came from."""
    found = {item["source_id"] for profile in truth["users"] + truth["accounts"] for item in profile["external_ids"]}
    assert len(found) == 4
    return found


def served_user(api, emulator, lookup_id):
    """Everything the routes serve for a user, every page joined."""
    events, _ = page_through(api, emulator, "users", lookup_id, "events", "data", limit=200)
    traits, _ = page_through(api, emulator, "users", lookup_id, "traits", "traits", verbose="true", limit=200)
    external_ids, _ = page_through(api, emulator, "users", lookup_id, "external_ids", "data", limit=200)
    links, _ = page_through(api, emulator, "users", lookup_id, "links", "data", limit=20)
    metadata = get(api, emulator, "users", lookup_id, "metadata")
    assert metadata.status_code == 200, metadata.text
    return {"events": events, "traits": dict(traits), "external_ids": external_ids, "links": links, "metadata": metadata.json()}


def account_links(api, emulator, lookup):
    return {
        account: page_through(api, emulator, "accounts", account, "links", "data", limit=20)[0] for account in lookup["accounts"]
    }


def delivered(answer, position=0):
    """The message ids of the `position`th user of a delivery's answer."""
    return answer["users"][position]["message_ids"]


def check_metadata_moved(before, after, arrival, last_message_id):
    old, new = fields(before["metadata"]), fields(after["metadata"])
    assert (new["updated_at"], new["last_message_id"]) == (arrival, last_message_id)
    assert {**new, "updated_at": None, "last_message_id": None} == {**old, "updated_at": None, "last_message_id": None}
    assert ("metadata" in before["metadata"]) == ("metadata" in after["metadata"])  # the same shape


def check_new_event(event, kind, answer_message_id, arrival, sources):
    assert (event["type"], message_id(event), event["timestamp"]) == (kind, answer_message_id, arrival)
    assert event["source_id"] in sources


# --- what each kind changes ---------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 2, LATE_USER + 5])
def test_a_track_adds_an_event_and_moves_the_metadata_and_nothing_else(emulator, api, lookup, sources, index):
    lookup_id = lookup["users"][index]
    before, accounts_before = served_user(api, emulator, lookup_id), account_links(api, emulator, lookup)
    answer = emulator.deliver_messages("track", users=[lookup_id])
    after = served_user(api, emulator, lookup_id)

    assert answer["kind"] == "track" and answer["messages"] == 1
    assert answer["users"] == [{"lookup_id": lookup_id, "message_ids": delivered(answer)}]
    [new_id] = delivered(answer)
    assert after["events"][1:] == before["events"]  # newest first: the message, then what was there
    check_new_event(after["events"][0], "track", new_id, answer["arrival"], sources)
    assert isinstance(after["events"][0]["event"], str) and after["events"][0]["event"]
    check_metadata_moved(before, after, answer["arrival"], new_id)
    for unchanged in ("traits", "external_ids", "links"):
        assert after[unchanged] == before[unchanged]
    assert account_links(api, emulator, lookup) == accounts_before


@pytest.mark.parametrize("index", [4, HEAVY_USER])
def test_an_identify_sets_a_trait_and_adds_an_anonymous_id_that_finds_the_profile(emulator, api, lookup, sources, index):
    lookup_id = lookup["users"][index]
    before, accounts_before = served_user(api, emulator, lookup_id), account_links(api, emulator, lookup)
    answer = emulator.deliver_messages("identify", users=[lookup_id])
    after = served_user(api, emulator, lookup_id)

    [new_id] = delivered(answer)
    [anonymous_id] = answer["users"][0]["anonymous_ids"]
    arrival = answer["arrival"]
    event = after["events"][0]
    assert after["events"][1:] == before["events"]
    check_new_event(event, "identify", new_id, arrival, sources)
    assert event["traits"] == {IDENTIFY_TRAIT: arrival} and event["anonymousId"] == anonymous_id
    check_metadata_moved(before, after, arrival, new_id)

    trait = {"value": arrival, "source_id": event["source_id"], "updated_at": arrival}
    assert after["traits"] == {**before["traits"], IDENTIFY_TRAIT: trait}
    assert list(after["traits"]) == sorted(after["traits"])  # served in name order, as the others
    plain = get(api, emulator, "users", lookup_id, "traits", include=IDENTIFY_TRAIT).json()["traits"]
    assert plain == {IDENTIFY_TRAIT: arrival}

    assert after["external_ids"][:-1] == before["external_ids"]
    added = after["external_ids"][-1]
    assert list(added) == EXTERNAL_ID_KEYS == list(next(item for item in before["external_ids"] if "first_message_id" in item))
    assert added == {
        "id": anonymous_id,
        "type": "anonymous_id",
        "source_id": event["source_id"],
        "collection": "users",
        "created_at": arrival,
        "encoding": "none",
        "first_message_id": new_id,
    }
    assert served_user(api, emulator, f"anonymous_id:{anonymous_id}") == after
    assert after["links"] == before["links"]
    assert account_links(api, emulator, lookup) == accounts_before


def test_a_second_identify_moves_the_trait_and_adds_another_id(emulator, api, lookup):
    lookup_id = lookup["users"][24]
    first = emulator.deliver_messages("identify", users=[lookup_id])
    second = emulator.deliver_messages("identify", users=[lookup_id], count=2)
    after = served_user(api, emulator, lookup_id)
    assert after["traits"][IDENTIFY_TRAIT]["value"] == second["arrival"] != first["arrival"]
    added = [item["id"] for item in after["external_ids"][-3:]]
    assert added == first["users"][0]["anonymous_ids"] + second["users"][0]["anonymous_ids"]
    assert len(set(added)) == 3
    assert fields(after["metadata"])["last_message_id"] == delivered(second)[-1]


def linked_group_ids(links):
    return [[item["id"] for item in link["external_ids"]] for link in links]


@pytest.mark.parametrize("index", [NO_CURSOR_LINKS_USER, 6])
def test_a_group_links_the_next_account_on_both_sides(emulator, api, lookup, truth, sources, index):
    lookup_id = lookup["users"][index]
    before, accounts_before = served_user(api, emulator, lookup_id), account_links(api, emulator, lookup)
    answer = emulator.deliver_messages("group", users=[lookup_id])
    after = served_user(api, emulator, lookup_id)

    [new_id] = delivered(answer)
    event = after["events"][0]
    assert after["events"][1:] == before["events"]
    check_new_event(event, "group", new_id, answer["arrival"], sources)
    check_metadata_moved(before, after, answer["arrival"], new_id)

    # the lowest-index account the user was not linked to
    linked = {ids[0] for ids in linked_group_ids(before["links"])}
    account = next(account for account in truth["accounts"] if account["external_ids"][0]["id"] not in linked)
    assert answer["users"][0]["linked_accounts"] == [account["lookup_id"]]
    assert event["groupId"] == account["external_ids"][0]["id"]
    shown = [{key: value for key, value in item.items() if key != "first_message_id"} for item in account["external_ids"]]
    assert after["links"] == before["links"] + [{"to_collection": "accounts", "external_ids": shown}]

    user_id = next(item for item in after["external_ids"] if item["type"] == "user_id")
    user_link = {"to_collection": "users", "external_ids": [{k: v for k, v in user_id.items() if k != "first_message_id"}]}
    accounts_after = account_links(api, emulator, lookup)
    assert accounts_after == {**accounts_before, account["lookup_id"]: accounts_before[account["lookup_id"]] + [user_link]}
    assert after["traits"] == before["traits"] and after["external_ids"] == before["external_ids"]


def test_a_group_to_a_user_linked_to_every_account_links_nothing_more(emulator, api, lookup):
    lookup_id = lookup["users"][7]
    before = served_user(api, emulator, lookup_id)
    missing = ACCOUNTS - len(before["links"])
    answer = emulator.deliver_messages("group", users=[lookup_id], count=missing + 1)
    after = served_user(api, emulator, lookup_id)
    linked = answer["users"][0]["linked_accounts"]
    assert len(linked) == missing + 1 and None not in linked[:-1] and linked[-1] is None
    assert len(after["links"]) == ACCOUNTS
    assert sorted(map(tuple, linked_group_ids(after["links"]))) == sorted(
        tuple(item["id"] for item in served_account_ids(api, emulator, account)) for account in lookup["accounts"]
    )
    assert "groupId" not in after["events"][0]  # the last message: no account left to link
    assert fields(after["metadata"])["last_message_id"] == delivered(answer)[-1]


def served_account_ids(api, emulator, account):
    return page_through(api, emulator, "accounts", account, "external_ids", "data")[0]


# --- metadata -----------------------------------------------------------------------------------


def test_a_user_without_events_gets_the_message_as_its_only_event(emulator, api, lookup, sources):
    lookup_id = lookup["users"][NO_EVENTS_USER]
    assert get(api, emulator, "users", lookup_id, "events").json()["data"] is None
    before = served_user(api, emulator, lookup_id)
    assert "last_message_id" not in fields(before["metadata"])  # as built: no message yet
    answer = emulator.deliver_messages("track", users=[lookup_id])
    after = served_user(api, emulator, lookup_id)
    [event] = after["events"]
    check_new_event(event, "track", delivered(answer)[0], answer["arrival"], sources)
    assert fields(after["metadata"]) == {**fields(before["metadata"]), "updated_at": answer["arrival"], "last_message_id": delivered(answer)[0]}


def test_the_newest_arrived_event_wins_whether_delivered_or_built(emulator, api, lookup):
    lookup_id = lookup["users"][LATE_USER]
    answer = emulator.deliver_messages("track", users=[lookup_id])
    assert fields(served_user(api, emulator, lookup_id)["metadata"])["last_message_id"] == delivered(answer)[0]

    emulator.advance_clock(HOUR_MS / 1000)  # a late event arrives meanwhile, after the message
    after = served_user(api, emulator, lookup_id)
    body = fields(after["metadata"])
    assert parse_timestamp(answer["arrival"]) < parse_timestamp(body["updated_at"]) < parse_timestamp(emulator.clock())
    assert body["last_message_id"] != delivered(answer)[0]
    assert body["last_message_id"] in {message_id(event) for event in after["events"]}
    assert delivered(answer)[0] in {message_id(event) for event in after["events"]}

    again = emulator.deliver_messages("identify", users=[lookup_id])
    body = fields(served_user(api, emulator, lookup_id)["metadata"])
    assert (body["updated_at"], body["last_message_id"]) == (again["arrival"], delivered(again)[0])


def test_a_message_that_left_retention_keeps_moving_the_metadata():
    with running_emulator(users=10, accounts=1, seed=7, now=NOW, rate_limit=0) as small, api_session(small) as api:
        lookup_id = small.lookup_ids()["users"][8]  # no events of its own
        answer = small.deliver_messages("track", users=[lookup_id])
        small.advance_clock(15 * DAY_MS / 1000)
        assert get(api, small, "users", lookup_id, "events").json()["data"] is None
        body = fields(get(api, small, "users", lookup_id, "metadata").json())
        assert (body["updated_at"], body["last_message_id"]) == (answer["arrival"], delivered(answer)[0])
        assert small.ground_truth()["users"][8]["events"] == []


def test_messages_take_their_place_by_timestamp_among_events_that_arrived_between_them():
    # one event an hour, and user 4 (index % 10 == 4) has an event from a device a year ahead
    space = dict(users=10, accounts=1, seed=7, now=NOW, rate_limit=0, future_events=True, events_per_user=14 * 24)
    with running_emulator(**space) as small, api_session(small) as api:
        lookup_id = small.lookup_ids()["users"][4]
        first = small.deliver_messages("track", users=[lookup_id])
        small.advance_clock(3 * HOUR_MS / 1000)  # three hourly events arrive meanwhile
        second = small.deliver_messages("track", users=[lookup_id])
        events, _ = page_through(api, small, "users", lookup_id, "events", "data", limit=200)
        stamps = [parse_timestamp(event["timestamp"]) for event in events]
        assert stamps == sorted(stamps, reverse=True)
        assert stamps[0] > parse_timestamp(NOW) + 300 * DAY_MS  # the year-ahead event stays on top
        ids = [message_id(event) for event in events]
        assert ids[1] == delivered(second)[0]
        assert ids.index(delivered(first)[0]) == 5  # three arrived between the two messages
        assert len(events) == 14 * 24 + 1 + 2
        # the metadata follows arrival, not timestamp: the second message arrived last
        assert fields(get(api, small, "users", lookup_id, "metadata").json())["last_message_id"] == delivered(second)[0]


# --- one call, several calls --------------------------------------------------------------------


def test_calls_get_distinct_ids_and_instants_and_a_call_shares_one(emulator, api, lookup):
    lookup_id = lookup["users"][9]
    clock = emulator.clock()
    first = emulator.deliver_messages("track", users=[lookup_id], count=3)
    second = emulator.deliver_messages("track", users=[lookup_id])
    assert first["arrival"] == clock and first["now"] == second["arrival"] == format_timestamp(parse_timestamp(clock) + 1)
    assert second["now"] == emulator.clock() == format_timestamp(parse_timestamp(clock) + 2)
    ids = delivered(first) + delivered(second)
    assert len(set(ids)) == 4
    events = served_user(api, emulator, lookup_id)["events"]
    # newest first: the later call, then the first call's messages from its last
    assert [message_id(event) for event in events[:4]] == delivered(second) + delivered(first)[::-1]
    assert [event["timestamp"] for event in events[:4]] == [second["arrival"]] + [first["arrival"]] * 3


def test_start_and_end_filter_and_pages_split_the_messages_as_any_events(emulator, api, lookup):
    lookup_id = lookup["users"][13]
    answer = emulator.deliver_messages("identify", users=[lookup_id], count=3)
    ids = delivered(answer)[::-1]
    since, _ = page_through(api, emulator, "users", lookup_id, "events", "data", start=answer["arrival"], limit=2)
    assert [message_id(event) for event in since] == ids
    ascending, cursors = page_through(api, emulator, "users", lookup_id, "events", "data", start=answer["arrival"], sort="asc", limit=1)
    assert [message_id(event) for event in ascending] == ids[::-1] and len(cursors) == 3
    until, _ = page_through(api, emulator, "users", lookup_id, "events", "data", end=answer["arrival"], limit=200)
    assert not set(ids) & {message_id(event) for event in until}
    everything, _ = page_through(api, emulator, "users", lookup_id, "events", "data", limit=200)
    assert len(everything) == len(until) + 3


def test_an_events_cursor_taken_before_a_delivery_does_not_see_it(emulator, api, lookup):
    lookup_id = lookup["users"][14]
    first_page = get(api, emulator, "users", lookup_id, "events", limit=1)
    answer = emulator.deliver_messages("track", users=[lookup_id])
    before, _ = page_through(api, emulator, "users", lookup_id, "events", "data", limit=1)  # after the delivery
    assert message_id(before[0]) == delivered(answer)[0]
    body = first_page.json()
    assert body["cursor"]["has_more"], "user 14 needs two events or more"
    pinned, _ = page_through(api, emulator, "users", lookup_id, "events", "data", limit=1, next=body["cursor"]["next"])
    assert delivered(answer)[0] not in {message_id(event) for event in body["data"] + pinned}
    assert body["data"] + pinned == before[1:]


def test_concurrent_calls_each_get_an_instant_and_ids_of_their_own(emulator, api, lookup):
    lookup_id = lookup["users"][17]
    answers, errors = [], []

    def deliver():
        try:
            for _ in range(5):
                answers.append(emulator.deliver_messages("identify", users=[lookup_id]))
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(answers) == 40
    assert len({answer["arrival"] for answer in answers}) == 40
    assert len({delivered(answer)[0] for answer in answers}) == 40
    after = served_user(api, emulator, lookup_id)
    newest = max(answers, key=lambda answer: answer["arrival"])
    assert fields(after["metadata"])["last_message_id"] == delivered(newest)[0]
    assert after["traits"][IDENTIFY_TRAIT]["value"] == newest["arrival"]
    by_arrival = sorted(answers, key=lambda answer: answer["arrival"], reverse=True)
    assert [message_id(event) for event in after["events"][:40]] == [delivered(answer)[0] for answer in by_arrival]
    assert [item["id"] for item in after["external_ids"][-40:]] == [answer["users"][0]["anonymous_ids"][0] for answer in by_arrival[::-1]]


# --- choosing users by fraction -----------------------------------------------------------------


@pytest.mark.parametrize(("fraction", "indexes"), [(0.25, list(range(0, USERS, 4))), (0.1, [0, 10, 20, 30]), (0, [])])
def test_a_fraction_chooses_round_fraction_times_users_evenly_spread(emulator, api, lookup, fraction, indexes):
    untouched = lookup["users"][NO_EVENTS_USER + 1]
    untouched_before = get(api, emulator, "users", untouched, "metadata").json()
    clock = emulator.clock()
    answer = emulator.deliver_messages("track", fraction=fraction, count=2)
    assert answer["arrival"] == clock and answer["messages"] == 2 * len(indexes)
    assert [user["lookup_id"] for user in answer["users"]] == [lookup["users"][index] for index in indexes]
    for user in answer["users"]:
        body = fields(get(api, emulator, "users", user["lookup_id"], "metadata").json())
        assert (body["updated_at"], body["last_message_id"]) == (answer["arrival"], user["message_ids"][-1])
    assert get(api, emulator, "users", untouched, "metadata").json() == untouched_before


def test_the_fraction_rule_rounds_half_to_even_and_spreads_any_count():
    assert chosen_by_fraction(1, 7) == list(range(7))
    assert chosen_by_fraction(0.5, 5) == [0, 2]  # round(2.5) == 2
    assert chosen_by_fraction(0.3, 5) == [0, 2]  # round(1.5) == 2
    assert chosen_by_fraction(0.7, 5) == [0, 1, 2, 3]  # round(3.5) == 4: users 0, 5//4, 10//4, 15//4
    assert chosen_by_fraction(0.35, 20) == [0, 2, 5, 8, 11, 14, 17]  # round(7.0)
    assert chosen_by_fraction(0.01, 49) == []


def test_fraction_one_reaches_every_user():
    with running_emulator(users=6, accounts=2, seed=7, now=NOW, rate_limit=0) as small, api_session(small) as api:
        answer = small.deliver_messages("group", fraction=1)
        assert [user["lookup_id"] for user in answer["users"]] == small.lookup_ids()["users"]
        truth = small.ground_truth()
        for user, got in zip(truth["users"], answer["users"]):
            assert fields(user["metadata"])["last_message_id"] == got["message_ids"][0]
            assert message_id(user["events"][0]) == got["message_ids"][0]
        assert get(api, small, "users", answer["users"][0]["lookup_id"], "metadata").status_code == 200


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"kind": "page", "users": []}, ['kind', '"page"']),
        ({"users": []}, ["kind", "null"]),
        ({"kind": "track", "users": ["user_id:nobody"]}, ["users[0]", '"user_id:nobody"']),
        ({"kind": "track", "users": [7]}, ["users[0]", "7"]),
        ({"kind": "track", "users": "user_id:user-00000"}, ["users", '"user_id:user-00000"']),
        ({"kind": "track", "fraction": 1.5}, ["fraction", "1.5"]),
        ({"kind": "track", "fraction": -0.1}, ["fraction", "-0.1"]),
        ({"kind": "track", "fraction": True}, ["fraction", "true"]),
        ({"kind": "track", "fraction": "0.1"}, ["fraction", '"0.1"']),
        ({"kind": "track", "fraction": 0.1, "count": 0}, ["count", "0"]),
        ({"kind": "track", "fraction": 0.1, "count": 1.5}, ["count", "1.5"]),
        ({"kind": "track", "fraction": 0.1, "users": []}, ["users", "fraction"]),
        ({"kind": "track"}, ["users", "fraction"]),
        ({"kind": "track", "fraction": 0.1, "shout": 1}, ["shout"]),
        ([], ["JSON object"]),
    ],
)
def test_a_bad_request_answers_400_naming_the_field_and_value_and_delivers_nothing(emulator, lookup, body, named):
    clock = emulator.clock()
    response = requests.post(f"{emulator.url}/_emulator/messages", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert all(part in error["message"] for part in named), error["message"]
    assert emulator.clock() == clock  # nothing arrived


def test_a_body_that_is_not_json_answers_400(emulator):
    response = requests.post(f"{emulator.url}/_emulator/messages", data=b"{kind: track", timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "validation_error"


def test_users_may_be_named_by_any_of_their_ids(emulator, api, lookup, truth):
    user = truth["users"][21]
    segment = emulator.deliver_messages("track", users=[f"segment_id:{user['segment_id']}", user["ids"][1]])
    assert [got["lookup_id"] for got in segment["users"]] == [user["lookup_id"]] * 2
    body = fields(get(api, emulator, "users", user["lookup_id"], "metadata").json())
    assert body["last_message_id"] == delivered(segment, 1)[0]


# --- data, not stats ----------------------------------------------------------------------------


def test_messages_survive_a_stats_reset(emulator, api, lookup):
    lookup_id = lookup["users"][22]
    answer = emulator.deliver_messages("identify", users=[lookup_id])
    before = served_user(api, emulator, lookup_id)
    emulator.reset_stats()
    assert served_user(api, emulator, lookup_id) == before
    assert message_id(before["events"][0]) == delivered(answer)[0]
    truth_user = emulator.ground_truth()["users"][22]
    assert message_id(truth_user["events"][0]) == delivered(answer)[0]
    assert IDENTIFY_TRAIT in truth_user["traits"]


def test_the_ground_truth_is_what_the_routes_serve_after_deliveries(emulator, api, lookup):
    answers = {
        kind: emulator.deliver_messages(kind, users=[lookup["users"][index] for index in indexes])
        for kind, indexes in (("track", [25, 26]), ("identify", [26, 27]), ("group", [27, 25, 29]))
    }
    truth = emulator.ground_truth()
    assert truth["now"] == emulator.clock()
    for user in truth["users"]:
        served = served_user(api, emulator, user["lookup_id"])
        assert served["events"] == user["events"]
        assert served["traits"] == {
            name: {"value": value, **{k: v for k, v in user["trait_details"][name].items() if k != "class"}}
            for name, value in user["traits"].items()
        }
        assert served["external_ids"] == user["external_ids"]
        assert user["ids"] == [f"{item['type']}:{item['id']}" for item in user["external_ids"]]
        assert served["links"] == user["links"]
        assert served["metadata"] == user["metadata"]
    assert account_links(api, emulator, lookup) == {account["lookup_id"]: account["links"] for account in truth["accounts"]}

    by_lookup = {user["lookup_id"]: user for user in truth["users"]}
    for kind, answer in answers.items():
        for got in answer["users"]:
            user = by_lookup[got["lookup_id"]]
            assert got["message_ids"][0] in {message_id(event) for event in user["events"]}
    identified = by_lookup[answers["identify"]["users"][0]["lookup_id"]]
    assert identified["trait_details"][IDENTIFY_TRAIT] == {
        "class": "trait", "source_id": identified["events"][0]["source_id"], "updated_at": answers["identify"]["arrival"]
    }
    assert f"anonymous_id:{answers['identify']['users'][0]['anonymous_ids'][0]}" in identified["ids"]

    # what the connector's acceptance expects follows, from the ground truth as it stands
    records = expected_records(truth)
    assert answers["track"]["users"][0]["message_ids"][0] in {record["messageId"] for record in records["user_events"]}
    assert answers["identify"]["users"][1]["anonymous_ids"][0] in {record["id"] for record in records["user_external_ids"]}
    group_user = answers["group"]["users"][0]
    if group_user["linked_accounts"][0] is not None:
        linked = [record for record in records["user_links"] if record["external_id"] == group_user["lookup_id"]]
        assert len(linked) == len(by_lookup[group_user["lookup_id"]]["links"])
