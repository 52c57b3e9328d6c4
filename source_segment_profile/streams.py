"""The seven Profile API streams: one base that reads profiles, then a few lines per resource.

Each leaf is an HttpStream that says what it requests (`path`, `request_params`), how a page
becomes records (`parse_response`) and where the next page is (`next_page_token`); the base's
engine calls exactly those, for every profile, on many threads at once (`read_profile`).

API reference: https://segment.com/docs/unify/profile-api/ (contract: openapi/segment-profile-api-openapi.yml).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, List, Mapping, MutableMapping, Optional

import requests
from airbyte_cdk.models import ConfiguredAirbyteStream, SyncMode
from airbyte_cdk.sources.streams.http import HttpStream

from source_segment_profile.api_client import PageRequest, ProfileApiClient
from source_segment_profile.config import MAX_PAGE_SIZE, ConnectorConfig, ids_segment_would_not_match, parse_timestamp
from source_segment_profile.errors import ProfileApiError, ProfileNotFound, profiles_not_found
from source_segment_profile.read_through_state import format_timestamp
from source_segment_profile.masking import mask_external_id
from source_segment_profile.pages import ApiPage, page_of
from source_segment_profile.pagination import PageGuard, cursor_token
from source_segment_profile.profile_changes import ProfileChanges
from source_segment_profile.profile_ids import AccountIds, LinkedAccounts, ReadProgress, UserIds
from source_segment_profile.profile_reader import ProfileRead, ProfileReader, ReadingStopped, ReadItem, RecordsRead
from source_segment_profile.profile_urls import profile_path, space_url
from source_segment_profile.progress import StreamProgress
from source_segment_profile.stream_state import ReadingCheckpoints, ReadThroughCheckpoints, StreamCheckpoints
from source_segment_profile.trait_columns import TraitColumns

# How often an idle consumer (all workers waiting on the API) still logs progress.
IDLE_POLL_SECONDS = 1.0
# Segment's docs: links returns at most 20 per page.
LINKS_PAGE_SIZE = 20
# The cursor of incremental streams whose records carry no time of their own: the instant the
# profile was read through (its watermark), so that append + dedup keeps the latest sync's row.
READ_AT = "read_at"
# The API keeps events ~14 days (Segment's docs); a day less, for safety.
EVENTS_KEPT = timedelta(days=13)
# What `verbose=true` makes of each trait (Segment's Profile API docs).
VERBOSE_FIELDS = frozenset({"value", "source_id", "updated_at"})


@functools.cache
def load_schema(stream_name: str) -> Mapping[str, Any]:
    """The stream's JSON schema: packaged beside this module when installed, top-level schemas/ in a checkout."""
    for folder in (Path(__file__).parent / "schemas", Path(__file__).parent.parent / "schemas"):
        path = folder / f"{stream_name}.json"
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"no schema for stream {stream_name}")


class ProfileStream(HttpStream, ABC):
    """Reads one resource for every profile id, concurrently, paced by the shared budget.

    Slices are checkpoints: each ends once `profiles_per_checkpoint()` more profiles are complete,
    and the CDK emits state after it. One ProfileReader runs across the slices, so that workers
    never idle at their boundaries. A profile's slice, as `path`, `request_params`,
    `parse_response` and `next_page_token` see it, is `{"external_id": ...}`.

    A stream with a `cursor_field` is incremental: its state holds each profile's watermark
    (ReadThroughCheckpoints). With skip_unchanged_profiles, such a stream skips a user whose
    metadata has not moved since that watermark (`skips_unchanged`), except in a full pass.
    """

    collection: ClassVar[str]  # "users" or "accounts"
    resource: ClassVar[str]  # the last path segment: traits, events, ...
    page_size_cap: ClassVar[Optional[int]] = MAX_PAGE_SIZE  # None: the endpoint is not paginated
    merges_pages: ClassVar[bool] = False  # True: a profile's pages make one record (merge_pages)
    skips_unchanged: ClassVar[bool] = False  # True: with skip_unchanged_profiles, an unchanged user is not requested
    primary_key: Any = "external_id"

    def __init__(self, config: ConnectorConfig, client: ProfileApiClient, profiles: "UserIds | AccountIds", changes: Optional[ProfileChanges] = None):
        self._config = config
        self._client = client
        self._profiles = profiles
        self._changes = changes
        self._checkpoints: StreamCheckpoints = ReadingCheckpoints(profiles)  # a full refresh's, until stream_slices knows the mode
        self._incoming_state: Optional[Mapping[str, Any]] = None
        self._items: Optional[Iterator[ReadItem]] = None
        self._reading_ended = False
        self._progress: Optional[StreamProgress] = None
        self._incremental = False
        self._lookups_at_start = 0
        super().__init__()

    # --- HttpStream's contract: what a leaf says ---------------------------------------------

    @property
    def url_base(self) -> str:
        return space_url(self._config.base_url, self._config.space_id)

    def path(self, *, stream_slice: Optional[Mapping[str, Any]] = None, **_: Any) -> str:
        return profile_path(self.collection, stream_slice["external_id"], self.resource)

    def request_params(
        self,
        stream_state: Optional[Mapping[str, Any]] = None,
        stream_slice: Optional[Mapping[str, Any]] = None,
        next_page_token: Optional[Mapping[str, Any]] = None,
    ) -> MutableMapping[str, Any]:
        """The query of a page, but `limit`, which the client adds (it steps refused sizes down)."""
        return dict(next_page_token or {})

    def next_page_token(self, response: requests.Response, stream_slice: Optional[Mapping[str, Any]] = None) -> Optional[Mapping[str, Any]]:
        """`{"next": token}` from the page's cursor; None after the last page. (The engine passes the
        profile's slice too, which HttpStream's own loop would not: its errors name the profile.)"""
        token = cursor_token(self.page(response, stream_slice)) if self.page_size_cap else None
        return {"next": token} if token else None

    def page(self, response: requests.Response, stream_slice: Optional[Mapping[str, Any]]) -> ApiPage:
        """The response's body, decoded once whether parse_response or next_page_token asks first."""
        return page_of(response, self.name, (stream_slice or {}).get("external_id", ""))

    def merge_pages(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of a profile whose pages make one record (`merges_pages`: traits)."""
        return records

    def read_at(self) -> dict[str, Any]:
        """`{"read_at": watermark}` for a record of an incremental sync of a stream whose cursor it
        is: every change that reached the profile before it is in the record, and a later sync's
        row has a later one. Empty in a full refresh (the destination keeps only that sync's rows)."""
        watermark = self._checkpoints.watermarks.watermark if self.cursor_field == READ_AT and self._incremental else None
        return {READ_AT: format_timestamp(watermark)} if watermark else {}

    def get_json_schema(self) -> Mapping[str, Any]:
        return load_schema(self.name)

    # --- state --------------------------------------------------------------------------------

    @property
    def is_resumable(self) -> bool:
        # A listing of every user is resumable: the CDK then asks for records again and again with
        # the state as slice until the state says complete, and hands the state of an interrupted
        # attempt back. Otherwise full refresh streams are not: left to the CDK, a full-refresh
        # HttpStream gets a resumable-full-refresh cursor that ignores our slices (cdk-notes).
        return self.supports_incremental or self._profiles.resumable

    @property
    def state(self) -> MutableMapping[str, Any]:
        # The CDK reads this after every record: the message built at the last checkpoint.
        return self._checkpoints.message

    @state.setter
    def state(self, value: MutableMapping[str, Any]) -> None:
        self._incoming_state = value
        self._checkpoints.load(value)

    def _use_checkpoints_of(self, sync_mode: SyncMode) -> None:
        """An incremental sync keeps each profile's watermark; a full refresh only where an
        interrupted pass stood (the CDK sets the state before it asks for slices, which say the mode)."""
        kind = ReadThroughCheckpoints if self.cursor_field and sync_mode == SyncMode.incremental else ReadingCheckpoints
        if not isinstance(self._checkpoints, kind):
            self._checkpoints = ReadThroughCheckpoints(self._profiles, self.name) if kind is ReadThroughCheckpoints else ReadingCheckpoints(self._profiles)
            self._checkpoints.load(self._incoming_state)

    # --- the engine ---------------------------------------------------------------------------

    def stream_slices(self, *, sync_mode: SyncMode, **_: Any) -> Iterable[Optional[Mapping[str, Any]]]:
        # Lazy: the CDK asks for the next slice only after reading the last one, and the number of
        # checkpoints is known only once the reading ends.
        self._items, self._reading_ended = None, False
        self._use_checkpoints_of(sync_mode)
        checkpoint = 0
        while not self._reading_ended:
            yield {"checkpoint": checkpoint}
            checkpoint += 1

    def read_records(
        self,
        sync_mode: SyncMode,
        cursor_field: Optional[List[str]] = None,
        stream_slice: Optional[Mapping[str, Any]] = None,
        stream_state: Optional[Mapping[str, Any]] = None,
    ) -> Iterable[Mapping[str, Any]]:
        if self._reading_ended:
            return
        if self._items is None:
            self._start_reading(sync_mode)
        completed = 0
        for item in self._items:
            if isinstance(item, RecordsRead):
                self._progress.records_read(len(item.records))
                yield from item.records
                continue
            self._checkpoints.profile_done(item)
            self._progress.profile_done(item.pages, item.found, item.external_id, item.unchanged)
            completed += 1
            if completed >= self._checkpoints.profiles_per_checkpoint():
                self._checkpoints.checkpoint(reading_ended=False)
                return
        self._items, self._reading_ended = None, True
        if self._checkpoints.skipping and self._changes.lookups > self._lookups_at_start:
            self._progress.notes.append(f"{self._changes.lookups - self._lookups_at_start} users' metadata read for the skip (not read earlier in this sync).")
        self.reading_ended()
        self._checkpoints.checkpoint(reading_ended=True)
        self._progress.summary()
        if self._progress.profiles_done and len(self._progress.not_found) == self._progress.profiles_done:
            raise profiles_not_found(f"{self._progress.profiles_done} profiles {self.name} looked up", self._config.space, self._progress.not_found)

    def reading_ended(self) -> None:
        """Called once every profile was read (not when the reading failed)."""

    def _new_progress(self, label: str) -> StreamProgress:
        return StreamProgress(
            stream=self.name,
            label=label,
            total_profiles=self._profiles.total,
            counters=self._client.counters,
            budget=self._client.budget,
            logger=self.logger,
            unmatchable_ids=ids_segment_would_not_match(self._profiles.configured),
        )

    def _start_reading(self, sync_mode: SyncMode) -> None:
        self._incremental = sync_mode == SyncMode.incremental
        self._progress = self._new_progress(self.name)
        if isinstance(self._checkpoints, ReadThroughCheckpoints):
            self._start_pass()
        reader = ProfileReader(self.read_profile, self._config.max_concurrency, self._progress.log_if_due, IDLE_POLL_SECONDS)
        self._lookups_at_start = self._changes.lookups if self._changes else 0
        progress = self._checkpoints.read_progress
        self._items = reader.read(progress.ids(self._profiles.pages(progress.resume_from)))

    def _start_pass(self) -> None:
        """Whether this pass may skip unchanged users, said in the log with why."""
        may_skip = self.skips_unchanged and self._changes is not None and self._config.skip_unchanged_profiles and self._incremental
        full_pass = self._checkpoints.start_pass(may_skip, self._config.full_pass_every, datetime.now(timezone.utc))
        self._progress.skips_unchanged = self._checkpoints.skipping
        if not (self.skips_unchanged and self._config.skip_unchanged_profiles):
            return
        last = self._checkpoints.watermarks.full_pass_at
        since = f"the last was at {format_timestamp(last)}" if last else "there was none yet"
        if full_pass:
            self.logger.info(f"{self.name}: a full pass reads every profile, skipping none ({since}; full_pass_every_days {self._config.full_pass_every_days}).")
        else:
            self.logger.info(f"{self.name}: skips users whose metadata has not moved since this stream last read them (full pass: {since}).")

    def unchanged_since_read(self, external_id: str, stopping: threading.Event) -> bool:
        """True when this pass skips the user: its metadata `updated_at` is before the watermark the
        stream last read it through. A user the state does not know, or whose metadata is not known
        (404, absent, unreadable), is read."""
        if not self._checkpoints.skipping:
            return False
        read_through = self._checkpoints.watermarks.read_through(external_id)
        if read_through is None or not self.may_skip_read_through(read_through):
            return False
        updated_at = self._changes.updated_at(external_id, stopping)
        return updated_at is not None and updated_at < read_through

    def may_skip_read_through(self, read_through: datetime) -> bool:
        """Whether a user read through this instant may be skipped at all (user_events: not once
        what it missed could leave the API's window)."""
        return True

    def read_profile(self, external_id: str, stopping: threading.Event) -> Iterator[ReadItem]:
        """Reads every page of one profile (on a worker thread), handing records over page by page;
        or skips it as unchanged, requesting nothing (`unchanged_since_read`).

        `stopping` is set once the consumer has stopped taking items or another profile failed:
        the sync is over either way, and a profile cut short here is never completed.
        """
        if self.unchanged_since_read(external_id, stopping):
            yield ProfileRead(external_id, 0, found=True, unchanged=True)
            return
        yield from self.read_pages(external_id, stopping)

    def read_pages(self, external_id: str, stopping: threading.Event) -> Iterator[ReadItem]:
        """Every page of one profile: its records, then a ProfileRead (none if the reading stopped)."""
        stream_slice = {"external_id": external_id}
        url = self.url_base + self.path(stream_slice=stream_slice)
        guard = PageGuard()
        merged: list[dict[str, Any]] = []
        pages = 0
        next_page: Optional[Mapping[str, Any]] = None
        while not stopping.is_set():
            params = self.request_params(stream_slice=stream_slice, next_page_token=next_page)
            try:
                response = self._client.get(PageRequest(url, params, self.name, external_id, self.page_size_cap), stopping)
            except ReadingStopped:
                return
            except ProfileNotFound as not_found:
                self.logger.warning(
                    f"Skipping profile {mask_external_id(external_id)} in {self.name}: the Profile API answered 404 "
                    f"(Request-Id {not_found.request_id or 'none'}); check the id's type and value."
                )
                yield ProfileRead(external_id, pages, found=False)
                return
            pages += 1
            self._checkpoints.answer_received(self.page(response, stream_slice).server_date)
            records = list(self.parse_response(response, stream_slice=stream_slice))
            if self.merges_pages:
                merged.extend(records)
            elif records:
                yield RecordsRead(external_id, records)
            next_page = self.next_page_token(response, stream_slice=stream_slice)
            if next_page is None:
                break
            guard.follow(next_page["next"], self.page(response, stream_slice))
        else:
            return
        if self.merges_pages:
            yield RecordsRead(external_id, self.merge_pages(merged))
        yield ProfileRead(external_id, pages, found=True)


class DataListStream(ProfileStream, ABC):
    """Endpoints answering `{"data": [...], "cursor": {...}}`; `data: null` means no items."""

    def parse_response(self, response: requests.Response, *, stream_slice: Optional[Mapping[str, Any]] = None, **_: Any) -> Iterable[Mapping[str, Any]]:
        page = self.page(response, stream_slice)
        data = page.body.get("data")
        if data is None:
            return []
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise page.unexpected("'data' is not a list of objects")
        # The items were decoded for this profile alone: completing them in place saves a copy per record.
        for item in data:
            item["external_id"] = page.external_id
        return data


class TraitsStream(ProfileStream, ABC):
    """One record per profile: `{external_id, traits}`, the traits of every page merged, and the
    typed `trait_<name>` columns (trait_columns.py) its catalog declares."""

    merges_pages = True

    def __init__(self, config: ConnectorConfig, client: ProfileApiClient, profiles: "UserIds | AccountIds", changes: Optional[ProfileChanges] = None):
        self._use_columns(TraitColumns())
        self._misfits = 0
        self._misfits_lock = threading.Lock()
        super().__init__(config, client, profiles, changes)

    def request_params(self, **kwargs: Any) -> MutableMapping[str, Any]:
        # verbose=true: each trait comes with when and by which source it was last set.
        params = {**super().request_params(**kwargs), "verbose": "true"}
        if self._config.trait_names:
            params["include"] = ",".join(self._config.trait_names)
        return params

    def parse_response(self, response: requests.Response, *, stream_slice: Optional[Mapping[str, Any]] = None, **_: Any) -> Iterable[Mapping[str, Any]]:
        page = self.page(response, stream_slice)
        values, provenance = verbose_traits(page)
        return [{"external_id": page.external_id, "traits": values, **({"traits_provenance": provenance} if provenance is not None else {})}]

    def merge_pages(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Pages hold distinct traits, in lexicographic order across pages.
        traits = {name: value for record in records for name, value in record["traits"].items()}
        cells, misfits = self._columns.cells(traits)
        if misfits:
            with self._misfits_lock:
                self._misfits += misfits
        merged = {"external_id": records[0]["external_id"], "traits": traits, **cells, **self.read_at()}
        if any("traits_provenance" in record for record in records):
            merged["traits_provenance"] = {name: update for record in records for name, update in record.get("traits_provenance", {}).items()}
        return [merged]

    # --- typed trait columns ------------------------------------------------------------------

    def get_json_schema(self) -> Mapping[str, Any]:
        return self._schema

    def _use_columns(self, columns: TraitColumns) -> None:
        # The CDK asks for the schema after every record: it is built once per set of columns.
        self._columns = columns
        schema = load_schema(self.name)
        self._schema = {**schema, "properties": {**schema["properties"], **columns.schema_properties()}}

    def discover_trait_columns(self) -> None:
        """Types the trait columns from the traits of a sample of profiles (at discover only)."""
        ids = self._profiles.sample(self._config.trait_columns_sample_size)
        if not ids:
            return
        reader = ProfileReader(self.read_profile, min(self._config.max_concurrency, len(ids)), lambda: None, IDLE_POLL_SECONDS)
        try:
            sampled = [record["traits"] for item in reader.read(ids) if isinstance(item, RecordsRead) for record in item.records]
        except ProfileApiError as error:
            self.logger.warning(f"{self.name}: no typed trait columns this time, the sample could not be read: {error.message}")
            return
        self._use_columns(TraitColumns.from_sample(sampled, self._config.trait_names))
        left_out = "; ".join(f"{name!r}: {why}" for name, why in sorted(self._columns.left_out.items()))
        self.logger.info(
            f"{self.name}: {len(self._columns.columns)} typed trait columns from {len(sampled)} sampled profiles"
            + (f"; in 'traits' only: {left_out}." if left_out else ".")
        )

    def read(self, configured_stream: ConfiguredAirbyteStream, *args: Any, **kwargs: Any) -> Iterable[Any]:
        """A sync fills the columns its configured catalog declares (not the ones a sample would give now)."""
        self._use_columns(TraitColumns.from_schema(configured_stream.stream.json_schema or {}))
        yield from super().read(configured_stream, *args, **kwargs)

    def reading_ended(self) -> None:
        if self._misfits:
            self._progress.notes.append(
                f"{self._misfits} trait values did not fit their typed column (left null there, kept exact in 'traits')."
            )


def verbose_traits(page: ApiPage) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """(each trait's value, each trait's `{updated_at, source_id}`) of a page asked for with
    verbose=true. A page whose values are not all `{"value", ...}` objects (a server that ignored
    `verbose`) is taken as plain values, with no provenance (None)."""
    traits = page.body.get("traits")
    if traits is not None and not isinstance(traits, dict):
        raise page.unexpected("'traits' is not an object")
    traits = traits or {}
    if not traits or not all(isinstance(value, dict) and "value" in value and set(value) <= VERBOSE_FIELDS for value in traits.values()):
        return traits, None
    return (
        {name: value["value"] for name, value in traits.items()},
        {name: {"updated_at": value.get("updated_at"), "source_id": value.get("source_id")} for name, value in traits.items()},
    )


class TraitClassStream(ProfileStream, ABC):
    """One record per profile and trait of one class (`class=audience` or `class=computed_trait`,
    Segment's documented filter of the traits endpoint), each with when and by which source it was
    last set. Not merged: a profile's traits of the class may span pages."""

    collection, resource = "users", "traits"
    trait_class: ClassVar[str]

    def request_params(self, **kwargs: Any) -> MutableMapping[str, Any]:
        return {**super().request_params(**kwargs), "class": self.trait_class, "verbose": "true"}

    def parse_response(self, response: requests.Response, *, stream_slice: Optional[Mapping[str, Any]] = None, **_: Any) -> Iterable[Mapping[str, Any]]:
        page = self.page(response, stream_slice)
        values, provenance = verbose_traits(page)
        return [self.record(page.external_id, name, value, (provenance or {}).get(name, {})) for name, value in values.items()]

    @abstractmethod
    def record(self, external_id: str, name: str, value: Any, update: Mapping[str, Any]) -> dict[str, Any]:
        """The record of one trait of the class."""


class UserAudiences(TraitClassStream):
    """https://segment.com/docs/unify/profile-api/#get-user-traits (class=audience)

    An audience is a trait whose value is the membership: `in_audience` (null if not a boolean).
    """

    trait_class = "audience"
    primary_key = ["external_id", "audience"]

    def record(self, external_id: str, name: str, value: Any, update: Mapping[str, Any]) -> dict[str, Any]:
        return {"external_id": external_id, "audience": name, "in_audience": value if isinstance(value, bool) else None, **update}


class UserComputedTraits(TraitClassStream):
    """https://segment.com/docs/unify/profile-api/#get-user-traits (class=computed_trait)"""

    trait_class = "computed_trait"
    primary_key = ["external_id", "trait"]

    def record(self, external_id: str, name: str, value: Any, update: Mapping[str, Any]) -> dict[str, Any]:
        return {"external_id": external_id, "trait": name, "value": value, **update}


class ExternalIdsStream(DataListStream, ABC):
    primary_key = ["external_id", "type", "id"]


class UserTraits(TraitsStream):
    """https://segment.com/docs/unify/profile-api/#get-user-traits"""

    collection, resource = "users", "traits"
    cursor_field = READ_AT
    skips_unchanged = True


class AccountTraits(TraitsStream):
    """https://segment.com/docs/unify/profile-api/#get-account-traits"""

    collection, resource = "accounts", "traits"


class UserExternalIds(ExternalIdsStream):
    """https://segment.com/docs/unify/profile-api/#get-user-external-ids"""

    collection, resource = "users", "external_ids"
    cursor_field = "created_at"
    skips_unchanged = True


class AccountExternalIds(ExternalIdsStream):
    """https://segment.com/docs/unify/profile-api/#get-account-external-ids"""

    collection, resource = "accounts", "external_ids"


class UserMetadata(ProfileStream):
    """https://segment.com/docs/unify/profile-api/#get-user-metadata

    The seed spec answers the fields at the top level; Segment's docs show them wrapped in
    `{"metadata": {...}}`. Both become one flat record.

    The metadata is the change signal of skip_unchanged_profiles (profile_changes.py): it is
    requested for every user, and remembered for the streams that follow; a skipping pass emits
    the record only when it moved since this stream last read the user.
    """

    collection, resource = "users", "metadata"
    page_size_cap = None
    cursor_field = "updated_at"
    skips_unchanged = True

    def parse_response(self, response: requests.Response, *, stream_slice: Optional[Mapping[str, Any]] = None, **_: Any) -> Iterable[Mapping[str, Any]]:
        page = self.page(response, stream_slice)
        metadata = page.body.get("metadata", page.body)
        if not isinstance(metadata, dict):
            raise page.unexpected("'metadata' is not an object")
        return [{**metadata, "external_id": page.external_id}]

    def read_profile(self, external_id: str, stopping: threading.Event) -> Iterator[ReadItem]:
        items = list(self.read_pages(external_id, stopping))  # one page
        if not items or not isinstance(items[-1], ProfileRead):
            return  # the reading stopped
        done = items[-1]
        records = [record for item in items if isinstance(item, RecordsRead) for record in item.records]
        if self._changes is not None:
            self._changes.remember(external_id, records[0] if records else None)
        if records and self.unchanged_since_read(external_id, stopping):
            yield dataclasses.replace(done, unchanged=True)
            return
        yield from items


class UserLinks(DataListStream):
    """https://segment.com/docs/unify/profile-api/#get-user-links

    A link has no id of its own, so `linked_external_id` (the smallest `type:id` of the linked
    profile's ids, stable across syncs) joins `external_id` and `to_collection` as primary key.
    """

    collection, resource = "users", "links"
    page_size_cap = LINKS_PAGE_SIZE
    primary_key = ["external_id", "to_collection", "linked_external_id"]
    cursor_field = READ_AT
    skips_unchanged = True

    def __init__(
        self,
        config: ConnectorConfig,
        client: ProfileApiClient,
        profiles: UserIds,
        changes: Optional[ProfileChanges] = None,
        linked_accounts: Optional[LinkedAccounts] = None,
    ):
        self._linked_accounts = linked_accounts
        super().__init__(config, client, profiles, changes)

    def parse_response(self, response: requests.Response, **kwargs: Any) -> Iterable[Mapping[str, Any]]:
        records = list(super().parse_response(response, **kwargs))
        read_at = self.read_at()
        for record in records:
            record["linked_external_id"] = linked_external_id(record)
            record.update(read_at)
            if self._linked_accounts is not None and record.get("to_collection") == "accounts" and record["linked_external_id"]:
                self._linked_accounts.add(record["linked_external_id"])
        return records

    def reading_ended(self) -> None:
        # A resumed attempt skipped the users an interrupted one read, and a skipping pass the
        # unchanged users: its links are not all of them, so the account streams read every
        # user's links themselves.
        if self._linked_accounts is not None and self._checkpoints.read_progress.resume_from is None and not self._checkpoints.skipping:
            self._linked_accounts.complete = True

    def read_links_only(self) -> None:
        """Reads every user's links without emitting them, for the account streams (user_links was
        not synced), with the progress lines of a stream: hours of reading are never silent."""
        progress = self._new_progress("user links for the account streams")
        reader = ProfileReader(self.read_pages, self._config.max_concurrency, progress.log_if_due, IDLE_POLL_SECONDS)
        for item in reader.read(ReadProgress().ids(self._profiles.pages())):
            if isinstance(item, RecordsRead):
                progress.records_read(len(item.records))
            else:
                progress.profile_done(item.pages, item.found, item.external_id)
        progress.summary()
        self._linked_accounts.complete = True
        self.logger.info(f"Read the links of the users for the account streams: {len(self._linked_accounts.ids())} linked accounts.")


def linked_external_id(link: Mapping[str, Any]) -> str:
    ids = [f"{entry.get('type')}:{entry.get('id')}" for entry in link.get("external_ids") or [] if isinstance(entry, dict)]
    return min(ids, default="")


class UserEvents(DataListStream):
    """https://segment.com/docs/unify/profile-api/#get-user-events

    Incremental, with a watermark per profile (read_through_state.py says why it is not an event's
    timestamp). Events come newest first; paging stops at the first page that reaches back past
    the profile's lower bound. A profile's watermark advances only once all its pages are emitted.
    """

    collection, resource = "users", "events"
    primary_key = ["external_id", "messageId"]
    cursor_field = "timestamp"
    skips_unchanged = True

    def may_skip_read_through(self, read_through: datetime) -> bool:
        """If Segment's metadata `updated_at` followed an event's timestamp rather than its arrival
        (undocumented), a late event would not move it, and only the next read of the user (from
        its watermark less the lookback) would deliver it: a user read through longer ago than the
        API keeps events, less the lookback, is read whatever its metadata says, so that such an
        event is never left to leave the window (full_pass_every_days may be longer, or 0)."""
        now = max(datetime.now(timezone.utc), self._checkpoints.watermarks.newest or read_through)  # a slow local clock waits no longer
        return now - read_through < EVENTS_KEPT - timedelta(seconds=self._config.events_lookback_seconds)

    def lower_bound(self, external_id: str) -> Optional[datetime]:
        """The oldest event this sync wants of the profile: the start date, or its watermark less the lookback."""
        bounds = [self._config.start_date] if self._config.start_date else []
        read_through = self._checkpoints.watermarks.read_through(external_id) if self._incremental else None
        if read_through is not None:
            bounds.append(read_through - timedelta(seconds=self._config.events_lookback_seconds))
        return max(bounds, default=None)

    def request_params(self, stream_slice: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> MutableMapping[str, Any]:
        params = super().request_params(stream_slice=stream_slice, **kwargs)
        # Newest first, said explicitly: paging stops at the first page older than the lower bound.
        params["sort"] = "desc"
        lower_bound = self.lower_bound(stream_slice["external_id"]) if stream_slice else None
        if lower_bound:
            params["start"] = format_timestamp(lower_bound)
        return params

    def parse_response(self, response: requests.Response, *, stream_slice: Optional[Mapping[str, Any]] = None, **_: Any) -> Iterable[Mapping[str, Any]]:
        self._checkpoints.answer_received(self.page(response, stream_slice).server_date)
        records = super().parse_response(response, stream_slice=stream_slice)
        lower_bound = self.lower_bound(stream_slice["external_id"])
        if lower_bound is not None:
            # The server may ignore `start`: filter here as well.
            records = [record for record in records if not is_before(record.get("timestamp"), lower_bound)]
        for record in records:
            # The seed spec says messageId; real events may carry only message_id.
            if record.get("messageId") is None and record.get("message_id") is not None:
                record["messageId"] = record["message_id"]
        return records

    def next_page_token(self, response: requests.Response, stream_slice: Optional[Mapping[str, Any]] = None) -> Optional[Mapping[str, Any]]:
        lower_bound = self.lower_bound(stream_slice["external_id"])
        events = self.page(response, stream_slice).body.get("data") or []
        if lower_bound is not None and any(is_before(event.get("timestamp"), lower_bound) for event in events):
            return None  # later pages are older still
        return super().next_page_token(response, stream_slice)


def is_before(timestamp: Any, bound: datetime) -> bool:
    """True only for a readable timestamp before `bound`; an event without one is kept, not dropped."""
    try:
        return parse_timestamp(timestamp) < bound
    except (TypeError, ValueError):
        return False
