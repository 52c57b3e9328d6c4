"""Messages delivered to users while the emulator runs (POST /_emulator/messages), as a real space
receives them: each reaches its profile at the emulated clock's now, and everything it changes
(events, traits, external ids, links, metadata) shows at once on the routes and in the ground truth.

Profiles are a pure function of (seed, index), rebuilt whenever the cache evicts them, so what
messages change cannot live in them: it lives here, in an overlay keyed by user index, which the
dataset lays over what it builds. A message is kept as a few numbers (its sequence number in the
space, its arrival, its kind, the account a group message linked); its ids, its source and its
event's body are drawn again from (seed, sequence number) whenever they are served. That is about
250 bytes a message (400 with the anonymous id an identify adds to the id index), so a million-user
space that delivered a message to a tenth of its users holds some 25-40 MB more.

How a delivery is published: its messages are recorded with arrival = the clock's now, then the
clock moves 1 ms on (EmulatorClock.tick_after), both under the clock's lock. Every view of the
overlay keeps only the messages that arrived before the clock it is read at (arrival < now, the
rule of the dataset's own events), so a reader never sees half a delivery, an events cursor pinned
at an earlier clock never sees a later message, and two calls never share an instant.
"""

from __future__ import annotations

import bisect
import json
import random
import threading
from array import array
from typing import TYPE_CHECKING, Any, NamedTuple

from .events import LIBRARIES, TRACK_EVENT_NAMES, EventWindow, NewestArrival, ServedEvent
from .formats import RETENTION_MS, format_timestamp, is_count, to_json_bytes
from .randomness import random_uuid, stable_hash
from .traits import TraitDetail

if TYPE_CHECKING:
    from .dataset import Dataset

KINDS = ("track", "identify", "group")
# The trait an identify message sets: when the user was last identified (its arrival).
IDENTIFY_TRAIT = "last_identified_at"
REQUEST_FIELDS = ("kind", "users", "fraction", "count")


class Delivered(NamedTuple):
    """One delivered message, as kept: everything else about it is drawn from its sequence number."""

    sequence: int  # the message's number in the space, from 0
    arrival_ms: int  # also its timestamp
    kind: str
    account_index: int | None  # group: the account it linked (None: the user had them all)


class MessageDraws(NamedTuple):
    """What a message's sequence number draws: the same in every process with the same seed."""

    message_id: str
    source_id: str
    anonymous_id: str  # the id an identify message adds
    event_name: str  # a track message's `event`
    library: tuple[str, str]


class Delivery(NamedTuple):
    """A validated request: `count` messages of `kind` to each user, in this order."""

    kind: str
    user_indexes: list[int]
    count: int


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def chosen_by_fraction(fraction: float, user_count: int) -> list[int]:
    """round(fraction * user_count) users (Python's round: a half goes to the even side), evenly
    spread over the indexes: user i * user_count // n for i in 0..n-1. Fraction 0.1 is every 10th
    user from user 0; the same fraction chooses the same users every time."""
    chosen = round(fraction * user_count)
    return [position * user_count // chosen for position in range(chosen)]


def parse_delivery(body: Any, dataset: Dataset) -> Delivery:
    """The request body of POST /_emulator/messages, validated; ValueError names the field and
    the value at fault."""
    if not isinstance(body, dict):
        raise ValueError('the body must be a JSON object such as {"kind": "track", "fraction": 0.1}')
    unknown = sorted(set(body) - set(REQUEST_FIELDS))
    if unknown:
        raise ValueError(f"unknown fields: {unknown}; known: {list(REQUEST_FIELDS)}")
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind must be one of {_json(KINDS)[1:-1]}, not {_json(kind)}")
    count = body.get("count", 1)
    if not is_count(count) or count < 1:
        raise ValueError(f"count must be a whole number >= 1, not {_json(count)}")
    if ("users" in body) == ("fraction" in body):
        raise ValueError("give either users (a list of lookup ids) or fraction (0..1), not both or neither")
    if "fraction" in body:
        fraction = body["fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"fraction must be a number between 0 and 1, not {_json(fraction)}")
        return Delivery(kind, chosen_by_fraction(fraction, dataset.user_count), count)
    users = body["users"]
    if not isinstance(users, list):
        raise ValueError(f"users must be a list of lookup ids, not {_json(users)}")
    indexes = []
    for position, lookup_id in enumerate(users):
        user = dataset.find("users", lookup_id) if isinstance(lookup_id, str) else None
        if user is None:
            raise ValueError(f"users[{position}] names no user: {_json(lookup_id)}")
        indexes.append(user.index)
    return Delivery(kind, indexes, count)


class DeliveredMessages:
    """The overlay of delivered messages (see the module's docstring). Written under its lock, one
    delivery at a time; read without it: lists only grow, and readers keep what arrived before
    their clock."""

    def __init__(self, seed: int, sources: list[str], group_ids: list[str]):
        self._seed = seed
        self._sources = sources
        self._group_ids = group_ids  # each account's first group id, for a group event's groupId
        self._lock = threading.Lock()
        self._next_sequence = 0
        self._by_user: dict[int, list[Delivered]] = {}  # oldest first
        # account index -> the users group messages linked to it and their arrivals, in link order
        self._members: dict[int, tuple[array, array]] = {}
        self._anonymous_id_owners: dict[str, int] = {}

    @property
    def count(self) -> int:
        return self._next_sequence

    def draws(self, sequence: int) -> MessageDraws:
        rng = random.Random(stable_hash(self._seed, "delivered message", sequence))
        return MessageDraws(
            random_uuid(rng), rng.choice(self._sources), random_uuid(rng), rng.choice(TRACK_EVENT_NAMES), rng.choice(LIBRARIES)
        )

    # Writing -------------------------------------------------------------------------------------

    def deliver(self, dataset: Dataset, delivery: Delivery, arrival_ms: int) -> list[dict]:
        """Records `delivery` as arriving at `arrival_ms`; what each user got, in request order."""
        answer = []
        with self._lock:
            for index in delivery.user_indexes:
                messages = self._by_user.setdefault(index, [])
                got: dict[str, Any] = {"lookup_id": dataset.user_lookup_ids[index], "message_ids": []}
                for _ in range(delivery.count):
                    sequence = self._next_sequence
                    draws = self.draws(sequence)
                    account_index = self._next_unlinked_account(dataset, index) if delivery.kind == "group" else None
                    if delivery.kind == "identify":
                        self._anonymous_id_owners[draws.anonymous_id] = index
                        got.setdefault("anonymous_ids", []).append(draws.anonymous_id)
                    if delivery.kind == "group":
                        if account_index is not None:
                            users, arrivals = self._members.setdefault(account_index, (array("i"), array("q")))
                            users.append(index)  # before its arrival: readers count arrivals
                            arrivals.append(arrival_ms)
                        linked = None if account_index is None else dataset.accounts[account_index].lookup_id
                        got.setdefault("linked_accounts", []).append(linked)
                    messages.append(Delivered(sequence, arrival_ms, delivery.kind, account_index))
                    got["message_ids"].append(draws.message_id)
                    self._next_sequence += 1
                answer.append(got)
        return answer

    def _next_unlinked_account(self, dataset: Dataset, user_index: int) -> int | None:
        """The lowest-index account the user is not linked to, by the dataset or a group message."""
        delivered = {message.account_index for message in self._by_user.get(user_index, ())}
        for account in dataset.accounts:
            members = account.user_indexes  # ascending: built in user order
            position = bisect.bisect_left(members, user_index)
            if account.index not in delivered and not (position < len(members) and members[position] == user_index):
                return account.index
        return None

    # Reading: what arrived before `now_ms` (None: everything delivered) -------------------------

    def arrived(self, user_index: int, now_ms: int | None) -> list[Delivered]:
        messages = self._by_user.get(user_index)
        if not messages:
            return []
        if now_ms is None:
            return list(messages)
        return [message for message in messages if message.arrival_ms < now_ms]

    def owner_of_anonymous_id(self, value: str) -> int | None:
        """Which user an identify message gave this anonymous id (found as soon as it is recorded:
        nobody can know the id before the delivery has answered)."""
        return self._anonymous_id_owners.get(value)

    def linked_users(self, account_index: int, now_ms: int | None) -> array:
        """The users group messages linked to the account, in link order."""
        members = self._members.get(account_index)
        if members is None:
            return array("i")
        users, arrivals = members
        count = len(arrivals) if now_ms is None else bisect.bisect_left(arrivals, now_ms)
        return users[:count]

    def linked_accounts(self, user_index: int, now_ms: int | None) -> list[int]:
        return [
            message.account_index
            for message in self.arrived(user_index, now_ms)
            if message.account_index is not None
        ]

    def with_traits(
        self, user_index: int, now_ms: int | None, traits: dict[str, Any], details: dict[str, TraitDetail]
    ) -> tuple[dict[str, Any], dict[str, TraitDetail]]:
        """A user's traits and their details with what its last arrived identify message set."""
        identify = next(
            (message for message in reversed(self.arrived(user_index, now_ms)) if message.kind == "identify"), None
        )
        if identify is None:
            return traits, details
        stamp = format_timestamp(identify.arrival_ms)
        traits = dict(sorted({**traits, IDENTIFY_TRAIT: stamp}.items()))  # code point order, as built
        details = {**details, IDENTIFY_TRAIT: TraitDetail("trait", self.draws(identify.sequence).source_id, stamp)}
        return traits, {name: details[name] for name in traits}

    def external_ids(self, user_index: int, now_ms: int | None) -> list[dict]:
        """The anonymous ids the user's arrived identify messages added, oldest first, shaped as
        the dataset's own external ids."""
        ids = []
        for message in self.arrived(user_index, now_ms):
            if message.kind == "identify":
                draws = self.draws(message.sequence)
                ids.append(
                    {
                        "id": draws.anonymous_id,
                        "type": "anonymous_id",
                        "source_id": draws.source_id,
                        "collection": "users",
                        "created_at": format_timestamp(message.arrival_ms),
                        "encoding": "none",
                        "first_message_id": draws.message_id,
                    }
                )
        return ids

    def served_event(self, message: Delivered) -> ServedEvent:
        """The message as the events route serves it."""
        draws = self.draws(message.sequence)
        stamp = format_timestamp(message.arrival_ms)
        body: dict[str, Any] = {"type": message.kind}
        name = None
        if message.kind == "track":
            name = body["event"] = draws.event_name
        elif message.kind == "identify":
            body["traits"] = {IDENTIFY_TRAIT: stamp}
            body["anonymousId"] = draws.anonymous_id
        elif message.account_index is not None:
            body["groupId"] = self._group_ids[message.account_index]
        library_name, library_version = draws.library
        body["properties"] = {}
        body["context"] = {"library": {"name": library_name, "version": library_version}}
        body["timestamp"] = stamp
        body["messageId"] = draws.message_id
        body["source_id"] = draws.source_id
        return ServedEvent(message.arrival_ms, name, to_json_bytes(body))

    def with_events(self, window: EventWindow, user_index: int, now_ms: int) -> EventWindow:
        """A user's event window at `now_ms` with the messages that had arrived by then: those
        still within retention among its events (in timestamp order, after the user's own events
        of the same millisecond, in delivery order), and the newest of them all moving the
        metadata, even once it has left retention (a message that reached a profile stays its
        last one until another arrives)."""
        arrived = self.arrived(user_index, now_ms)
        if not arrived:
            return window
        kept = [self.served_event(message) for message in arrived if message.arrival_ms >= now_ms - RETENTION_MS]
        timestamps, events = window.timestamps, window.events
        if kept:
            cut = bisect.bisect_right(timestamps, kept[0].timestamp_ms)
            # only events after the first kept message need merging: future-stamped ones at most
            tail = sorted(events[cut:] + kept, key=lambda event: event.timestamp_ms)
            events = events[:cut] + tail
            timestamps = timestamps[:cut] + [event.timestamp_ms for event in tail]
        newest = arrived[-1]
        newest_arrival = window.newest_arrival
        if newest_arrival is None or newest.arrival_ms >= newest_arrival.arrival_ms:
            newest_arrival = NewestArrival(newest.arrival_ms, self.draws(newest.sequence).message_id)
        return EventWindow(timestamps, events, newest_arrival)
