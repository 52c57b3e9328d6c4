"""The ground truth: everything the emulator serves at one clock, as a test or a benchmark checks
a connector's output against it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator

from .formats import format_timestamp, to_json_bytes

if TYPE_CHECKING:
    from .dataset import Dataset


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
            "trait_details": trait_details(user),
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
            "trait_details": trait_details(account),
            "external_ids": account.external_ids,
            "links": dataset.account_links(account),
        }
        for account in dataset.accounts
    ]
    yield b'],"accounts":' + to_json_bytes(accounts) + b"}"


def trait_details(profile: Any) -> dict:
    """What `verbose=true` and `class=` answer for each trait: its class, source and last update."""
    return {
        name: {"class": detail.trait_class, "source_id": detail.source_id, "updated_at": detail.updated_at}
        for name, detail in profile.trait_details.items()
    }


def ground_truth(dataset: Dataset, now_ms: int | None = None) -> dict:
    """The ground truth as Python values (see ground_truth_chunks)."""
    return json.loads(b"".join(ground_truth_chunks(dataset, now_ms)))
