"""Which profiles a stream reads: the configured ids, every user the API lists, the accounts users link to.

Ids come in pages (`IdPage`), each with a position that a checkpoint can name, so that a sync
interrupted halfway through a listing of millions of users resumes where it stopped, without
reading a profile twice, and without ever holding every id in memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from urllib.parse import quote

from airbyte_cdk.models import FailureType

from source_segment_profile.api_client import ProfileApiClient
from source_segment_profile.config import ConnectorConfig
from source_segment_profile.errors import ProfileApiError, ProfileNotFound, StateError, UnexpectedResponse
from source_segment_profile.masking import profile_state_key
from source_segment_profile.pagination import ProfileCursorPaginator

# Segment's docs: "list methods ... take at least two parameters: next and limit", limit 1..100.
LIST_PAGE_SIZE = 100
LISTING_ENDPOINT = "list_users"
# The listing's `next` is an offset string starting at "0" (Segment's own code that calls it).
FIRST_LISTING_TOKEN = "0"
CONFIGURED = "configured"
LISTED = "listed"


class ListingUnavailable(ProfileApiError):
    """The space answers the user listing with 404 or 400: `read_all_users` cannot work there."""

    failure_type = FailureType.config_error


@dataclass(frozen=True)
class IdPage:
    """Profiles to read, in order, and where they start: `configured:<index>` or `listed:<token>`."""

    position: str
    ids: list[str]


def configured_pages(external_ids: tuple[str, ...], start: int = 0) -> Iterator[IdPage]:
    for first in range(start, len(external_ids), LIST_PAGE_SIZE):
        yield IdPage(f"{CONFIGURED}:{first}", list(external_ids[first : first + LIST_PAGE_SIZE]))


class UserListing:
    """Every user of the space, from `GET .../collections/users/profiles?limit=&next=`.

    Semi-documented: Segment's docs say list methods exist and call this URL, but publish no answer;
    public code that uses it in production reads `{"data": [{"segment_id": ...}], "cursor":
    {"has_more", "next"}}` and looks each profile up as `segment_id:<id>`, as this does. Each page
    is one request of the shared budget (100 users a page: 1% more requests than the profiles').
    """

    def __init__(self, config: ConnectorConfig, client: ProfileApiClient):
        self._client = client
        self._url = f"{config.base_url}/v1/spaces/{quote(config.space_id, safe='')}/collections/users/profiles"
        self._space_id = config.space_id

    def probe(self) -> None:
        """One request for one user: raises ListingUnavailable if the space does not list profiles."""
        self._page(FIRST_LISTING_TOKEN, limit_one=True)

    def pages(self, start_token: str = FIRST_LISTING_TOKEN) -> Iterator[IdPage]:
        paginator = ProfileCursorPaginator()
        token: Optional[str] = start_token
        while token is not None:
            page = self._page(token)
            data = page.body.get("data") or []
            if not isinstance(data, list) or not all(isinstance(item, dict) and isinstance(item.get("segment_id"), str) for item in data):
                raise page.unexpected("'data' is not a list of objects with a 'segment_id'")
            yield IdPage(f"{LISTED}:{token}", [f"segment_id:{item['segment_id']}" for item in data])
            token = paginator.next_token(page, len(data))

    def _page(self, token: str, limit_one: bool = False) -> Any:
        params = {"next": token, **({"limit": 1} if limit_one else {})}
        try:
            return self._client.get_page(self._url, params, LISTING_ENDPOINT, "", None if limit_one else LIST_PAGE_SIZE)
        except (ProfileNotFound, UnexpectedResponse) as error:
            status = 404 if isinstance(error, ProfileNotFound) else error.status
            if status not in (400, 404):
                raise
            raise ListingUnavailable(
                f"The Profile API of space '{self._space_id}' answered {status} to the user listing "
                f"(GET /v1/spaces/{self._space_id}/collections/users/profiles, Request-Id {error.request_id or 'none'}): "
                "listing is not available for this space. Turn 'read_all_users' off and list the user ids to read "
                "in 'user_external_ids' instead."
            ) from None


@dataclass
class _PageInProgress:
    position: str
    waiting: set[str]  # handed out, not complete
    done: set[str]


class ReadProgress:
    """How far a stream got through its pages of ids: the earliest page not yet complete, and the
    profiles already complete from that page on. A checkpoint of it lets a resumed sync skip
    exactly the profiles read, though workers complete them out of order. It holds only the
    pages in progress (a few, for a few dozen workers), never every id. The checkpoint names the
    profiles done by their state key (a digest), never their id: ids are often emails.
    """

    def __init__(self, resume_from: Optional[Mapping[str, Any]] = None):
        self._lock = threading.Lock()
        self._pages: list[_PageInProgress] = []
        self.resume_position: Optional[str] = None
        self._skip: frozenset[str] = frozenset()
        if resume_from is None or resume_from == {}:
            return
        position = resume_from.get("position") if isinstance(resume_from, Mapping) else None
        done = resume_from.get("done", []) if isinstance(resume_from, Mapping) else None
        if not isinstance(position, str) or not isinstance(done, list):
            raise StateError(f"The reading position in the state is {resume_from!r}, not {{position, done}}. Reset the stream in Airbyte.")
        # 0.2.0 wrote ids, not keys: both are skipped.
        self.resume_position, self._skip = position, frozenset(map(str, done))

    def ids(self, pages: Iterable[IdPage]) -> Iterator[str]:
        """The ids of `pages` not read before an interruption, noting each page as it is handed out."""
        for page in pages:
            wanted = [external_id for external_id in page.ids if not self._skipped(external_id)]
            with self._lock:
                self._pages.append(_PageInProgress(page.position, set(wanted), set(page.ids) - set(wanted)))
                self._forget_complete_pages()
            yield from wanted

    def _skipped(self, external_id: str) -> bool:
        return bool(self._skip) and (profile_state_key(external_id) in self._skip or external_id in self._skip)

    def profile_done(self, external_id: str) -> None:
        with self._lock:
            for page in self._pages:
                if external_id in page.waiting:
                    page.waiting.discard(external_id)
                    page.done.add(external_id)
                    break
            self._forget_complete_pages()

    def checkpoint(self) -> Optional[dict[str, Any]]:
        """{"position", "done"}: where to start again and the ids there to skip; None when no page is open."""
        with self._lock:
            if not self._pages:
                return None
            done = set().union(*(page.done for page in self._pages))
            return {"position": self._pages[0].position, "done": sorted(map(profile_state_key, done))}

    def _forget_complete_pages(self) -> None:
        # Only the last page may be complete and still kept: it says where the next one starts.
        while len(self._pages) > 1 and not self._pages[0].waiting:
            self._pages.pop(0)


class LinkedAccounts:
    """The accounts linked to the users read in this sync, each once, by the smallest `type:id` of
    its link (the `linked_external_id` of user_links). Collected while user_links reads, or read
    by the account streams themselves when user_links was not selected: once per sync either way.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[str, None] = {}
        self.complete = False

    def add(self, linked_external_id: str) -> None:
        with self._lock:
            self._ids.setdefault(linked_external_id)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)


class UserIds:
    """The users a user stream reads: the configured ids, then every listed user if `read_all_users`."""

    def __init__(self, config: ConnectorConfig, listing: Optional[UserListing]):
        self._config = config
        self.listing = listing

    @property
    def resumable(self) -> bool:
        """A listing of millions of users is worth resuming; a configured list is read again."""
        return self.listing is not None

    @property
    def total(self) -> Optional[int]:
        return None if self.listing else len(self._config.user_external_ids)

    @property
    def configured(self) -> tuple[str, ...]:
        return self._config.user_external_ids

    def pages(self, resume_position: Optional[str] = None) -> Iterator[IdPage]:
        kind, _, where = (resume_position or f"{CONFIGURED}:0").partition(":")
        if kind == CONFIGURED and where.isdigit():
            yield from configured_pages(self._config.user_external_ids, int(where))
            if self.listing:
                yield from self.listing.pages()
        elif kind == LISTED and self.listing:
            yield from self.listing.pages(where)
        else:
            raise StateError(f"The reading position {resume_position!r} in the state is not one this configuration has. Reset the stream in Airbyte.")


class AccountIds:
    """The accounts an account stream reads: the configured ids, then (with `accounts_from_user_links`)
    every account linked to the users read, each once."""

    def __init__(self, config: ConnectorConfig, linked: Optional["LinkedAccounts"], read_links: Callable[[], None]):
        self._config = config
        self._linked = linked
        self._read_links = read_links
        self.resumable = False

    @property
    def configured(self) -> tuple[str, ...]:
        return self._config.account_external_ids

    @property
    def total(self) -> Optional[int]:
        return len(self._all())

    def pages(self, resume_position: Optional[str] = None) -> Iterator[IdPage]:
        yield from configured_pages(tuple(self._all()))

    def _all(self) -> list[str]:
        ids = dict.fromkeys(self._config.account_external_ids)
        if self._linked is not None:
            if not self._linked.complete:
                self._read_links()
            ids.update(dict.fromkeys(self._linked.ids()))
        return list(ids)
