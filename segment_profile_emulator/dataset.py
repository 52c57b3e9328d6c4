"""A deterministic synthetic Segment Unify space: profiles, their ids, traits, links and events.

Profiles are a pure function of (seed, profile index); events are a pure function of
(seed, profile index, UTC day), served only inside the retention window that ends at the clock. Two
emulator runs with the same seed therefore agree on every profile, and on every event their
windows share, and tests can compute what the emulator serves without asking it.

User profiles are built when first asked for and kept in a bounded cache (a space of 100,000
users does not fit in memory as Python objects); one pass at startup builds each user once to
index its ids, segment id and accounts. DatasetOptions adds what a plain space lacks: a trait
with a lone UTF-16 surrogate, a fixed number of events per user or for user 0, events that
arrive hours after their timestamp, and events stamped a year ahead. Every option off gives the
same answers, byte for byte, as before the options existed.

Messages delivered while the emulator runs (messages.py) change users after they are built: they
are kept apart, keyed by user index, and laid over the built profiles by the methods here that
take `now_ms` (traits_of, external_ids_of, user_links, account_links, visible_events), which show
those that arrived before `now_ms` (None: every one delivered).

The parts: profiles.py and traits.py build the profiles, events.py generates the events,
options.py holds DatasetOptions, messages.py the delivered messages and ground_truth.py exports
what is served. This module holds the space itself: the profiles' identity index, their links, and
the caches of profiles and events.
"""

from __future__ import annotations

import bisect
import random
import threading
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Iterator

from .events import EventGenerator, EventWindow
from .formats import format_timestamp, parse_timestamp
from .messages import DeliveredMessages, Delivery
from .options import DatasetOptions
from .profiles import SEGMENT_ID_TYPE, AccountProfile, UserProfile, build_account, build_user, metadata_moved_by
from .randomness import random_base62, stable_hash
from .traits import ComputedTraitsEpoch, TraitDetail

# Cache of generated event windows, bounded by the number of events it holds.
EVENT_CACHE_MAX_EVENTS = 200_000
# Built user profiles kept: every user of the benchmark's largest space (10,000 users), about
# 10 KiB each; larger spaces rebuild evicted profiles on demand (~0.25 ms each).
PROFILE_CACHE_SIZE = 10_000


def _linked_id(external_id: dict) -> dict:
    """An external id as a link shows it: without first_message_id."""
    return {key: value for key, value in external_id.items() if key != "first_message_id"}


class _IdIndex:
    """Which users an id may belong to, in 12 bytes per id: the sorted hashes of the ids and the
    index of each one's user. A hash can collide: callers check the profile they get."""

    def __init__(self, hashes: array, owners: array):
        order = sorted(range(len(hashes)), key=hashes.__getitem__)
        self._hashes = array("q", [hashes[position] for position in order])
        self._owners = array("i", [owners[position] for position in order])

    def owners(self, profile_id: str) -> Iterator[int]:
        wanted = hash(profile_id)  # hash() is per process, and so is the index
        position = bisect.bisect_left(self._hashes, wanted)
        while position < len(self._hashes) and self._hashes[position] == wanted:
            yield self._owners[position]
            position += 1


class LazyUsers(Sequence):
    """`dataset.users`: reads like the list of users, building each user when it is asked for."""

    def __init__(self, dataset: Dataset):
        self._dataset = dataset

    def __len__(self) -> int:
        return self._dataset.user_count

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._dataset.user(position) for position in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        return self._dataset.user(index)

    def __iter__(self) -> Iterator[UserProfile]:
        return (self._dataset.user(index) for index in range(len(self)))


class Dataset:
    """The profiles of one space, their identity index, and their (lazily generated) events.

    `now_ms` is the clock the dataset starts at (the emulator's clock may move on from it): future
    events arrive relative to it."""

    def __init__(
        self, users: int, accounts: int, seed: int, space_id: str, now_ms: int, options: DatasetOptions | None = None
    ):
        self.seed = seed
        self.space_id = space_id
        self.now_ms = now_ms
        self.options = options or DatasetOptions()
        self.user_count = users
        self.account_count = accounts
        source_rng = random.Random(stable_hash(seed, "sources"))
        self.sources = ["src_" + random_base62(source_rng, 22) for _ in range(4)]
        self._profile_cache: OrderedDict[int, UserProfile] = OrderedDict()
        self._profile_cache_lock = threading.Lock()

        # One pass builds every user once, for what must be known of all of them before any is
        # asked for: the ids that find each user, and each account's members. The profiles are
        # then rebuilt from the seed whenever the cache no longer holds them.
        members: list[list[int]] = [[] for _ in range(accounts)]
        self.user_lookup_ids: list[str] = []
        self.user_segment_ids: list[str] = []
        id_hashes, id_owners = array("q"), array("i")
        for index in range(users):
            user = self.user(index)
            self.user_lookup_ids.append(user.lookup_id)
            self.user_segment_ids.append(user.segment_id)
            for profile_id in (*user.ids, f"{SEGMENT_ID_TYPE}:{user.segment_id}"):
                id_hashes.append(hash(profile_id))
                id_owners.append(index)
            for account_index in user.account_indexes:
                members[account_index].append(index)
        self._user_ids = _IdIndex(id_hashes, id_owners)
        self.users = LazyUsers(self)

        self.accounts = [build_account(seed, index, members[index], self.sources) for index in range(accounts)]
        self._accounts_by_id = {
            profile_id: account
            for account in self.accounts
            for profile_id in (*account.ids, f"{SEGMENT_ID_TYPE}:{account.segment_id}")
        }
        self._events = EventGenerator(seed, self.sources, self.options, now_ms)
        self._event_cache: OrderedDict[tuple[int, int], EventWindow] = OrderedDict()
        self._event_cache_size = 0
        self._event_cache_lock = threading.Lock()
        # The windows of a heavy_user_events user: kept apart from the cache of the others, which
        # they would flush, for the last two clocks (an events cursor keeps the clock it began at).
        self._heavy_windows: OrderedDict[tuple[int, int], EventWindow] = OrderedDict()
        self._heavy_generation_lock = threading.Lock()
        self.computed_traits = ComputedTraitsEpoch()
        self.messages = DeliveredMessages(seed, self.sources, [account.external_ids[0]["id"] for account in self.accounts])

    # Profiles ------------------------------------------------------------------------------------

    def user(self, index: int) -> UserProfile:
        """The user at `index` (0 <= index < user_count), from the cache or built from the seed."""
        with self._profile_cache_lock:
            user = self._profile_cache.get(index)
            if user is not None:
                self._profile_cache.move_to_end(index)
                return user
        if not 0 <= index < self.user_count:
            raise IndexError(f"no user {index} in a space of {self.user_count}")
        user = build_user(self.seed, index, self.account_count, self.sources, self.options)
        with self._profile_cache_lock:
            self._profile_cache[index] = user
            while len(self._profile_cache) > PROFILE_CACHE_SIZE:
                self._profile_cache.popitem(last=False)
        return user

    def find(self, collection: str, external_id: str) -> UserProfile | AccountProfile | None:
        """Identity resolution: any `type:value` id of a profile finds it, and so does its segment
        id, as `segment_id:<id>` or bare (use_..., acc_...), and so does an anonymous id that an
        identify message added. Any other bare value finds nothing."""
        candidates = (external_id, f"{SEGMENT_ID_TYPE}:{external_id}")
        if collection == "accounts":
            return next((self._accounts_by_id[name] for name in candidates if name in self._accounts_by_id), None)
        for profile_id in candidates:
            for index in self._user_ids.owners(profile_id):
                user = self.user(index)
                if user.answers_to(profile_id):
                    return user
        id_type, _, value = external_id.partition(":")
        owner = self.messages.owner_of_anonymous_id(value) if id_type == "anonymous_id" else None
        return None if owner is None else self.user(owner)

    def traits_of(
        self, profile: UserProfile | AccountProfile, now_ms: int | None = None
    ) -> tuple[dict[str, Any], dict[str, TraitDetail]]:
        """A profile's traits and their details as served at `now_ms`: in the computed traits'
        epoch (see set_computed_traits_epoch), and with what identify messages set."""
        traits, details = self.computed_traits.traits_of(self.seed, profile)
        if isinstance(profile, UserProfile):
            traits, details = self.messages.with_traits(profile.index, now_ms, traits, details)
        return traits, details

    def external_ids_of(self, profile: UserProfile | AccountProfile, now_ms: int | None = None) -> list[dict]:
        """A profile's external ids, with the anonymous ids identify messages added last."""
        added = self.messages.external_ids(profile.index, now_ms) if isinstance(profile, UserProfile) else []
        return profile.external_ids + added if added else profile.external_ids

    def deliver_messages(self, delivery: Delivery, arrival_ms: int) -> list[dict]:
        """Delivers messages arriving at `arrival_ms` (see messages.py); what each user got."""
        return self.messages.deliver(self, delivery, arrival_ms)

    def set_computed_traits_epoch(self, epoch: int, now_ms: int) -> None:
        """Recompute every computed trait, as at clock `now_ms`, if `epoch` is a new one. No message
        is involved: the profiles' metadata does not move."""
        if epoch != self.computed_traits.epoch:
            self.computed_traits = ComputedTraitsEpoch(epoch, format_timestamp(now_ms))

    def user_metadata(self, user: UserProfile, now_ms: int) -> dict:
        """The user's metadata body at clock `now_ms`: it moves with the newest message that arrived."""
        return metadata_moved_by(user.metadata, self.visible_events(user, now_ms).newest_arrival)

    # Links ---------------------------------------------------------------------------------------

    def user_links(self, user: UserProfile, now_ms: int | None = None) -> list[dict]:
        """A user's accounts, each named by its group ids: those it was built with, then those
        group messages linked, in link order."""
        return [
            {"to_collection": "accounts", "external_ids": [_linked_id(group_id) for group_id in self.accounts[index].external_ids]}
            for index in (*user.account_indexes, *self.messages.linked_accounts(user.index, now_ms))
        ]

    def account_link_count(self, account: AccountProfile, now_ms: int | None = None) -> int:
        return len(account.user_indexes) + len(self.messages.linked_users(account.index, now_ms))

    def account_links(
        self, account: AccountProfile, start: int = 0, stop: int | None = None, now_ms: int | None = None
    ) -> list[dict]:
        """An account's users from `start` to `stop`, each named by its user_id: only those are
        built (an account of a 100,000-user space has thousands). Its own users come first, then
        those group messages linked, in link order."""
        own = account.user_indexes
        linked = self.messages.linked_users(account.index, now_ms)
        indexes = own[start:stop]
        if linked and (stop is None or stop > len(own)):
            indexes = indexes + linked[max(0, start - len(own)) : None if stop is None else stop - len(own)].tolist()
        return [
            {"to_collection": "users", "external_ids": [_linked_id(self.user(index).external_ids[0])]}
            for index in indexes
        ]

    # Events --------------------------------------------------------------------------------------

    def visible_events(self, user: UserProfile, now_ms: int, remember: bool = True) -> EventWindow:
        """The user's events shown at clock `now_ms`, oldest first: those that have arrived
        (arrival < now_ms; an ordinary event arrives at its timestamp) and are kept (timestamp >=
        now_ms - 14 days), delivered messages among them (see DeliveredMessages.with_events)."""
        return self.messages.with_events(self._own_events(user, now_ms, remember), user.index, now_ms)

    def _own_events(self, user: UserProfile, now_ms: int, remember: bool) -> EventWindow:
        """The events the user was built with, cached unless `remember` is false (a delivered
        message never enters the cache: it is laid over what comes out of it)."""
        key = (user.index, now_ms)
        kept_apart = user.index == 0 and self.options.heavy_user_events is not None
        with self._event_cache_lock:
            cache = self._heavy_windows if kept_apart else self._event_cache
            window = cache.get(key)
            if window is not None:
                cache.move_to_end(key)
                return window
        if kept_apart:
            # Concurrent first pages of the heavy user generate its window once, not once each.
            with self._heavy_generation_lock:
                window = self._heavy_windows.get(key) or self._events.generate_visible_events(user, now_ms)
                with self._event_cache_lock:
                    self._heavy_windows[key] = window
                    while len(self._heavy_windows) > 2:
                        self._heavy_windows.popitem(last=False)
            return window
        window = self._events.generate_visible_events(user, now_ms)
        if remember:
            with self._event_cache_lock:
                if key not in self._event_cache:
                    self._event_cache[key] = window
                    self._event_cache_size += len(window.events)
                    while self._event_cache_size > EVENT_CACHE_MAX_EVENTS and len(self._event_cache) > 1:
                        _, evicted = self._event_cache.popitem(last=False)
                        self._event_cache_size -= len(evicted.events)
        return window


def build_dataset(
    users: int,
    accounts: int,
    seed: int = 42,
    space_id: str = "spa_demo",
    now: str | int | None = None,
    **options: Any,
) -> Dataset:
    """The dataset of a space; `now` (ISO 8601 or epoch ms, default: the current second) is its
    clock; `options` are DatasetOptions fields (lone_surrogate_trait=True, late_event_hours=(6,), ...)."""
    return Dataset(users, accounts, seed, space_id, resolve_now(now), DatasetOptions(**options))


def resolve_now(now: str | int | None) -> int:
    """Epoch milliseconds of a clock setting, floored to the second."""
    if now is None:
        now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    elif isinstance(now, int):
        now_ms = now
    else:
        now_ms = parse_timestamp(now)
    return now_ms - now_ms % 1000
