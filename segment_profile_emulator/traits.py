"""The traits of users and accounts: what each trait holds, and which a profile has."""

from __future__ import annotations

import random
from typing import Any, Callable, NamedTuple

from .formats import format_timestamp
from .randomness import profile_time, stable_hash


class TraitDetail(NamedTuple):
    """What `verbose=true` and `class=` reveal about a trait."""

    trait_class: str  # "trait", "audience" or "computed_trait"
    source_id: str
    updated_at: str


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
    ("last_seen_at", "trait", lambda rng, i: format_timestamp(profile_time(rng, 0.5))),
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


def build_traits(
    rng: random.Random, index: int, makers: tuple, count: int, sources: list[str], extra: int
) -> tuple[dict[str, Any], dict[str, TraitDetail]]:
    chosen = rng.sample(makers, count)
    pairs = [(name, trait_class, maker(rng, index)) for name, trait_class, maker in chosen]
    pairs += [(f"attr_{k:03d}", "trait", _heavy_trait(rng, k)) for k in range(extra)]
    pairs.sort(key=lambda pair: pair[0])
    traits = {name: value for name, _, value in pairs}
    details = {
        name: TraitDetail(trait_class, rng.choice(sources), format_timestamp(profile_time(rng, 1)))
        for name, trait_class, _ in pairs
    }
    return traits, details


# Computed traits are recomputed by Segment without any message reaching the profile.
COMPUTED_TRAIT_MAKERS: dict[str, TraitMaker] = {
    name: maker for name, trait_class, maker in (*USER_TRAITS, *ACCOUNT_TRAITS) if trait_class == "computed_trait"
}


class ComputedTraitsEpoch(NamedTuple):
    """Which recomputation of the computed traits is served (the computed_traits_epoch knob)."""

    epoch: int = 0
    changed_at: str | None = None  # when the knob last changed, None if never: traits as built

    def traits_of(self, seed: int, profile: Any) -> tuple[dict[str, Any], dict[str, TraitDetail]]:
        """A profile's traits and their details in this epoch: once it has changed, every computed
        trait holds the values of its epoch (epoch 0: the values as built, others drawn from an RNG
        seeded with the epoch) and was updated at the change."""
        if self.changed_at is None:
            return profile.traits, profile.trait_details
        computed = [name for name, detail in profile.trait_details.items() if detail.trait_class == "computed_trait"]
        if not computed:
            return profile.traits, profile.trait_details
        traits, details = dict(profile.traits), dict(profile.trait_details)
        rng = random.Random(stable_hash(seed, "computed traits", profile.segment_id, self.epoch))
        for name in computed:
            if self.epoch:
                traits[name] = COMPUTED_TRAIT_MAKERS[name](rng, profile.index)
            details[name] = details[name]._replace(updated_at=self.changed_at)
        return traits, details
