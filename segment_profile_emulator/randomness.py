"""Seeded randomness that every process draws alike: the stable hash that seeds each RNG, and the
ids and instants profiles and events are made of."""

from __future__ import annotations

import hashlib
import random
from typing import Any

from .formats import YEAR_MS

# Profile timestamps (created_at, updated_at, ...) lie before this instant so that they do not
# depend on the clock: only events move with it.
PROFILE_EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of ints and strings that, unlike hash(), is the same in every process."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID from the RNG, formatted without the uuid module's overhead (events need
    hundreds of thousands)."""
    digits = f"{rng.getrandbits(128):032x}"
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{'89ab'[int(digits[16], 16) & 3]}{digits[17:20]}-{digits[20:]}"


def random_base62(rng: random.Random, length: int) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(rng.choice(alphabet) for _ in range(length))


def profile_time(rng: random.Random, years_back: float) -> int:
    """A millisecond instant up to `years_back` years before the profile epoch."""
    return PROFILE_EPOCH_MS - rng.randrange(1, int(years_back * YEAR_MS))
