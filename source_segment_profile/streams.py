"""The seven Profile API streams: one base that reads profiles, then a few lines per resource.

API reference: https://segment.com/docs/unify/profile-api/ (contract: openapi/segment-profile-api-openapi.yml).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, List, Mapping, MutableMapping, Optional, Union
from urllib.parse import quote, unquote, urlsplit

import orjson
import requests
from airbyte_cdk.models import SyncMode
from airbyte_cdk.sources.streams.http import HttpStream

from source_segment_profile.api_client import ApiPage, ProfileApiClient, decode_json_object
from source_segment_profile.concurrent_reader import ConcurrentProfileReader
from source_segment_profile.config import MAX_PAGE_SIZE, ConnectorConfig, parse_timestamp
from source_segment_profile.errors import ProfileNotFound, StateError
from source_segment_profile.masking import mask_external_id
from source_segment_profile.pagination import ProfileCursorPaginator
from source_segment_profile.profile_urls import profile_url
from source_segment_profile.progress import StreamProgress
from source_segment_profile.reader_process import ChildProcessProfileReader

# State is checkpointed after every this many profiles, so an interrupted sync resumes close to
# where it stopped instead of starting over.
CHECKPOINT_EVERY_PROFILES = 200
# How often an idle consumer (all workers waiting on the API) still logs progress.
IDLE_POLL_SECONDS = 1.0
# Segment's docs: links returns at most 20 per page.
LINKS_PAGE_SIZE = 20
# Profiles are read in a forked child process (reader_process.py): on Linux, where Airbyte runs
# connectors. Elsewhere, and in tests that give the reading a fake clock or a fake API (neither
# crosses a fork), they are read on threads of this process.
READER_IN_CHILD_PROCESS = sys.platform == "linux"


@functools.cache
def load_schema(stream_name: str) -> Mapping[str, Any]:
    """The stream's JSON schema: packaged beside this module when installed, top-level schemas/ in a checkout."""
    for folder in (Path(__file__).parent / "schemas", Path(__file__).parent.parent / "schemas"):
        path = folder / f"{stream_name}.json"
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"no schema for stream {stream_name}")


# A profile's records cross from the reader process in encoded chunks of this many, decoded one
# chunk at a time as they are emitted: a heavy profile (thousands of events) then never stands in
# the emitting process's memory all decoded at once.
RECORDS_PER_CHUNK = 200


class EncodedRecords:
    """A profile's records as orjson chunks, decoded a chunk at a time when iterated."""

    def __init__(self, chunks: list[bytes], count: int):
        self._chunks = chunks
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for chunk in self._chunks:
            yield from orjson.loads(chunk)


@dataclass(frozen=True)
class ProfileResult:
    """Everything one profile contributed to a stream, read completely."""

    external_id: str
    records: Union[list[dict[str, Any]], EncodedRecords]  # a list where read, EncodedRecords once crossed from the reader process
    pages: int
    found: bool
    newest_cursor: Optional[str] = None  # incremental streams: the newest cursor value among the records

    def __reduce__(self) -> tuple[Any, ...]:
        """How a result crosses from the reader process: records as orjson chunks, which orjson
        writes ~3.5x faster than pickle (0.37 against 1.29 us a record) and reads back as fast.
        Integers beyond 64 bits, which orjson cannot write, take pickle."""
        records = self.records
        try:
            chunks = [orjson.dumps(records[first : first + RECORDS_PER_CHUNK]) for first in range(0, len(records), RECORDS_PER_CHUNK)]  # type: ignore[index]
            records = EncodedRecords(chunks, len(self.records))
        except TypeError:
            pass
        return ProfileResult, (self.external_id, records, self.pages, self.found, self.newest_cursor)


class ProfileStream(HttpStream, ABC):
    """Reads one resource for every configured profile id, concurrently, paced by the shared budget.

    Slices are batches of CHECKPOINT_EVERY_PROFILES profiles: the CDK emits state after each. The
    profiles themselves are read by one ConcurrentProfileReader per stream read, which runs ahead
    of the batch boundaries so that workers never idle at them.
    """

    collection: ClassVar[str]  # "users" or "accounts"
    resource: ClassVar[str]  # the last path segment: traits, events, ...
    page_size_cap: ClassVar[Optional[int]] = MAX_PAGE_SIZE  # None: the endpoint is not paginated
    primary_key: Any = "external_id"

    def __init__(self, config: ConnectorConfig, client: ProfileApiClient):
        self._config = config
        self._client = client
        self._profile_results: Optional[Iterator[ProfileResult]] = None
        self._progress: Optional[StreamProgress] = None
        super().__init__()

    # --- what a leaf says -------------------------------------------------------------------

    @abstractmethod
    def items_from_page(self, page: ApiPage) -> list[Any]:
        """The items of one page (data entries, trait pairs, ...); raises page.unexpected(...) on a bad shape."""

    @abstractmethod
    def records_for_profile(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        """The records of one profile, from the items of all its pages."""

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
        params: dict[str, Any] = {}
        if self.page_size_cap:
            params["limit"] = min(self._config.page_size, self.page_size_cap)
        if next_page_token:
            params.update(next_page_token)
        return params

    def parse_response(self, response: requests.Response, **_: Any) -> Iterable[Mapping[str, Any]]:
        page = self._page_from_response(response)
        return self.records_for_profile(page.external_id, self.items_from_page(page))

    def next_page_token(self, response: requests.Response) -> Optional[Mapping[str, Any]]:
        page = self._page_from_response(response)
        token = ProfileCursorPaginator().next_token(page, len(self.items_from_page(page))) if self.page_size_cap else None
        return {"next": token} if token else None

    def _page_from_response(self, response: requests.Response) -> ApiPage:
        """The CDK-style view of a response; reading itself goes through ProfileApiClient.get_page."""
        external_id = unquote(urlsplit(response.url).path.split("/profiles/", 1)[1].split("/", 1)[0])
        page = ApiPage(
            None, response.content, response.headers.get("Request-Id"), response.url, self.name, external_id, response.status_code
        )
        return dataclasses.replace(page, body=decode_json_object(page))

    def get_json_schema(self) -> Mapping[str, Any]:
        return load_schema(self.name)

    @property
    def is_resumable(self) -> bool:
        # Without this the CDK gives a full-refresh HttpStream a resumable-full-refresh cursor that
        # ignores our slices (cdk-notes: "resumable full refresh reading one page").
        return self.supports_incremental

    # --- reading ----------------------------------------------------------------------------

    @property
    def external_ids(self) -> tuple[str, ...]:
        return self._config.user_external_ids if self.collection == "users" else self._config.account_external_ids

    def stream_slices(self, *, sync_mode: SyncMode, **_: Any) -> Iterable[Optional[Mapping[str, Any]]]:
        total = len(self.external_ids)
        for first in range(0, total, CHECKPOINT_EVERY_PROFILES):
            yield {"first_profile": first, "profile_count": min(CHECKPOINT_EVERY_PROFILES, total - first)}

    def read_records(
        self,
        sync_mode: SyncMode,
        cursor_field: Optional[List[str]] = None,
        stream_slice: Optional[Mapping[str, Any]] = None,
        stream_state: Optional[Mapping[str, Any]] = None,
    ) -> Iterable[Mapping[str, Any]]:
        if self._profile_results is None:
            self._start_reading(sync_mode)
        for _ in range(stream_slice["profile_count"]):
            result = next(self._profile_results)
            yield from result.records
            self.profile_completed(result)
            self._progress.profile_done(len(result.records), result.pages, result.found, result.external_id)
        if stream_slice["first_profile"] + stream_slice["profile_count"] >= len(self.external_ids):
            # Run the reader to its end rather than drop it: a reader process then hands back the
            # budget's state (a rate-limit pause carries over to the next stream) and exits by itself.
            if next(self._profile_results, None) is not None:
                raise RuntimeError(f"the {self.name} reader returned more profiles than were configured")
            self._progress.summary()
            self._profile_results = None

    def profile_completed(self, result: ProfileResult) -> None:
        """Called once a profile's records are all emitted; incremental streams advance their cursor here."""

    def _start_reading(self, sync_mode: SyncMode) -> None:
        self._progress = StreamProgress(
            stream=self.name,
            total_profiles=len(self.external_ids),
            counters=self._client.counters,
            budget_requests_per_second=self._config.requests_per_second,
            logger=self.logger,
        )
        reader: ConcurrentProfileReader[ProfileResult] | ChildProcessProfileReader[ProfileResult]
        if READER_IN_CHILD_PROCESS:
            reader = ChildProcessProfileReader(
                self._read_profile, self._config.max_concurrency, self._progress.log_if_due, IDLE_POLL_SECONDS, self._client
            )
        else:
            reader = ConcurrentProfileReader(self._read_profile, self._config.max_concurrency, self._progress.log_if_due, IDLE_POLL_SECONDS)
        self._profile_results = reader.results(self.external_ids)

    def _read_profile(self, external_id: str, stopping: threading.Event) -> ProfileResult:
        """Reads every page of one profile (runs on a worker thread)."""
        stream_slice = {"external_id": external_id}
        url = self.path(stream_slice=stream_slice)
        paginator = ProfileCursorPaginator()
        items: list[Any] = []
        pages = 0
        token: Optional[str] = None
        # `stopping` is set only once the consumer has stopped taking results, so a profile cut
        # short here is never emitted.
        while not stopping.is_set():
            params = self.request_params(stream_slice=stream_slice, next_page_token={"next": token} if token else None)
            try:
                page = self._client.get_page(url, params, self.name, external_id)
            except ProfileNotFound as not_found:
                self.logger.warning(
                    f"Skipping profile {mask_external_id(external_id)} in {self.name}: the Profile API answered 404 "
                    f"(Request-Id {not_found.request_id or 'none'}); check the id's type and value."
                )
                return ProfileResult(external_id, [], pages, found=False)
            pages += 1
            page_items = self.items_from_page(page)
            items.extend(page_items)
            if not self.page_size_cap or self.reached_older_data(external_id, page_items):
                break
            token = paginator.next_token(page, len(page_items))
            if token is None:
                break
        return ProfileResult(external_id, self.records_for_profile(external_id, items), pages, found=True)

    def reached_older_data(self, external_id: str, page_items: list[Any]) -> bool:
        """True when later pages can only hold data this sync does not want (incremental events)."""
        return False


class DataListStream(ProfileStream, ABC):
    """Endpoints answering `{"data": [...], "cursor": {...}}`; `data: null` means no items."""

    def items_from_page(self, page: ApiPage) -> list[Any]:
        data = page.body.get("data")
        if data is None:
            return []
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise page.unexpected("'data' is not a list of objects")
        return data

    def records_for_profile(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        # The items were decoded for this profile alone: completing them in place saves a copy per record.
        for item in items:
            item["external_id"] = external_id
        return items


class TraitsStream(ProfileStream, ABC):
    """One record per profile: `{external_id, traits}`, the traits of every page merged."""

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

    def records_for_profile(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
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

    def records_for_profile(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        return [{**item, "external_id": external_id} for item in items]


class UserLinks(DataListStream):
    """https://segment.com/docs/unify/profile-api/#get-user-links

    A link has no id of its own, so `linked_external_id` (the smallest `type:id` of the linked
    profile's ids, stable across syncs) joins `external_id` and `to_collection` as primary key.
    """

    collection, resource = "users", "links"
    page_size_cap = LINKS_PAGE_SIZE
    primary_key = ["external_id", "to_collection", "linked_external_id"]

    def records_for_profile(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        return [
            {**link, "external_id": external_id, "linked_external_id": linked_external_id(link)} for link in items
        ]


def linked_external_id(link: Mapping[str, Any]) -> str:
    ids = [f"{entry.get('type')}:{entry.get('id')}" for entry in link.get("external_ids") or [] if isinstance(entry, dict)]
    return min(ids, default="")


class UserEvents(DataListStream):
    """https://segment.com/docs/unify/profile-api/#get-user-events

    Incremental on `timestamp`, with one cursor per profile: the API keeps ~14 days of events, so
    a warehouse keeps history only by appending what is new. Events come newest first; paging stops
    at the first page that reaches back past the profile's cursor (minus the lookback window).
    The state is `{"state_version": 1, "profiles": {profile_state_key(id): timestamp}}`.
    """

    collection, resource = "users", "events"
    primary_key = ["external_id", "messageId"]
    cursor_field = "timestamp"
    STATE_VERSION = 1

    def __init__(self, config: ConnectorConfig, client: ProfileApiClient):
        self._cursors: dict[str, str] = {}
        self._state = {"state_version": self.STATE_VERSION, "profiles": self._cursors}
        self._lower_bounds: dict[str, datetime] = {}
        super().__init__(config, client)

    @property
    def state(self) -> MutableMapping[str, Any]:
        # The CDK reads this after every record: it must cost nothing, so it is one live mapping
        # whose cursors are updated in place as profiles complete (never rebuilt here).
        return self._state

    @state.setter
    def state(self, value: MutableMapping[str, Any]) -> None:
        configured = {profile_state_key(external_id) for external_id in self.external_ids}
        # Only ids still configured: a profile removed from the config drops out of the state.
        self._cursors = {key: cursor for key, cursor in read_events_state(value, configured).items() if key in configured}
        self._state = {"state_version": self.STATE_VERSION, "profiles": self._cursors}

    def _start_reading(self, sync_mode: SyncMode) -> None:
        # Bounds are fixed once per sync, before workers start, so no worker reads a cursor mid-update.
        # Only profiles that have one are held, so that memory does not grow with profiles that have none.
        bounds = ((external_id, self._lower_bound(external_id, sync_mode)) for external_id in self.external_ids)
        self._lower_bounds = {external_id: bound for external_id, bound in bounds if bound is not None}
        super()._start_reading(sync_mode)

    def _lower_bound(self, external_id: str, sync_mode: SyncMode) -> Optional[datetime]:
        bounds = [self._config.start_date] if self._config.start_date else []
        cursor = self._cursors.get(profile_state_key(external_id)) if sync_mode == SyncMode.incremental else None
        if cursor:
            # Re-read a lookback window: events can arrive late; the primary key dedups the overlap.
            bounds.append(parse_timestamp(cursor) - timedelta(seconds=self._config.events_lookback_seconds))
        return max(bounds, default=None)

    def request_params(self, stream_slice: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> MutableMapping[str, Any]:
        params = super().request_params(stream_slice=stream_slice, **kwargs)
        lower_bound = self._lower_bounds.get(stream_slice["external_id"]) if stream_slice else None
        if lower_bound:
            params["start"] = lower_bound.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return params

    def _read_profile(self, external_id: str, stopping: threading.Event) -> ProfileResult:
        result = super()._read_profile(external_id, stopping)
        records = result.records
        lower_bound = self._lower_bounds.get(external_id)
        if lower_bound is not None:
            # The server may ignore `start`: filter here as well.
            records = [record for record in records if not is_before(record.get("timestamp"), lower_bound)]
        # Found here, by the reader: the thread that emits records is the sync's bottleneck.
        newest = newest_timestamp([record["timestamp"] for record in records if isinstance(record.get("timestamp"), str)])
        return ProfileResult(external_id, records, result.pages, result.found, newest)

    def reached_older_data(self, external_id: str, page_items: list[Any]) -> bool:
        lower_bound = self._lower_bounds.get(external_id)
        return lower_bound is not None and any(is_before(item.get("timestamp"), lower_bound) for item in page_items)

    def records_for_profile(self, external_id: str, items: list[Any]) -> list[dict[str, Any]]:
        records = super().records_for_profile(external_id, items)
        for record in records:
            # The seed spec says messageId; real events may carry only message_id.
            if record.get("messageId") is None and record.get("message_id") is not None:
                record["messageId"] = record["message_id"]
        return records

    def profile_completed(self, result: ProfileResult) -> None:
        if result.newest_cursor is None:
            return
        key = profile_state_key(result.external_id)
        current = self._cursors.get(key)
        if current is None or timestamp_order(result.newest_cursor) > timestamp_order(current):
            self._cursors[key] = result.newest_cursor


def profile_state_key(external_id: str) -> str:
    """A profile's key in the user_events state: a digest of its id, not the id itself.

    Ids are often emails; the state is stored by the platform and the CDK logs every incoming
    state in full, so the state holds no id in clear. 80 bits: no collision in practice.
    """
    return hashlib.sha256(external_id.encode("utf-8")).hexdigest()[:20]


def is_before(timestamp: Any, bound: datetime) -> bool:
    """True only for a readable timestamp before `bound`; an event without one is kept, not dropped."""
    try:
        return parse_timestamp(timestamp) < bound
    except (TypeError, ValueError):
        return False


# Where an unreadable timestamp sorts: before every real one, so it never becomes a cursor.
UNREADABLE_TIMESTAMP_ORDER = datetime.min.replace(tzinfo=timezone.utc)


def newest_timestamp(timestamps: list[str]) -> Optional[str]:
    """The latest of `timestamps` (an unreadable one never wins), or None.

    Segment writes every timestamp as UTC in one shape ("2026-11-20T10:00:00.000Z"): when all have
    the same length, the T and the Z, text order is time order and only the winner needs parsing.
    """
    if not timestamps:
        return None
    shape = len(timestamps[0])
    if all(len(timestamp) == shape and timestamp[-1] == "Z" and timestamp[10:11] == "T" for timestamp in timestamps):
        newest = max(timestamps)
        if timestamp_order(newest) > UNREADABLE_TIMESTAMP_ORDER:
            return newest
    newest = max(timestamps, key=timestamp_order)
    return newest if timestamp_order(newest) > UNREADABLE_TIMESTAMP_ORDER else None


def timestamp_order(timestamp: str) -> datetime:
    """Sort key of event timestamps; an unreadable one sorts first, so it never becomes a cursor."""
    try:
        return parse_timestamp(timestamp)
    except (TypeError, ValueError):
        return UNREADABLE_TIMESTAMP_ORDER


def read_events_state(value: Optional[Mapping[str, Any]], configured_keys: Iterable[str]) -> dict[str, str]:
    """Per-profile cursors from a user_events state; a state this version cannot read is a StateError.

    Accepted: `{}`; the current `{"state_version": 1, "profiles": {key: timestamp}}`; and a single
    stream-wide `{"timestamp": ...}` (the shape a plain Airbyte incremental stream writes), which
    becomes the cursor of every configured profile.
    """
    reset_hint = "Reset the user_events stream in Airbyte (its next sync reads every event the API still keeps)."
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise StateError(f"The user_events state is {type(value).__name__}, not an object. {reset_hint}")
    if "state_version" not in value and set(value) == {"timestamp"}:
        _check_timestamp(value["timestamp"], "timestamp", reset_hint)
        return {key: value["timestamp"] for key in configured_keys}
    if value.get("state_version") != UserEvents.STATE_VERSION or not isinstance(value.get("profiles"), Mapping):
        raise StateError(
            f"The user_events state has a shape this connector version cannot read "
            f"(state_version {value.get('state_version')!r}, keys {sorted(value)[:5]}). {reset_hint}"
        )
    cursors = dict(value["profiles"])
    for key, cursor in cursors.items():
        # Keys are digests, but a hand-edited state may hold raw ids: mask them all the same.
        _check_timestamp(cursor, f"profiles[{mask_external_id(str(key))!r}]", reset_hint)
    return cursors


def _check_timestamp(value: Any, where: str, reset_hint: str) -> None:
    try:
        parse_timestamp(value)
    except (TypeError, ValueError):
        raise StateError(f"The user_events state holds {value!r} at {where}, which is not a timestamp. {reset_hint}") from None
