"""Users and accounts: their ids (some that a client must percent-encode), segment ids, traits,
metadata and links, each a pure function of (seed, profile index)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .formats import YEAR_MS, format_timestamp, parse_timestamp
from .options import LONE_SURROGATE_TRAIT, LONE_SURROGATE_VALUE, DatasetOptions
from .randomness import PROFILE_EPOCH_MS, profile_time, random_base62, random_uuid, stable_hash
from .traits import ACCOUNT_TRAITS, HEAVY_TRAIT_COUNT, USER_TRAITS, TraitDetail, build_traits

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


def metadata_moved_by(metadata: dict, newest_arrival: tuple[int, str] | None) -> dict:
    """A user's metadata body once its newest message has reached the API, as in Segment's docs
    example: `last_message_id` is that message, `updated_at` the later of the profile's own and
    the message's arrival. Without a message the body stays as built."""
    if newest_arrival is None:
        return metadata
    arrival_ms, message_id = newest_arrival
    fields = metadata.get("metadata", metadata)
    moved = {
        **fields,
        "updated_at": format_timestamp(max(parse_timestamp(fields["updated_at"]), arrival_ms)),
        "last_message_id": message_id,
    }
    return {"metadata": moved} if "metadata" in metadata else moved


def _external_id(
    rng: random.Random, value: str, id_type: str, collection: str, sources: list[str]
) -> dict:
    external_id = {
        "id": value,
        "type": id_type,
        "source_id": rng.choice(sources),
        "collection": collection,
        "created_at": format_timestamp(profile_time(rng, 2)),
        "encoding": "none",
    }
    if rng.random() < 0.7:
        external_id["first_message_id"] = random_uuid(rng)
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


def build_user(seed: int, index: int, account_count: int, sources: list[str], options: DatasetOptions) -> UserProfile:
    rng = random.Random(stable_hash(seed, "user", index))
    heavy = is_heavy_user(index)

    def user_id(value: str, id_type: str) -> dict:
        return _external_id(rng, value, id_type, "users", sources)

    external_ids = [user_id(_user_id(index), "user_id"), user_id(_email(index), "email")]
    anonymous_ids = [user_id(random_uuid(rng), "anonymous_id") for _ in range(rng.randint(1, 3))]
    external_ids += anonymous_ids
    if rng.random() < 0.4:
        external_ids.append(user_id(f"+1555{rng.randrange(10**7):07d}", "phone"))
    if heavy:
        external_ids += [user_id(random_uuid(rng), "anonymous_id") for _ in range(150)]
        external_ids += [user_id(random_base62(rng, 20), "cross_domain_id") for _ in range(110)]

    # Which id a connector config lists for this profile: mostly user_id, 20% email, 10% anon.
    lookup_kind = index % 10
    if lookup_kind in (1, 6):
        lookup = external_ids[1]
    elif lookup_kind == 3:
        lookup = anonymous_ids[0]
    else:
        lookup = external_ids[0]

    trait_count = len(USER_TRAITS) if heavy else rng.randint(5, 40)
    traits, details = build_traits(
        rng, index, USER_TRAITS, trait_count, sources, HEAVY_TRAIT_COUNT if heavy else 0
    )

    segment_id = "use_" + random_base62(rng, 27)
    created_ms = profile_time(rng, 3)
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
                "first_message_id": random_uuid(rng),
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
            "trait", extra_rng.choice(sources), format_timestamp(profile_time(extra_rng, 1))
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


def build_account(seed: int, index: int, user_indexes: list[int], sources: list[str]) -> AccountProfile:
    rng = random.Random(stable_hash(seed, "account", index))
    group_ids = [_group_id(index)] + [f"legacy-{index}-{k}" for k in range(rng.randint(0, 2))]
    external_ids = [_external_id(rng, value, "group_id", "accounts", sources) for value in group_ids]
    traits, details = build_traits(rng, index, ACCOUNT_TRAITS, rng.randint(5, len(ACCOUNT_TRAITS)), sources, 0)
    # From an RNG of its own, so that accounts kept their data when they got a segment id.
    segment_id = "acc_" + random_base62(random.Random(stable_hash(seed, "account segment id", index)), 27)
    return AccountProfile(
        index=index,
        lookup_id=f"group_id:{group_ids[0]}",
        segment_id=segment_id,
        external_ids=external_ids,
        traits=traits,
        trait_details=details,
        user_indexes=user_indexes,
    )
