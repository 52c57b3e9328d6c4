"""The ground truth: everything the emulator serves at one clock, as a test or a benchmark checks
a connector's output against it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterator

from .formats import format_timestamp, to_json_bytes
from .profiles import metadata_moved_by

if TYPE_CHECKING:
    from .dataset import Dataset


def ground_truth_chunks(dataset: Dataset, now_ms: int | None = None) -> Iterator[bytes]:
    """Everything the emulator serves at `now_ms` (default: the dataset's clock), every page
    joined, as JSON pieces: a space of 10,000 users is hundreds of megabytes, never held whole.

    Events are exactly the served bytes of the events visible at `now_ms` (late and future ones
    included once they have arrived), newest first; metadata is the body served (flat or
    wrapped), moved by the newest event that arrived by `now_ms`; computed traits are those of
    the computed_traits_epoch in force. Messages delivered before `now_ms` (messages.py) are in
    all of it: their events, the traits and anonymous ids identify messages set, the links group
    messages made (on both sides), and the metadata they moved. Trait values are what a client must deliver: a lone surrogate (the
    lone_surrogate_trait option's "\\ud83d rocket") is reported as U+FFFD ("\\ufffd rocket"), since a
    strict UTF-8 client cannot hold it."""
    now_ms = dataset.now_ms if now_ms is None else now_ms
    header = {"space_id": dataset.space_id, "now": format_timestamp(now_ms), "seed": dataset.seed}
    yield to_json_bytes(header)[:-1] + b',"users":['
    for user in dataset.users:
        window = dataset.visible_events(user, now_ms, remember=False)  # read once: not cached
        external_ids = dataset.external_ids_of(user, now_ms)
        profile = {
            "lookup_id": user.lookup_id,
            "ids": user.ids if external_ids is user.external_ids else [f"{item['type']}:{item['id']}" for item in external_ids],
            "segment_id": user.segment_id,
            **served_traits(dataset, user, now_ms),
            "external_ids": external_ids,
            "metadata": metadata_moved_by(user.metadata, window.newest_arrival),
            "links": dataset.user_links(user, now_ms),
        }
        events = window.events
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
            **served_traits(dataset, account, now_ms),
            "external_ids": account.external_ids,
            "links": dataset.account_links(account, now_ms=now_ms),
        }
        for account in dataset.accounts
    ]
    yield b'],"accounts":' + to_json_bytes(accounts) + b"}"


def served_traits(dataset: Dataset, profile: Any, now_ms: int | None = None) -> dict:
    """A profile's traits as served at the ground truth's clock `now_ms` (computed traits in the
    epoch in force, with what identify messages set), and what `verbose=true` and `class=` answer
    for each: its class, source and last update."""
    traits, details = dataset.traits_of(profile, now_ms)
    return {
        "traits": traits,
        "trait_details": {
            name: {"class": detail.trait_class, "source_id": detail.source_id, "updated_at": detail.updated_at}
            for name, detail in details.items()
        },
    }


def ground_truth(dataset: Dataset, now_ms: int | None = None) -> dict:
    """The ground truth as Python values (see ground_truth_chunks)."""
    return json.loads(b"".join(ground_truth_chunks(dataset, now_ms)))
