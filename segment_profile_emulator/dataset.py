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
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import random
import re
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
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
# Built user profiles kept: every user of the benchmark's largest space (10,000 users), about
# 10 KiB each; larger spaces rebuild evicted profiles on demand (~0.25 ms each).
PROFILE_CACHE_SIZE = 10_000

# The lone-surrogate trait (DatasetOptions.lone_surrogate_trait): a JavaScript string cut in the
# middle of an emoji, the high half of U+1F680 (\ud83d\ude80), which JSON.stringify writes as a
# \ud83d escape. Every 7th user (3, 10, 17, ...) carries it.
LONE_SURROGATE_TRAIT = "nickname"
LONE_SURROGATE_VALUE = "\ud83d rocket"
LONE_SURROGATE_USER_PERIOD = 7
LONE_SURROGATE_USER_OFFSET = 3

# Late events (DatasetOptions.late_event_hours): the k-th lateness goes to every 5th user from
# LATE_EVENT_USER_OFFSETS[k % 4]; offset 3 is never used so that the users without events
# (index % 10 == 8) keep none.
LATE_EVENT_USER_PERIOD = 5
LATE_EVENT_USER_OFFSETS = (1, 2, 4, 0)

# Future-stamped events (DatasetOptions.future_events): users 4, 14, 24, ... carry one event from a
# device whose clock is a year ahead; it arrived an hour before the emulator's starting clock.
FUTURE_EVENT_USER_PERIOD = 10
FUTURE_EVENT_USER_OFFSET = 4
FUTURE_EVENT_CLOCK_AHEAD_MS = YEAR_MS
FUTURE_EVENT_ARRIVAL_BEFORE_START_MS = HOUR_MS

# Fixed event counts (events_per_user, heavy_user_events) are generated in blocks of this many
# consecutive events from one RNG: seeding an RNG costs half as much as making an event.
EVENT_BLOCK_SIZE = 64


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of ints and strings that, unlike hash(), is the same in every process."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


_SURROGATE = re.compile("[\ud800-\udfff]")


def to_json_bytes(value: Any, lone_surrogates: str = "escape") -> bytes:
    """Compact UTF-8 JSON, as the API sends it.

    A lone surrogate (a Python str can hold one, UTF-8 cannot) is written as its six-character
    \\uXXXX escape, as JavaScript's JSON.stringify writes it: the body is valid UTF-8 that
    Python's json accepts and strict parsers (orjson) reject. With lone_surrogates="replace" it
    becomes U+FFFD instead, as a client that cannot hold lone surrogates delivers it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:  # only text with a lone surrogate pays for the substitution
        if lone_surrogates == "replace":
            return _SURROGATE.sub("\ufffd", text).encode()
        return _SURROGATE.sub(lambda match: "\\u%04x" % ord(match.group()), text).encode()


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


SEGMENT_ID_TYPE = "segment_id"


@dataclass(slots=True)
class Profile:
    """What users and accounts share: their ids, their segment id and their traits."""

    index: int
    lookup_id: str
    segment_id: str  # also finds the profile, as `segment_id:<id>` or bare
    external_ids: list[dict]
    traits: dict[str, Any]  # keys in lexicographic (code point) order
    trait_details: dict[str, TraitDetail]
    trait_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.trait_names = list(self.traits)

    @property
    def ids(self) -> list[str]:
        return [f"{external_id['type']}:{external_id['id']}" for external_id in self.external_ids]

    def answers_to(self, profile_id: str) -> bool:
        """Whether `type:value` names this profile: one of its external ids, or its segment id."""
        if profile_id == f"{SEGMENT_ID_TYPE}:{self.segment_id}":
            return True
        id_type, _, value = profile_id.partition(":")
        return any(external_id["id"] == value and external_id["type"] == id_type for external_id in self.external_ids)


@dataclass(slots=True)
class UserProfile(Profile):
    metadata: dict  # the body served: flat, or wrapped in {"metadata": ...}
    account_indexes: list[int]
    events_per_hour: float
    links_have_cursor: bool


@dataclass(slots=True)
class AccountProfile(Profile):
    user_indexes: list[int]


# --- options ------------------------------------------------------------------------------------


def parse_late_event_hours(text: str) -> tuple[float, ...]:
    """`6,23,72` -> (6.0, 23.0, 72.0); "" -> (). Raises ValueError on anything else."""
    if not text.strip():
        return ()
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"late_events must be hours separated by commas, such as 6,23,72, not {text!r}") from None


@dataclass(frozen=True)
class DatasetOptions:
    """The data knobs; their defaults give the plain space.

    - lone_surrogate_trait: every 7th user (3, 10, 17, ...) has a trait "nickname" whose JSON text
      on the wire is "\\ud83d rocket", a lone UTF-16 surrogate escape (what JavaScript clients
      produce): Python's json reads it, orjson rejects the whole body. The ground truth reports
      the value as a client that cannot hold lone surrogates must deliver it, U+FFFD in its place:
      "\\ufffd rocket".
    - events_per_user: every user has exactly this many events in any 14-day retention window,
      evenly spaced (RETENTION_MS / N apart, from a per-user phase), instead of the natural 0..3,000.
    - heavy_user_events: user 0 has exactly this many events in the window (its window is cached
      apart from the others, so paging through 100,000 events generates them once).
    - late_event_hours: for each lateness L (hours, 0 < L < 336), every 5th user (from an offset
      per L) has one extra event per hour: stamped inside that hour, it only arrives, and shows in
      answers, L hours later. At any clock the events of the last L hours are still in transit.
    - future_events: users 4, 14, 24, ... have one event stamped 365 days after its arrival (a
      device clock a year ahead), arrived an hour before the dataset's starting clock: newest first
      it is on top, and start/end/sort treat it by its timestamp like any other.

    Late, future and fixed-count events are ordinary events otherwise (same shape, unique
    message ids), kept for 14 days after their timestamp, and listed by the ground truth exactly
    when they are visible.
    """

    lone_surrogate_trait: bool = False
    events_per_user: int | None = None
    heavy_user_events: int | None = None
    late_event_hours: tuple[float, ...] = ()
    future_events: bool = False

    def __post_init__(self) -> None:
        for name in ("events_per_user", "heavy_user_events"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a whole number of events, 0 or more")
        retention_hours = RETENTION_MS // HOUR_MS
        for hours in self.late_event_hours:
            if not 0 < hours < retention_hours:
                # a lateness of 14 days or more arrives after its event has left the window
                raise ValueError(f"late_events hours must be above 0 and below {retention_hours} (the 14-day retention)")
        if len(set(self.late_event_hours)) != len(self.late_event_hours):
            raise ValueError("late_events must not repeat an hour count")
        for name in ("lone_surrogate_trait", "future_events"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")

    def fixed_event_count(self, user_index: int) -> int | None:
        """How many events the user has in any retention window, or None for the natural count."""
        if user_index == 0 and self.heavy_user_events is not None:
            return self.heavy_user_events
        return self.events_per_user

    def late_event_delays_ms(self, user_index: int) -> list[int]:
        """The latenesses, in milliseconds, of the user's late events."""
        return [
            round(hours * HOUR_MS)
            for position, hours in enumerate(self.late_event_hours)
            if user_index % LATE_EVENT_USER_PERIOD == LATE_EVENT_USER_OFFSETS[position % len(LATE_EVENT_USER_OFFSETS)]
        ]

    def has_future_event(self, user_index: int) -> bool:
        return self.future_events and user_index % FUTURE_EVENT_USER_PERIOD == FUTURE_EVENT_USER_OFFSET

    def has_lone_surrogate_trait(self, user_index: int) -> bool:
        return self.lone_surrogate_trait and user_index % LONE_SURROGATE_USER_PERIOD == LONE_SURROGATE_USER_OFFSET


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


def _build_user(seed: int, index: int, account_count: int, sources: list[str], options: DatasetOptions) -> UserProfile:
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
    if options.has_lone_surrogate_trait(index):
        # From an RNG of its own: the user's other data is the same with or without the option.
        extra_rng = random.Random(stable_hash(seed, "lone surrogate trait", index))
        details[LONE_SURROGATE_TRAIT] = TraitDetail(
            "trait", extra_rng.choice(sources), format_timestamp(_profile_time(extra_rng, 1))
        )
        traits = dict(sorted({**traits, LONE_SURROGATE_TRAIT: LONE_SURROGATE_VALUE}.items()))
        details = {name: details[name] for name in traits}

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
    # From an RNG of its own, so that accounts kept their data when they got a segment id.
    segment_id = "acc_" + _base62(random.Random(stable_hash(seed, "account segment id", index)), 27)
    return AccountProfile(
        index=index,
        lookup_id=f"group_id:{group_ids[0]}",
        segment_id=segment_id,
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
    """The events a profile shows at one clock, oldest first, with their timestamps for bisecting."""

    timestamps: list[int]
    events: list[ServedEvent]


def _linked_id(external_id: dict) -> dict:
    """An external id as a link shows it: without first_message_id."""
    return {key: value for key, value in external_id.items() if key != "first_message_id"}


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


# --- the dataset --------------------------------------------------------------------------------


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
        self.sources = ["src_" + _base62(source_rng, 22) for _ in range(4)]
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

        self.accounts = [_build_account(seed, index, members[index], self.sources) for index in range(accounts)]
        self._accounts_by_id = {
            profile_id: account
            for account in self.accounts
            for profile_id in (*account.ids, f"{SEGMENT_ID_TYPE}:{account.segment_id}")
        }
        self._event_cache: OrderedDict[tuple[int, int], EventWindow] = OrderedDict()
        self._event_cache_size = 0
        self._event_cache_lock = threading.Lock()
        # The windows of a heavy_user_events user: kept apart from the cache of the others, which
        # they would flush, for the last two clocks (an events cursor keeps the clock it began at).
        self._heavy_windows: OrderedDict[tuple[int, int], EventWindow] = OrderedDict()
        self._heavy_generation_lock = threading.Lock()

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
        user = _build_user(self.seed, index, self.account_count, self.sources, self.options)
        with self._profile_cache_lock:
            self._profile_cache[index] = user
            while len(self._profile_cache) > PROFILE_CACHE_SIZE:
                self._profile_cache.popitem(last=False)
        return user

    def find(self, collection: str, external_id: str) -> UserProfile | AccountProfile | None:
        """Identity resolution: any `type:value` id of a profile finds it, and so does its segment
        id, as `segment_id:<id>` or bare (use_..., acc_...). Any other bare value finds nothing."""
        candidates = (external_id, f"{SEGMENT_ID_TYPE}:{external_id}")
        if collection == "accounts":
            return next((self._accounts_by_id[name] for name in candidates if name in self._accounts_by_id), None)
        for profile_id in candidates:
            for index in self._user_ids.owners(profile_id):
                user = self.user(index)
                if user.answers_to(profile_id):
                    return user
        return None

    # Links ---------------------------------------------------------------------------------------

    def user_links(self, user: UserProfile) -> list[dict]:
        """A user's accounts, each named by its group ids."""
        return [
            {"to_collection": "accounts", "external_ids": [_linked_id(group_id) for group_id in self.accounts[index].external_ids]}
            for index in user.account_indexes
        ]

    def account_links(self, account: AccountProfile, start: int = 0, stop: int | None = None) -> list[dict]:
        """An account's users from `start` to `stop`, each named by its user_id: only those are
        built (an account of a 100,000-user space has thousands)."""
        return [
            {"to_collection": "users", "external_ids": [_linked_id(self.user(index).external_ids[0])]}
            for index in account.user_indexes[start:stop]
        ]

    # Events --------------------------------------------------------------------------------------

    def visible_events(self, user: UserProfile, now_ms: int, remember: bool = True) -> EventWindow:
        """The user's events shown at clock `now_ms`, oldest first (cached unless `remember` is
        false): those that have arrived (arrival < now_ms; an ordinary event arrives at its
        timestamp) and are kept (timestamp >= now_ms - 14 days)."""
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
                window = self._heavy_windows.get(key) or self.generate_visible_events(user, now_ms)
                with self._event_cache_lock:
                    self._heavy_windows[key] = window
                    while len(self._heavy_windows) > 2:
                        self._heavy_windows.popitem(last=False)
            return window
        window = self.generate_visible_events(user, now_ms)
        if remember:
            with self._event_cache_lock:
                if key not in self._event_cache:
                    self._event_cache[key] = window
                    self._event_cache_size += len(window.events)
                    while self._event_cache_size > EVENT_CACHE_MAX_EVENTS and len(self._event_cache) > 1:
                        _, evicted = self._event_cache.popitem(last=False)
                        self._event_cache_size -= len(evicted.events)
        return window

    def generate_visible_events(self, user: UserProfile, now_ms: int) -> EventWindow:
        """visible_events without the cache."""
        start_ms = now_ms - RETENTION_MS
        fixed_count = self.options.fixed_event_count(user.index)
        if fixed_count is None:
            events = self._natural_events(user, start_ms, now_ms)
        else:
            events = self._fixed_count_events(user, fixed_count, start_ms, now_ms)
        extra = [
            event for delay_ms in self.options.late_event_delays_ms(user.index)
            for event in self._late_events(user, delay_ms, start_ms, now_ms)
        ]
        if self.options.has_future_event(user.index):
            extra += self._future_event(user, start_ms, now_ms)
        if extra:
            events = sorted(events + extra, key=lambda event: event.timestamp_ms)
        return EventWindow([event.timestamp_ms for event in events], events)

    def _natural_events(self, user: UserProfile, start_ms: int, end_ms: int) -> list[ServedEvent]:
        """The user's own events with start_ms <= timestamp < end_ms, oldest first."""
        events: list[ServedEvent] = []
        if user.events_per_hour > 0 and end_ms > start_ms:
            for day in range(start_ms // DAY_MS, (end_ms - 1) // DAY_MS + 1):
                events += [
                    event for event in self._day_events(user, day) if start_ms <= event.timestamp_ms < end_ms
                ]
        return events

    def _day_events(self, user: UserProfile, day: int) -> list[ServedEvent]:
        """The events of one UTC day: a pure function of (seed, user, day), oldest first."""
        day_seed = stable_hash(self.seed, "events", user.index, day)
        count = _poisson(user.events_per_hour * 24, day_seed / 2**64)
        if not count:
            return []
        rng = random.Random(day_seed)
        offsets = sorted(rng.sample(range(DAY_MS), count))
        return [_make_event(rng, user, day * DAY_MS + offset, self.sources) for offset in offsets]

    def _fixed_count_events(self, user: UserProfile, count: int, start_ms: int, end_ms: int) -> list[ServedEvent]:
        """Events evenly spaced so that any RETENTION_MS-long window holds exactly `count`: event
        j is at phase + floor(j * RETENTION_MS / count), so event j + count is RETENTION_MS after
        event j. Event j is a pure function of (seed, user, count, j // EVENT_BLOCK_SIZE)."""
        if count == 0 or end_ms <= start_ms:
            return []
        phase = stable_hash(self.seed, "event phase", user.index, count) % RETENTION_MS
        # start <= phase + floor(j R / c) < end  <=>  ceil((start - phase) c / R) <= j < ceil((end - phase) c / R)
        first = _ceil_div((start_ms - phase) * count, RETENTION_MS)
        stop = _ceil_div((end_ms - phase) * count, RETENTION_MS)
        events: list[ServedEvent] = []
        for block in range(first // EVENT_BLOCK_SIZE, (stop - 1) // EVENT_BLOCK_SIZE + 1):
            rng = random.Random(stable_hash(self.seed, "fixed-count events", user.index, count, block))
            # every event of the block before `first` is drawn too: each draw moves the RNG on
            for j in range(block * EVENT_BLOCK_SIZE, min(stop, (block + 1) * EVENT_BLOCK_SIZE)):
                event = _make_event(rng, user, phase + j * RETENTION_MS // count, self.sources)
                if j >= first:
                    events.append(event)
        return events

    def _late_events(self, user: UserProfile, delay_ms: int, start_ms: int, end_ms: int) -> list[ServedEvent]:
        """One event per hour, stamped inside that hour, arriving delay_ms after its timestamp:
        visible at clock end_ms are those stamped in [start_ms, end_ms - delay_ms). The events of a
        day are a pure function of (seed, user, delay, day)."""
        last_ms = end_ms - delay_ms  # exclusive: later ones are still in transit
        events: list[ServedEvent] = []
        for day in range(start_ms // DAY_MS, (last_ms - 1) // DAY_MS + 1):
            rng = random.Random(stable_hash(self.seed, "late events", user.index, delay_ms, day))
            for hour in range(24):
                timestamp_ms = day * DAY_MS + hour * HOUR_MS + rng.randrange(HOUR_MS)
                if timestamp_ms >= last_ms:
                    break  # the day's later hours are later still
                event = _make_event(rng, user, timestamp_ms, self.sources)
                if timestamp_ms >= start_ms:
                    events.append(event)
        return events

    def _future_event(self, user: UserProfile, start_ms: int, end_ms: int) -> list[ServedEvent]:
        """The event of a device whose clock is a year ahead, if it has arrived by end_ms and its
        timestamp is still within retention."""
        arrival_ms = self.now_ms - FUTURE_EVENT_ARRIVAL_BEFORE_START_MS
        timestamp_ms = arrival_ms + FUTURE_EVENT_CLOCK_AHEAD_MS
        if not (arrival_ms < end_ms and timestamp_ms >= start_ms):
            return []
        rng = random.Random(stable_hash(self.seed, "future event", user.index, arrival_ms))
        return [_make_event(rng, user, timestamp_ms, self.sources)]


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


def ground_truth_chunks(dataset: Dataset, now_ms: int | None = None) -> Iterator[bytes]:
    """Everything the emulator serves at `now_ms` (default: the dataset's clock), every page
    joined, as JSON pieces: a space of 10,000 users is hundreds of megabytes, never held whole.

    Events are exactly the served bytes of the events visible at `now_ms` (late and future ones
    included once they have arrived), newest first; metadata is the body served (flat or
    wrapped). Trait values are what a client must deliver: a lone surrogate (the
    lone_surrogate_trait option's "\\ud83d rocket") is reported as U+FFFD ("\\ufffd rocket"), since a
    strict UTF-8 client cannot hold it."""
    now_ms = dataset.now_ms if now_ms is None else now_ms
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
        events = dataset.visible_events(user, now_ms, remember=False).events  # read once: not cached
        separator = b"," if user.index else b""
        yield (
            separator
            + to_json_bytes(profile, lone_surrogates="replace")[:-1]
            + b',"events":['
            + b",".join(event.json for event in reversed(events))
            + b"]}"
        )
    accounts = [
        {
            "lookup_id": account.lookup_id,
            "ids": account.ids,
            "segment_id": account.segment_id,
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
