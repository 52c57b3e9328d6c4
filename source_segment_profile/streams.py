"""The seven Profile API streams: one base that reads profiles, then a few lines per resource.

API reference: https://segment.com/docs/unify/profile-api/ (contract: openapi/segment-profile-api-openapi.yml).
"""

from __future__ import annotations

import functools
import json
import threading
from abc import ABC, abstractmethod
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, List, Mapping, MutableMapping, Optional
from urllib.parse import quote, unquote, urlsplit

import numpy as np
import requests
from airbyte_cdk.models import SyncMode
from airbyte_cdk.sources.streams.http import HttpStream

from source_segment_profile.api_client import ApiPage, ProfileApiClient, decoded_page
from source_segment_profile.config import MAX_PAGE_SIZE, ConnectorConfig, ids_segment_would_not_match, parse_timestamp
from source_segment_profile.errors import ProfileNotFound, profiles_not_found
from source_segment_profile import key_sets
from source_segment_profile.events_state import EventsState, format_timestamp, watermark_from_server_date
from source_segment_profile.masking import mask_external_id, profile_key
from source_segment_profile.pagination import ProfileCursorPaginator
from source_segment_profile.profile_ids import AccountIds, LinkedAccounts, ReadProgress, ResumePoint, UserIds
from source_segment_profile.profile_reader import ProfileRead, ProfileReader, ReadingStopped, ReadItem, RecordsRead
from source_segment_profile.profile_urls import profile_url
from source_segment_profile.progress import StreamProgress

# State is checkpointed after every this many profiles, so an interrupted sync resumes close to
# where it stopped instead of starting over.
CHECKPOINT_EVERY_PROFILES = 200
# user_events' state names every profile, so each checkpoint is about as large as the final state:
# it is written at most this many times a pass (every 1/16th of the profiles), keeping all the
# state a sync writes under 20x the final state. At a million profiles and 100 requests/s that is
# a checkpoint every ~10 minutes; at 100,000 profiles, every minute.
USER_EVENTS_CHECKPOINTS_PER_PASS = 16
# How often an idle consumer (all workers waiting on the API) still logs progress.
IDLE_POLL_SECONDS = 1.0
# Segment's docs: links returns at most 20 per page.
LINKS_PAGE_SIZE = 20
# What a resumable full refresh stream's state is once it has read everything (the CDK's sentinel).
FULL_REFRESH_COMPLETE = {"__ab_full_refresh_sync_complete": True}


@functools.cache
def load_schema(stream_name: str) -> Mapping[str, Any]:
    """The stream's JSON schema: packaged beside this module when installed, top-level schemas/ in a checkout."""
    for folder in (Path(__file__).parent / "schemas", Path(__file__).parent.parent / "schemas"):
        path = folder / f"{stream_name}.json"
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"no schema for stream {stream_name}")


class ProfileStream(HttpStream, ABC):
    """Reads one resource for every configured profile id, concurrently, paced by the shared budget.

    Slices are checkpoints: each ends once `profiles_per_checkpoint()` more profiles are complete,
    and the CDK emits state after it. One ProfileReader runs across the slices, so that workers
    never idle at their boundaries.
    """

    collection: ClassVar[str]  # "users" or "accounts"
    resource: ClassVar[str]  # the last path segment: traits, events, ...
    page_size_cap: ClassVar[Optional[int]] = MAX_PAGE_SIZE  # None: the endpoint is not paginated
    # True: one record from the items of all pages (traits); False: records page by page.
    merges_pages: ClassVar[bool] = False
    primary_key: Any = "external_id"

    def __init__(self, config: ConnectorConfig, client: ProfileApiClient, profiles: "UserIds | AccountIds"):
        self._config = config
        self._client = client
        self._profiles = profiles
        self._items: Optional[Iterator[ReadItem]] = None
        self._reading_ended = False
        self._progress: Optional[StreamProgress] = None
        self._read_progress = ReadProgress()
        self._resumable_state: MutableMapping[str, Any] = {}
        super().__init__()

    # --- what a leaf says -------------------------------------------------------------------

    @abstractmethod
    def items_from_page(self, page: ApiPage) -> list[Any]:
        """The items of one page (data entries, trait pairs, ...); raises page.unexpected(...) on a bad shape."""

    @abstractmethod
    def records_from_items(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        """The records of one page's items (of all pages' items when `merges_pages`)."""

    # --- HttpStream's interface -------------------------------------------------------------

    @property
    def url_base(self) -> str:
        return f"{self._config.base_url}/v1/spaces/{quote(self._config.space_id, safe='')}/"

    def path(self, *, stream_slice: Optional[Mapping[str, Any]] = None, **_: Any) -> str:
        return profile_url(
            self._config.base_url, self._config.space_id, self.collection, stream_slice["external_id"], self.resource
        )

    def request_params(
        self,
        stream_state: Optional[Mapping[str, Any]] = None,
        stream_slice: Optional[Mapping[str, Any]] = None,
        next_page_token: Optional[Mapping[str, Any]] = None,
    ) -> MutableMapping[str, Any]:
        """The query of a page, but `limit`, which the client adds (it steps refused sizes down)."""
        return dict(next_page_token or {})

    def parse_response(self, response: requests.Response, **_: Any) -> Iterable[Mapping[str, Any]]:
        page = self._page_from_response(response)
        return self.records_from_items(page.external_id, self.items_from_page(page))

    def next_page_token(self, response: requests.Response) -> Optional[Mapping[str, Any]]:
        page = self._page_from_response(response)
        token = ProfileCursorPaginator().next_token(page, len(self.items_from_page(page))) if self.page_size_cap else None
        return {"next": token} if token else None

    def _page_from_response(self, response: requests.Response) -> ApiPage:
        """The CDK-style view of a response; reading itself goes through ProfileApiClient.get_page."""
        external_id = unquote(urlsplit(response.url).path.split("/profiles/", 1)[1].split("/", 1)[0])
        return decoded_page(
            response.content, response.url, self.name, external_id, response.headers.get("Request-Id"), response.status_code, None
        )

    def get_json_schema(self) -> Mapping[str, Any]:
        return load_schema(self.name)

    @property
    def is_resumable(self) -> bool:
        # A listing of every user is resumable: the CDK then asks for records again and again with
        # the state as slice until the state says complete, and hands the state of an interrupted
        # attempt back. Otherwise full refresh streams are not: left to the CDK, a full-refresh
        # HttpStream gets a resumable-full-refresh cursor that ignores our slices (cdk-notes).
        return self.supports_incremental or self._profiles.resumable

    @property
    def state(self) -> MutableMapping[str, Any]:
        return self._resumable_state

    @state.setter
    def state(self, value: MutableMapping[str, Any]) -> None:
        """An interrupted attempt's state: where its reading stood. A finished pass (PyAirbyte hands
        it back on the next sync; Airbyte's platform does not) means: read everything again."""
        self._resumable_state = {} if value == FULL_REFRESH_COMPLETE else dict(value or {})
        self._read_progress = ReadProgress(ResumePoint.from_checkpoint(self._resumable_state.get("reading")))

    # --- reading ----------------------------------------------------------------------------

    def stream_slices(self, *, sync_mode: SyncMode, **_: Any) -> Iterable[Optional[Mapping[str, Any]]]:
        # Lazy: the CDK asks for the next slice only after reading the last one, and the number of
        # checkpoints is known only once the reading ends.
        self._items, self._reading_ended = None, False
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
            self.profile_completed(item)
            self._read_progress.profile_done(item.external_id)
            self._progress.profile_done(item.pages, item.found, item.external_id)
            completed += 1
            if completed >= self.profiles_per_checkpoint():
                self.checkpoint_reached()
                return
        self._items, self._reading_ended = None, True
        self.reading_ended()
        self.checkpoint_reached()
        self._progress.summary()
        if self._progress.profiles_done and len(self._progress.not_found) == self._progress.profiles_done:
            raise profiles_not_found(f"{self._progress.profiles_done} profiles {self.name} looked up", self._config.space, self._progress.not_found)

    def profile_completed(self, done: ProfileRead) -> None:
        """Called once all of a profile's records are emitted; incremental streams advance their state here."""

    def profiles_per_checkpoint(self) -> int:
        """How many profiles a slice completes before the state is checkpointed."""
        return CHECKPOINT_EVERY_PROFILES

    def checkpoint_reached(self) -> None:
        """Called before the CDK emits state: the state says how far the reading got."""
        if self._profiles.resumable:
            reading = self._read_progress.checkpoint(self._profiles.fingerprint)
            self._resumable_state = FULL_REFRESH_COMPLETE if self._reading_ended else ({"reading": reading} if reading else {})

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
        self._progress = self._new_progress(self.name)
        reader = ProfileReader(self.read_profile, self._config.max_concurrency, self._progress.log_if_due, IDLE_POLL_SECONDS)
        self._items = reader.read(self._read_progress.ids(self._profiles.pages(self._read_progress.resume_from)))

    def read_profile(self, external_id: str, stopping: threading.Event) -> Iterator[ReadItem]:
        """Reads every page of one profile (on a worker thread), handing records over page by page."""
        url = self.path(stream_slice={"external_id": external_id})
        paginator = ProfileCursorPaginator()
        merged: list[Any] = []
        pages = 0
        token: Optional[str] = None
        # `stopping` is set once the consumer has stopped taking items or another profile failed:
        # the sync is over either way, and a profile cut short here is never completed.
        while not stopping.is_set():
            params = self.request_params(stream_slice={"external_id": external_id}, next_page_token={"next": token} if token else None)
            try:
                page = self._client.get_page(url, params, self.name, external_id, self.page_size_cap, stopping)
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
            self.page_received(page)
            items = self.items_from_page(page)
            if self.merges_pages:
                merged.extend(items)
            else:
                records = self.records_from_items(external_id, items)
                if records:
                    yield RecordsRead(external_id, records)
            if not self.page_size_cap or not self.wants_older_pages(external_id, items):
                break
            token = paginator.next_token(page, len(items))
            if token is None:
                break
        else:
            return
        if self.merges_pages:
            yield RecordsRead(external_id, self.records_from_items(external_id, merged))
        yield ProfileRead(external_id, pages, found=True)

    def page_received(self, page: ApiPage) -> None:
        """Called for every page answered; user_events takes its watermark from the first."""

    def wants_older_pages(self, external_id: str, page_items: list[Any]) -> bool:
        """False when later pages can only hold data this sync does not want (incremental events)."""
        return True


class DataListStream(ProfileStream, ABC):
    """Endpoints answering `{"data": [...], "cursor": {...}}`; `data: null` means no items."""

    def items_from_page(self, page: ApiPage) -> list[Any]:
        data = page.body.get("data")
        if data is None:
            return []
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise page.unexpected("'data' is not a list of objects")
        return data

    def records_from_items(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        # The items were decoded for this profile alone: completing them in place saves a copy per record.
        for item in items:
            item["external_id"] = external_id
        return items


class TraitsStream(ProfileStream, ABC):
    """One record per profile: `{external_id, traits}`, the traits of every page merged."""

    merges_pages = True

    def request_params(self, **kwargs: Any) -> MutableMapping[str, Any]:
        params = super().request_params(**kwargs)
        if self._config.trait_names:
            params["include"] = ",".join(self._config.trait_names)
        return params

    def items_from_page(self, page: ApiPage) -> list[Any]:
        traits = page.body.get("traits")
        if traits is None:
            return []
        if not isinstance(traits, dict):
            raise page.unexpected("'traits' is not an object")
        return list(traits.items())

    def records_from_items(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        return [{"external_id": external_id, "traits": dict(items)}]


class ExternalIdsStream(DataListStream, ABC):
    primary_key = ["external_id", "type", "id"]


class UserTraits(TraitsStream):
    """https://segment.com/docs/unify/profile-api/#get-user-traits"""

    collection, resource = "users", "traits"


class AccountTraits(TraitsStream):
    """https://segment.com/docs/unify/profile-api/#get-account-traits"""

    collection, resource = "accounts", "traits"


class UserExternalIds(ExternalIdsStream):
    """https://segment.com/docs/unify/profile-api/#get-user-external-ids"""

    collection, resource = "users", "external_ids"


class AccountExternalIds(ExternalIdsStream):
    """https://segment.com/docs/unify/profile-api/#get-account-external-ids"""

    collection, resource = "accounts", "external_ids"


class UserMetadata(ProfileStream):
    """https://segment.com/docs/unify/profile-api/#get-user-metadata

    The seed spec answers the fields at the top level; Segment's docs show them wrapped in
    `{"metadata": {...}}`. Both become one flat record.
    """

    collection, resource = "users", "metadata"
    page_size_cap = None

    def items_from_page(self, page: ApiPage) -> list[Any]:
        metadata = page.body.get("metadata", page.body)
        if not isinstance(metadata, dict):
            raise page.unexpected("'metadata' is not an object")
        return [metadata]

    def records_from_items(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        return [{**item, "external_id": external_id} for item in items]


class UserLinks(DataListStream):
    """https://segment.com/docs/unify/profile-api/#get-user-links

    A link has no id of its own, so `linked_external_id` (the smallest `type:id` of the linked
    profile's ids, stable across syncs) joins `external_id` and `to_collection` as primary key.
    """

    collection, resource = "users", "links"
    page_size_cap = LINKS_PAGE_SIZE
    primary_key = ["external_id", "to_collection", "linked_external_id"]

    def __init__(self, config: ConnectorConfig, client: ProfileApiClient, profiles: UserIds, linked_accounts: Optional[LinkedAccounts] = None):
        self._linked_accounts = linked_accounts
        super().__init__(config, client, profiles)

    def records_from_items(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        records = [{**link, "external_id": external_id, "linked_external_id": linked_external_id(link)} for link in items]
        if self._linked_accounts is not None:
            for record in records:
                if record.get("to_collection") == "accounts" and record["linked_external_id"]:
                    self._linked_accounts.add(record["linked_external_id"])
        return records

    def reading_ended(self) -> None:
        # A resumed attempt skipped the users an interrupted one read: its links are not all of
        # them, so the account streams read every user's links themselves.
        if self._linked_accounts is not None and self._read_progress.resume_from is None:
            self._linked_accounts.complete = True

    def read_links_only(self) -> None:
        """Reads every user's links without emitting them, for the account streams (user_links was
        not synced), with the progress lines of a stream: hours of reading are never silent."""
        progress = self._new_progress("user links for the account streams")
        reader = ProfileReader(self.read_profile, self._config.max_concurrency, progress.log_if_due, IDLE_POLL_SECONDS)
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

    Incremental, with a watermark per profile (events_state.py says why it is not an event's
    timestamp). Events come newest first; paging stops at the first page that reaches back past
    the profile's lower bound. A profile's watermark advances only once all its pages are emitted.
    """

    collection, resource = "users", "events"
    primary_key = ["external_id", "messageId"]
    cursor_field = "timestamp"

    def __init__(self, config: ConnectorConfig, client: ProfileApiClient, profiles: UserIds):
        self._events_state = EventsState()
        self._state_message = self._events_state.message()
        self._incremental = False
        self._watermark_lock = threading.Lock()
        super().__init__(config, client, profiles)

    @property
    def state(self) -> MutableMapping[str, Any]:
        # The CDK reads this after every record: it is the message built at the last checkpoint.
        return self._state_message

    @state.setter
    def state(self, value: MutableMapping[str, Any]) -> None:
        value = dict(value or {})
        reading = value.pop("reading", None)
        self._read_progress = ReadProgress(ResumePoint.from_checkpoint(reading))
        self._events_state = EventsState.from_message(value, self._profiles.configured, datetime.now(timezone.utc))
        if isinstance(reading, Mapping) and reading.get("watermark"):
            self._events_state.resume_pass(reading["watermark"])
        self._state_message = self._events_state.message(self._keys_to_keep())

    def _keys_to_keep(self) -> Optional[np.ndarray]:
        """Profiles that stay in the state: the configured ones; with a listing, whoever this pass
        read (known only once it ends: until then every profile stays)."""
        if not self._profiles.resumable:
            return self._configured_keys
        return self._events_state.seen_this_pass() if self._reading_ended else None

    @functools.cached_property
    def _configured_keys(self) -> np.ndarray:
        return key_sets.sorted_keys([profile_key(external_id) for external_id in self._profiles.configured])

    def profiles_per_checkpoint(self) -> int:
        """A 16th of the profiles the last checkpoint named (at least CHECKPOINT_EVERY_PROFILES):
        each checkpoint names them all, so a pass writes about 17 states as large as its last."""
        profiles_in_state = sum(entry["profile_count"] for entry in self._state_message["read_through"])
        return max(CHECKPOINT_EVERY_PROFILES, profiles_in_state // USER_EVENTS_CHECKPOINTS_PER_PASS)

    def _start_reading(self, sync_mode: SyncMode) -> None:
        self._incremental = sync_mode == SyncMode.incremental
        super()._start_reading(sync_mode)

    def lower_bound(self, external_id: str) -> Optional[datetime]:
        """The oldest event this sync wants of the profile: the start date, or its watermark less the lookback."""
        bounds = [self._config.start_date] if self._config.start_date else []
        read_through = self._events_state.read_through(external_id) if self._incremental else None
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

    def records_from_items(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        records = super().records_from_items(external_id, items)
        lower_bound = self.lower_bound(external_id)
        if lower_bound is not None:
            # The server may ignore `start`: filter here as well.
            records = [record for record in records if not is_before(record.get("timestamp"), lower_bound)]
        for record in records:
            # The seed spec says messageId; real events may carry only message_id.
            if record.get("messageId") is None and record.get("message_id") is not None:
                record["messageId"] = record["message_id"]
        return records

    def wants_older_pages(self, external_id: str, page_items: list[Any]) -> bool:
        lower_bound = self.lower_bound(external_id)
        return lower_bound is None or not any(is_before(item.get("timestamp"), lower_bound) for item in page_items)

    def page_received(self, page: ApiPage) -> None:
        if self._events_state.watermark is None:
            with self._watermark_lock:
                if self._events_state.watermark is None:
                    self._events_state.watermark = watermark_from_server_date(page.server_date, datetime.now(timezone.utc))

    def profile_completed(self, done: ProfileRead) -> None:
        self._events_state.profile_read(done.external_id, done.found)

    def checkpoint_reached(self) -> None:
        message = self._events_state.message(self._keys_to_keep())
        reading = None if self._reading_ended else self._read_progress.checkpoint(self._profiles.fingerprint)
        if reading and self._profiles.resumable:
            # The pass's watermark goes along, so that a resumed attempt finishes the same pass.
            watermark = self._events_state.watermark
            message["reading"] = {**reading, **({"watermark": format_timestamp(watermark)} if watermark else {})}
        self._state_message = message


def is_before(timestamp: Any, bound: datetime) -> bool:
    """True only for a readable timestamp before `bound`; an event without one is kept, not dropped."""
    try:
        return parse_timestamp(timestamp) < bound
    except (TypeError, ValueError):
        return False
