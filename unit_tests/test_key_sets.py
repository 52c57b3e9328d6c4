"""The compact sets of profile keys the user_events state is made of (key_sets.py)."""

import base64
import json
import math

import numpy as np
import pytest

from source_segment_profile import key_sets

SEED = 17


def random_keys(count: int) -> np.ndarray:
    # A generator of its own per call: a test's keys depend on its count, not on the tests run before it.
    return key_sets.sorted_keys(np.random.default_rng([SEED, count]).integers(0, 2**64, size=count, dtype=np.uint64))


@pytest.mark.parametrize("count", [1, 2, 7, 8, 9, 255, 1000, key_sets.CHUNK_KEYS - 1, key_sets.CHUNK_KEYS, key_sets.CHUNK_KEYS + 9, 150_000])
def test_random_sets_come_back_exactly(count):
    keys = random_keys(count)

    assert np.array_equal(key_sets.decode(key_sets.encode(keys), len(keys)), keys)


@pytest.mark.parametrize(
    "keys",
    [[0], [2**64 - 1], [0, 2**64 - 1], list(range(1000)), [2**63, 2**63 + 1], list(range(2**64 - 300, 2**64))],
    ids=["zero", "largest", "both-ends", "dense-low", "adjacent-high", "dense-top"],
)
def test_extreme_and_dense_sets_come_back_exactly(keys):
    array = key_sets.sorted_keys(keys)

    assert np.array_equal(key_sets.decode(key_sets.encode(array), len(array)), array)


def test_the_empty_set_is_the_empty_text():
    assert key_sets.encode(key_sets.sorted_keys([])) == ""
    assert len(key_sets.decode("", 0)) == 0


@pytest.mark.parametrize("count", [10_000, 100_000])
def test_a_key_costs_within_about_a_bit_of_the_information_it_holds_plus_base85(count):
    keys = random_keys(count)
    text = key_sets.encode(keys)

    # log2(C(2**64, n)) / n ~ 64 - log2(n) + log2(e) bits a key; Elias-Fano adds at most ~1.6.
    floor_bits = 64 - math.log2(count) + math.log2(math.e)
    assert len(text) * 4 / 5 * 8 / count <= floor_bits + 1.6


def test_a_hundred_thousand_keys_take_under_8_bytes_of_text_each():
    # Issue 17: 8 MB at a million profiles, extrapolated linearly from 100,000.
    assert len(key_sets.encode(random_keys(100_000))) / 100_000 < 8


def test_the_text_needs_no_escaping_in_json():
    text = key_sets.encode(random_keys(5000))

    assert json.dumps(text) == f'"{text}"'
    assert text.isascii() and text.isprintable()


def test_the_text_is_base85_of_the_documented_layout():
    # Three keys: L = 64 - bit_length(3) = 62 low bits each, then the upper bit vector.
    keys = key_sets.sorted_keys([5, 2**62 + 1, 3 * 2**62])
    blob = base64.b85decode(key_sets.encode(keys))
    lows_size = math.ceil(3 * 62 / 8)
    lows = int.from_bytes(blob[:lows_size], "big") >> (lows_size * 8 - 3 * 62)
    mask = 2**62 - 1
    assert [(lows >> (62 * (2 - i))) & mask for i in range(3)] == [5, 1, 0]
    # High parts 0, 1, 3 -> bits 0, 1 + 1, 3 + 2 of the upper vector.
    upper = "".join(f"{byte:08b}" for byte in blob[lows_size:])
    assert [position for position, bit in enumerate(upper) if bit == "1"] == [0, 2, 5]


@pytest.mark.parametrize(
    "text, count",
    [
        ("not base85 \\", 1),
        (key_sets.encode(key_sets.sorted_keys([1, 2, 3])), 2),
        (key_sets.encode(key_sets.sorted_keys([1, 2, 3])), 4),
        (key_sets.encode(key_sets.sorted_keys([1, 2, 3]))[:5], 3),
        ("abc", 0),
    ],
    ids=["not-base85", "fewer-than-count", "more-than-count", "truncated", "keys-for-zero"],
)
def test_a_text_that_does_not_hold_its_count_of_keys_is_refused(text, count):
    with pytest.raises(key_sets.KeySetError):
        key_sets.decode(text, count)


def test_membership_of_many_keys_at_once():
    members = key_sets.sorted_keys([3, 10, 2**64 - 1])

    assert key_sets.contains(members, np.array([0, 3, 4, 10, 2**64 - 1], dtype=np.uint64)).tolist() == [False, True, False, True, True]
    assert key_sets.contains(members[:0], np.array([3], dtype=np.uint64)).tolist() == [False]
