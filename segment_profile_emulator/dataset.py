"""A deterministic synthetic Segment Unify space: profiles, their ids, traits, links and events.

Profiles are a pure function of (seed, profile index); events are a pure function of
(seed, profile index, UTC day), served only inside the retention window that ends at the clock. Two
emulator runs with the same seed therefore agree on every profile, and on every event their
windows share, and tests can compute what the emulator serves without asking it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, NamedTuple

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
# "Only about the last 14 days of events are kept" (Segment Profile API docs).
RETENTION_MS = 14 * DAY_MS
# Profile timestamps (created_at, updated_at, ...) lie before this instant so that they do not
# depend on the clock: only events move with it.
PROFILE_EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
YEAR_MS = 365 * DAY_MS

# Every 97th user (index 5, 102, 199, ...) is heavy: 300+ traits, 250+ ids, thousands of events.
HEAVY_USER_PERIOD = 97
HEAVY_USER_OFFSET = 5
HEAVY_EVENTS_PER_HOUR = (6.0, 9.0)  # 2,000..3,000 events in a 14-day window
TYPICAL_EVENTS_PER_HOUR = (0.003, 0.18)  # 1..60 events in a 14-day window

# User ids that a client must percent-encode: one in five users carries one of these.
SPECIAL_USER_ID_PATTERNS = (
    "team/{i}",
    "what?{i}",
    "hash#{i}",
    "100%{i}",
    "jean dupont {i}",
    "zoë.müller{i}",
    "用户{i}",
    "a+b{i}",
)
SPECIAL_GROUP_ID_PATTERNS = ("org/{i}", "société {i}")

# Cache of generated event windows, bounded by the number of events it holds.
EVENT_CACHE_MAX_EVENTS = 200_000


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of ints and strings that, unlike hash(), is the same in every process."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


def to_json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, as the API sends it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def format_timestamp(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds, as the Profile API writes it: 2026-11-20T10:11:12.345Z."""
    seconds, millis = divmod(epoch_ms, 1000)
    moment = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (*moment[:6], millis)


def parse_timestamp(text: str) -> int:
    """Epoch milliseconds of an ISO 8601 timestamp; a timestamp without offset is UTC."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def _uuid(rng: random.Random) -> str:
    """A version-4 UUID from the RNG, formatted without the uuid module's overhead (events need
    hundreds of thousands)."""
    digits = f"{rng.getrandbits(128):032x}"
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{'89ab'[int(digits[16], 16) & 3]}{digits[17:20]}-{digits[20:]}"


def _base62(rng: random.Random, length: int) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(rng.choice(alphabet) for _ in range(length))


def _profile_time(rng: random.Random, years_back: float) -> int:
    """A millisecond instant up to `years_back` years before the profile epoch."""
    return PROFILE_EPOCH_MS - rng.randrange(1, int(years_back * YEAR_MS))


class TraitDetail(NamedTuple):
    """What `verbose=true` and `class=` reveal about a trait."""

    trait_class: str  # "trait", "audience" or "computed_trait"
    source_id: str
    updated_at: str


class ServedEvent(NamedTuple):
    timestamp_ms: int
    name: str | None  # what include/exclude match: `event` of track, `name` of page/screen
    json: bytes  # serialized once: pages join these as they are, and bytes are compact in the cache


@dataclass(slots=True)
class Profile:
    """What users and accounts share: their ids and their traits."""

    index: int
    lookup_id: str
    external_ids: list[dict]
    traits: dict[str, Any]  # keys in lexicographic (code point) order
    trait_details: dict[str, TraitDetail]
    trait_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.trait_names = list(self.traits)

    @property
    def ids(self) -> list[str]:
        return [f"{external_id['type']}:{external_id['id']}" for external_id in self.external_ids]


@dataclass(slots=True)
class UserProfile(Profile):
    segment_id: str
    metadata: dict  # the body served: flat, or wrapped in {"metadata": ...}
    account_indexes: list[int]
    events_per_hour: float
    links_have_cursor: bool


@dataclass(slots=True)
class AccountProfile(Profile):
    user_indexes: list[int]


# --- traits -------------------------------------------------------------------------------------

TraitMaker = Callable[[random.Random, int], Any]

FIRST_NAMES = ("Ada", "Zoë", "Łukasz", "María", "Søren", "Aiko", "Chloé", "Oğuz", "Noah", "Amara")
LAST_NAMES = ("Lovelace", "Müller", "Nowak", "García", "Kierkegaard", "Tanaka", "Dubois", "Yılmaz")
CITIES = ("Paris", "São Paulo", "Köln", "東京", "Zürich", "New York", "Kraków", "Reykjavík")
PLANS = ("free", "pro", "business", "enterprise")

# (name, class, maker): every JSON type, unicode and emoji, integers beyond 2**63, nesting.
USER_TRAITS: tuple[tuple[str, str, TraitMaker], ...] = (
    ("first_name", "trait", lambda rng, i: rng.choice(FIRST_NAMES)),
    ("last_name", "trait", lambda rng, i: rng.choice(LAST_NAMES)),
    ("prénom", "trait", lambda rng, i: rng.choice(FIRST_NAMES)),
    ("favorite color", "trait", lambda rng, i: rng.choice(("red", "vert", "青", "🟣 purple"))),
    ("favorite_emoji", "trait", lambda rng, i: rng.choice(("🎉", "🚀🔥", "👩🏽‍💻", "🇫🇷"))),
    ("bio", "trait", lambda rng, i: f"Ça va? 日本語 ✓ — user #{i}"),
    ("quote", "trait", lambda rng, i: 'He said "hi"\\n\tthen left\n'),
    ("city", "trait", lambda rng, i: rng.choice(CITIES)),
    ("zip_code", "trait", lambda rng, i: f"{rng.randrange(100000):05d}"),
    ("plan", "trait", lambda rng, i: rng.choice(PLANS)),
    ("language", "trait", lambda rng, i: rng.choice(("en", "fr", "de", "ja", "pt-BR"))),
    ("age", "trait", lambda rng, i: rng.randint(16, 99)),
    ("logins", "trait", lambda rng, i: rng.randint(0, 5000)),
    ("balance_cents", "trait", lambda rng, i: rng.randint(-50_000, 50_000)),
    ("ltv", "trait", lambda rng, i: round(rng.uniform(0, 10_000), 2)),
    ("churn_score", "trait", lambda rng, i: round(rng.random(), 6)),
    ("tiny_ratio", "trait", lambda rng, i: rng.choice((1e-12, 2.5e-8, 0.0))),
    ("big_counter", "trait", lambda rng, i: 2**64 + rng.randrange(10**6)),
    ("account_number", "trait", lambda rng, i: 10**20 + i),
    ("very_negative", "trait", lambda rng, i: -(2**63) - 1 - i),
    ("is_vip", "trait", lambda rng, i: rng.random() < 0.2),
    ("email_verified", "trait", lambda rng, i: rng.random() < 0.8),
    ("middle_name", "trait", lambda rng, i: None),
    ("deleted_at", "trait", lambda rng, i: None),
    (
        "address",
        "trait",
        lambda rng, i: {
            "street": f"{rng.randint(1, 200)} rue de l'Église",
            "city": rng.choice(CITIES),
            "geo": {"lat": round(rng.uniform(-90, 90), 5), "lon": round(rng.uniform(-180, 180), 5)},
        },
    ),
    (
        "preferences",
        "trait",
        lambda rng, i: {"theme": rng.choice(("dark", "light")), "notifications": {"email": True, "sms": False}},
    ),
    ("tags", "trait", lambda rng, i: rng.sample(["beta", "vip", "ñandú", "early-adopter", "🏷️"], 3)),
    ("scores", "trait", lambda rng, i: [rng.randint(0, 100), round(rng.random(), 3), 2**70]),
    ("mixed_list", "trait", lambda rng, i: [1, "two", 3.5, None, True, {"k": "v"}, [1, [2]]]),
    ("empty_list", "trait", lambda rng, i: []),
    ("empty_object", "trait", lambda rng, i: {}),
    ("last_seen_at", "trait", lambda rng, i: format_timestamp(_profile_time(rng, 0.5))),
    ("Ünïcode Kéy 🎉", "trait", lambda rng, i: "value"),
    ("audience_high_value", "audience", lambda rng, i: rng.random() < 0.3),
    ("audience_churn_risk", "audience", lambda rng, i: rng.random() < 0.3),
    ("audience_newsletter_engaged", "audience", lambda rng, i: rng.random() < 0.5),
    ("ct_orders_90d", "computed_trait", lambda rng, i: rng.randint(0, 40)),
    ("ct_total_spend", "computed_trait", lambda rng, i: round(rng.uniform(0, 5000), 2)),
    ("ct_last_product_viewed", "computed_trait", lambda rng, i: rng.choice(("Sneaker", "Théière", "傘"))),
    ("ct_favorite_categories", "computed_trait", lambda rng, i: rng.sample(["shoes", "tea", "books", "toys"], 2)),
)

ACCOUNT_TRAITS: tuple[tuple[str, str, TraitMaker], ...] = (
    ("name", "trait", lambda rng, i: f"{rng.choice(LAST_NAMES)} & Co #{i}"),
    ("industry", "trait", lambda rng, i: rng.choice(("retail", "santé", "fintech", "製造"))),
    ("employees", "trait", lambda rng, i: rng.randint(1, 100_000)),
    ("plan", "trait", lambda rng, i: rng.choice(PLANS)),
    ("mrr", "trait", lambda rng, i: round(rng.uniform(0, 100_000), 2)),
    ("arr_micros", "trait", lambda rng, i: 2**64 + rng.randrange(10**9)),
    ("is_enterprise", "trait", lambda rng, i: rng.random() < 0.3),
    ("churned_at", "trait", lambda rng, i: None),
    ("address", "trait", lambda rng, i: {"city": rng.choice(CITIES), "country": rng.choice(("FR", "JP", "US"))}),
    ("tags", "trait", lambda rng, i: rng.sample(["partner", "ñ", "key-account", "🏢"], 2)),
    ("ct_active_users", "computed_trait", lambda rng, i: rng.randint(0, 500)),
    ("audience_enterprise_accounts", "audience", lambda rng, i: rng.random() < 0.3),
)

HEAVY_TRAIT_COUNT = 300


def _heavy_trait(rng: random.Random, k: int) -> Any:
    kind = k % 6
    if kind == 0:
        return f"value {k} ✓"
    if kind == 1:
        return rng.randint(-(10**6), 10**6)
    if kind == 2:
        return round(rng.random() * 1000, 4)
    if kind == 3:
        return rng.random() < 0.5
    if kind == 4:
        return None
    return {"n": k, "items": [k, str(k)]}


def _build_traits(
    rng: random.Random, index: int, makers: tuple, count: int, sources: list[str], extra: int
) -> tuple[dict[str, Any], dict[str, TraitDetail]]:
    chosen = rng.sample(makers, count)
    pairs = [(name, trait_class, maker(rng, index)) for name, trait_class, maker in chosen]
    pairs += [(f"attr_{k:03d}", "trait", _heavy_trait(rng, k)) for k in range(extra)]
    pairs.sort(key=lambda pair: pair[0])
    traits = {name: value for name, _, value in pairs}
    details = {
        name: TraitDetail(trait_class, rng.choice(sources), format_timestamp(_profile_time(rng, 1)))
        for name, trait_class, _ in pairs
    }
    return traits, details


# --- profiles -----------------------------------------------------------------------------------


def _external_id(
    rng: random.Random, value: str, id_type: str, collection: str, sources: list[str]
) -> dict:
    external_id = {
        "id": value,
        "type": id_type,
        "source_id": rng.choice(sources),
        "collection": collection,
        "created_at": format_timestamp(_profile_time(rng, 2)),
        "encoding": "none",
    }
    if rng.random() < 0.7:
        external_id["first_message_id"] = _uuid(rng)
    return external_id


def is_heavy_user(index: int) -> bool:
    return index % HEAVY_USER_PERIOD == HEAVY_USER_OFFSET


def _user_id(index: int) -> str:
    if index % 5 == 2:
        pattern = SPECIAL_USER_ID_PATTERNS[(index // 5) % len(SPECIAL_USER_ID_PATTERNS)]
        return pattern.format(i=index)
    return f"user-{index:05d}"


def _email(index: int) -> str:
    if index % 13 == 6:
        return f"zoë.{index}@example.com"
    if index % 4 == 1:
        return f"first.last+promo{index}@example.com"
    return f"first.last{index}@example.com"


def _build_user(seed: int, index: int, account_count: int, sources: list[str]) -> UserProfile:
    rng = random.Random(stable_hash(seed, "user", index))
    heavy = is_heavy_user(index)

    def user_id(value: str, id_type: str) -> dict:
        return _external_id(rng, value, id_type, "users", sources)

    external_ids = [user_id(_user_id(index), "user_id"), user_id(_email(index), "email")]
    anonymous_ids = [user_id(_uuid(rng), "anonymous_id") for _ in range(rng.randint(1, 3))]
    external_ids += anonymous_ids
    if rng.random() < 0.4:
        external_ids.append(user_id(f"+1555{rng.randrange(10**7):07d}", "phone"))
    if heavy:
        external_ids += [user_id(_uuid(rng), "anonymous_id") for _ in range(150)]
        external_ids += [user_id(_base62(rng, 20), "cross_domain_id") for _ in range(110)]

    # Which id a connector config lists for this profile: mostly user_id, 20% email, 10% anon.
    lookup_kind = index % 10
    if lookup_kind in (1, 6):
        lookup = external_ids[1]
    elif lookup_kind == 3:
        lookup = anonymous_ids[0]
    else:
        lookup = external_ids[0]

    trait_count = len(USER_TRAITS) if heavy else rng.randint(5, 40)
    traits, details = _build_traits(
        rng, index, USER_TRAITS, trait_count, sources, HEAVY_TRAIT_COUNT if heavy else 0
    )

    segment_id = "use_" + _base62(rng, 27)
    created_ms = _profile_time(rng, 3)
    updated_ms = PROFILE_EPOCH_MS - rng.randrange(1, PROFILE_EPOCH_MS - created_ms)
    flat_metadata = {
        "segment_id": segment_id,
        "created_at": format_timestamp(created_ms),
        "updated_at": format_timestamp(updated_ms),
    }
    if index % 3 == 2:  # a third of the profiles answer the shape Segment's docs show
        metadata = {
            "metadata": {
                **flat_metadata,
                "expires_at": format_timestamp(updated_ms + 2 * YEAR_MS),
                "first_message_id": _uuid(rng),
            }
        }
    else:
        metadata = flat_metadata

    if index % 10 == 8:
        events_per_hour = 0.0  # a profile without events: the API answers "data": null
    elif heavy:
        events_per_hour = rng.uniform(*HEAVY_EVENTS_PER_HOUR)
    else:
        events_per_hour = rng.uniform(*TYPICAL_EVENTS_PER_HOUR)
    # Drawn last, so that only a user's links depend on how many accounts the space has.
    account_indexes = sorted(rng.sample(range(account_count), min(account_count, rng.randint(0, 3))))

    return UserProfile(
        index=index,
        lookup_id=f"{lookup['type']}:{lookup['id']}",
        segment_id=segment_id,
        external_ids=external_ids,
        traits=traits,
        trait_details=details,
        metadata=metadata,
        account_indexes=account_indexes,
        events_per_hour=events_per_hour,
        links_have_cursor=index % 4 != 3,
    )


def _group_id(index: int) -> str:
    if index % 4 in (1, 2):
        return SPECIAL_GROUP_ID_PATTERNS[index % 4 - 1].format(i=index)
    return f"acct-{index:04d}"


def _build_account(seed: int, index: int, user_indexes: list[int], sources: list[str]) -> AccountProfile:
    rng = random.Random(stable_hash(seed, "account", index))
    group_ids = [_group_id(index)] + [f"legacy-{index}-{k}" for k in range(rng.randint(0, 2))]
    external_ids = [_external_id(rng, value, "group_id", "accounts", sources) for value in group_ids]
    traits, details = _build_traits(rng, index, ACCOUNT_TRAITS, rng.randint(5, len(ACCOUNT_TRAITS)), sources, 0)
    return AccountProfile(
        index=index,
        lookup_id=f"group_id:{group_ids[0]}",
        external_ids=external_ids,
        traits=traits,
        trait_details=details,
        user_indexes=user_indexes,
    )


# --- events -------------------------------------------------------------------------------------

TRACK_EVENT_NAMES = (
    "Product Viewed",
    "Product Added",
    "Order Completed",
    "Signed In",
    "Checkout Started",
    "Coupon Applied",
    "Vidéo regardée",
    "注文完了",
)
PAGE_NAMES = ("Home", "Pricing", "Docs", "Checkout")
SCREEN_NAMES = ("Feed", "Settings", "Profile")
LIBRARIES = (("analytics.js", "4.1.0"), ("analytics-ios", "4.1.5"), ("analytics-python", "2.3.2"))


def _poisson(rate: float, uniform: float) -> int:
    """Inverse CDF of a Poisson distribution: the event count of a day from one uniform draw."""
    probability = cumulative = math.exp(-rate)
    count = 0
    while uniform > cumulative and probability > 0:
        count += 1
        probability *= rate / count
        cumulative += probability
    return count


class _Draws:
    """Many small random choices sliced out of one big random integer: about twice as fast as one
    RNG call per choice, which matters for the hundreds of thousands of events of a big space."""

    def __init__(self, rng: random.Random):
        self._bits = rng.getrandbits(192)

    def below(self, bound: int) -> int:
        self._bits, value = divmod(self._bits, bound)
        return value

    def pick(self, options: tuple | list) -> Any:
        return options[self.below(len(options))]


def _make_event(rng: random.Random, user: UserProfile, timestamp_ms: int, sources: list[str]) -> ServedEvent:
    draws = _Draws(rng)
    roll = draws.below(100)
    name = None
    if roll < 60:
        name = draws.pick(TRACK_EVENT_NAMES)
        body: dict[str, Any] = {"type": "track", "event": name}
        properties = {
            "sku": f"SKU-{draws.below(10**5):05d}",
            "price": (100 + draws.below(49_900)) / 100,
            "quantity": 1 + draws.below(5),
            "coupon": draws.pick((None, "ÉTÉ-2026", "🎁")),
            "order_total_micros": 2**63 + draws.below(10**6),
        }
    elif roll < 75:
        name = draws.pick(PAGE_NAMES)
        body = {"type": "page", "name": name}
        properties = {"path": f"/{name.lower()}", "title": f"{name} · Exämple", "referrer": None}
    elif roll < 85:
        name = draws.pick(SCREEN_NAMES)
        body = {"type": "screen", "name": name}
        properties = {"screen_depth": 1 + draws.below(4)}
    elif roll < 95:
        body = {"type": "identify"}
        properties = {}
        body["traits"] = {"plan": draws.pick(PLANS), "logins": draws.below(5001), "city": draws.pick(CITIES)}
    else:
        body = {"type": "group"}
        properties = {}
    body["properties"] = properties
    library_name, library_version = draws.pick(LIBRARIES)
    ip = draws.below(2**24)
    body["context"] = {
        "ip": f"10.{ip >> 16}.{(ip >> 8) & 255}.{ip & 255}",
        "library": {"name": library_name, "version": library_version},
        "locale": draws.pick(("en-US", "fr-FR", "ja-JP")),
    }
    body["timestamp"] = format_timestamp(timestamp_ms)
    # About 10% of real events carry the id as `message_id` only (the seed spec says `messageId`).
    body["message_id" if draws.below(10) == 0 else "messageId"] = _uuid(rng)
    body["source_id"] = draws.pick(sources)
    if draws.below(10) < 3:  # fields the seed spec does not list but real responses carry
        user_id = user.external_ids[0]
        body["external_ids"] = [{"id": user_id["id"], "type": "user_id", "collection": "users", "encoding": "none"}]
        body["related"] = {"users": None}
    return ServedEvent(timestamp_ms, name, to_json_bytes(body))


class EventWindow(NamedTuple):
    """A profile's events in [start_ms, end_ms), oldest first, with their timestamps for bisecting."""

    timestamps: list[int]
    events: list[ServedEvent]


def _linked_id(external_id: dict) -> dict:
    """An external id as a link shows it: without first_message_id."""
    return {key: value for key, value in external_id.items() if key != "first_message_id"}


# --- the dataset --------------------------------------------------------------------------------


class Dataset:
    """The profiles of one space, their identity index, and their (lazily generated) events."""

    def __init__(self, users: int, accounts: int, seed: int, space_id: str, now_ms: int):
        self.seed = seed
        self.space_id = space_id
        self.now_ms = now_ms
        source_rng = random.Random(stable_hash(seed, "sources"))
        self.sources = ["src_" + _base62(source_rng, 22) for _ in range(4)]
        self.users = [_build_user(seed, index, accounts, self.sources) for index in range(users)]
        members: list[list[int]] = [[] for _ in range(accounts)]
        for user in self.users:
            for account_index in user.account_indexes:
                members[account_index].append(user.index)
        self.accounts = [_build_account(seed, index, members[index], self.sources) for index in range(accounts)]
        self._profiles_by_id: dict[str, dict[str, UserProfile | AccountProfile]] = {
            "users": {profile_id: user for user in self.users for profile_id in user.ids},
            "accounts": {profile_id: account for account in self.accounts for profile_id in account.ids},
        }
        self._event_cache: OrderedDict[tuple[int, int, int], EventWindow] = OrderedDict()
        self._event_cache_size = 0
        self._event_cache_lock = threading.Lock()

    def find(self, collection: str, external_id: str) -> UserProfile | AccountProfile | None:
        """Identity resolution: any `type:value` id of a profile finds it."""
        return self._profiles_by_id[collection].get(external_id)

    # Links ---------------------------------------------------------------------------------------

    def user_links(self, user: UserProfile) -> list[dict]:
        """A user's accounts, each named by its group ids."""
        return [
            {"to_collection": "accounts", "external_ids": [_linked_id(group_id) for group_id in self.accounts[index].external_ids]}
            for index in user.account_indexes
        ]

    def account_links(self, account: AccountProfile) -> list[dict]:
        """An account's users, each named by its user_id."""
        return [
            {"to_collection": "users", "external_ids": [_linked_id(self.users[index].external_ids[0])]}
            for index in account.user_indexes
        ]

    # Events --------------------------------------------------------------------------------------

    def events_between(self, user: UserProfile, start_ms: int, end_ms: int) -> EventWindow:
        """The user's events with start_ms <= timestamp < end_ms, oldest first (cached)."""
        key = (user.index, start_ms, end_ms)
        with self._event_cache_lock:
            window = self._event_cache.get(key)
            if window is not None:
                self._event_cache.move_to_end(key)
                return window
        window = self.generate_events(user, start_ms, end_ms)
        with self._event_cache_lock:
            if key not in self._event_cache:
                self._event_cache[key] = window
                self._event_cache_size += len(window.events)
                while self._event_cache_size > EVENT_CACHE_MAX_EVENTS and len(self._event_cache) > 1:
                    _, evicted = self._event_cache.popitem(last=False)
                    self._event_cache_size -= len(evicted.events)
        return window

    def retention_window(self, now_ms: int) -> tuple[int, int]:
        """The events the API still holds at `now_ms`: now - 14 days <= timestamp < now."""
        return now_ms - RETENTION_MS, now_ms

    def generate_events(self, user: UserProfile, start_ms: int, end_ms: int) -> EventWindow:
        """events_between without the cache."""
        events: list[ServedEvent] = []
        if user.events_per_hour > 0 and end_ms > start_ms:
            for day in range(start_ms // DAY_MS, (end_ms - 1) // DAY_MS + 1):
                events += [
                    event for event in self._day_events(user, day) if start_ms <= event.timestamp_ms < end_ms
                ]
        return EventWindow([event.timestamp_ms for event in events], events)

    def _day_events(self, user: UserProfile, day: int) -> list[ServedEvent]:
        """The events of one UTC day: a pure function of (seed, user, day), oldest first."""
        day_seed = stable_hash(self.seed, "events", user.index, day)
        count = _poisson(user.events_per_hour * 24, day_seed / 2**64)
        if not count:
            return []
        rng = random.Random(day_seed)
        offsets = sorted(rng.sample(range(DAY_MS), count))
        return [_make_event(rng, user, day * DAY_MS + offset, self.sources) for offset in offsets]


def build_dataset(users: int, accounts: int, seed: int = 42, space_id: str = "spa_demo", now: str | int | None = None) -> Dataset:
    """The dataset of a space; `now` (ISO 8601 or epoch ms, default: the current second) is its clock."""
    return Dataset(users, accounts, seed, space_id, resolve_now(now))


def resolve_now(now: str | int | None) -> int:
    """Epoch milliseconds of a clock setting, floored to the second."""
    if now is None:
        now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    elif isinstance(now, int):
        now_ms = now
    else:
        now_ms = parse_timestamp(now)
    return now_ms - now_ms % 1000


def ground_truth_chunks(dataset: Dataset, now_ms: int | None = None) -> Iterator[bytes]:
    """Everything the emulator serves at `now_ms` (default: the dataset's clock), every page
    joined, as JSON pieces: a space of 10,000 users is hundreds of megabytes, never held whole.

    Events are exactly the served bytes, newest first; metadata is the body served (flat or
    wrapped)."""
    now_ms = dataset.now_ms if now_ms is None else now_ms
    start_ms, end_ms = dataset.retention_window(now_ms)
    header = {"space_id": dataset.space_id, "now": format_timestamp(now_ms), "seed": dataset.seed}
    yield to_json_bytes(header)[:-1] + b',"users":['
    for user in dataset.users:
        profile = {
            "lookup_id": user.lookup_id,
            "ids": user.ids,
            "segment_id": user.segment_id,
            "traits": user.traits,
            "external_ids": user.external_ids,
            "metadata": user.metadata,
            "links": dataset.user_links(user),
        }
        events = dataset.generate_events(user, start_ms, end_ms).events  # uncached: read once
        separator = b"," if user.index else b""
        yield separator + to_json_bytes(profile)[:-1] + b',"events":[' + b",".join(event.json for event in reversed(events)) + b"]}"
    accounts = [
        {
            "lookup_id": account.lookup_id,
            "ids": account.ids,
            "traits": account.traits,
            "external_ids": account.external_ids,
            "links": dataset.account_links(account),
        }
        for account in dataset.accounts
    ]
    yield b'],"accounts":' + to_json_bytes(accounts) + b"}"


def ground_truth(dataset: Dataset, now_ms: int | None = None) -> dict:
    """The ground truth as Python values (see ground_truth_chunks)."""
    return json.loads(b"".join(ground_truth_chunks(dataset, now_ms)))
