"""Which profiles a stream reads: the configured ids, every user the API lists, the accounts users link to.

Ids come in pages (`IdPage`), each with a position that a checkpoint can name, so that a sync
interrupted halfway through a listing of millions of users resumes where it stopped, without
reading a profile twice, and without ever holding every id in memory.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from airbyte_cdk.models import FailureType

from source_segment_profile.api_client import PageRequest, ProfileApiClient
from source_segment_profile.config import ConnectorConfig
from source_segment_profile.errors import ProfileApiError, ProfileNotFound, UnexpectedResponse
from source_segment_profile.masking import profile_state_key
from source_segment_profile.pages import ApiPage, page_of
from source_segment_profile.pagination import PageGuard, cursor_token
from source_segment_profile.profile_urls import USER_LISTING_PATH, space_url

# Segment's docs: "list methods ... take at least two parameters: next and limit", limit 1..100.
LIST_PAGE_SIZE = 100
LISTING_ENDPOINT = "list_users"
# The listing's `next` is an offset string starting at "0" (Segment's own code that calls it).
FIRST_LISTING_TOKEN = "0"
CONFIGURED = "configured"
LISTED = "listed"

logger = logging.getLogger("airbyte")


class ListingUnavailable(ProfileApiError):
    """The space answers the user listing with 404 or 400: `read_all_users` cannot work there."""

    failure_type = FailureType.config_error


@dataclass(frozen=True)
class IdPage:
    """Profiles to read, in order, and where they start: `configured:<index>` or `listed:<token>`.

    `only`: when resuming, the keys (masking.profile_state_key) of the ids of this page still to
    read; None reads every id."""

    position: str
    ids: list[str]
    only: Optional[frozenset[str]] = None


def configured_pages(external_ids: tuple[str, ...], start: int = 0) -> Iterator[IdPage]:
    for first in range(start, len(external_ids), LIST_PAGE_SIZE):
        yield IdPage(f"{CONFIGURED}:{first}", list(external_ids[first : first + LIST_PAGE_SIZE]))


def ids_fingerprint(external_ids: Iterable[str]) -> str:
    """A digest of an id list, so that a checkpoint can tell whether its positions still fit."""
    return profile_state_key("\n".join(external_ids))


@dataclass(frozen=True)
class ResumePoint:
    """Where an interrupted attempt's checkpoint says to go on.

    Written since 0.3.0: `{"position", "open_pages", "pending", "configured"}`: from `position`,
    the first `open_pages` pages are read only for their `pending` profiles (those not complete:
    never more than the workers plus a page, however slow one profile is), then every page;
    `configured` is the fingerprint of the configured ids the positions index.
    Written by 0.2.0: `{"position", "done"}`: from `position`, every profile but those `done`.
    """

    position: str
    open_pages: int = 0
    pending: frozenset[str] = frozenset()
    done: frozenset[str] = frozenset()
    configured: Optional[str] = None

    @classmethod
    def from_checkpoint(cls, reading: Any) -> Optional["ResumePoint"]:
        """The resume point of a checkpoint, or None (with a warning) when it cannot be one."""
        if not reading:
            return None
        position = reading.get("position") if isinstance(reading, Mapping) else None
        try:
            if isinstance(position, str) and "pending" in reading:
                return cls(position, int(reading["open_pages"]), frozenset(map(str, reading["pending"])), configured=str(reading["configured"]))
            if isinstance(position, str) and isinstance(reading.get("done", []), list):
                return cls(position, done=frozenset(map(str, reading.get("done", []))))
        except (KeyError, TypeError, ValueError):
            pass
        logger.warning(
            f"The state's reading position has a shape this version does not know (keys {sorted(reading)[:5] if isinstance(reading, Mapping) else type(reading).__name__}): "
            "this pass starts again from its first profile. Every watermark in the state is kept, and no profile is skipped."
        )
        return None


@dataclass
class _PageInProgress:
    position: str
    waiting: set[str]  # not complete: handed out or still to hand out
    done: set[str]


class ReadProgress:
    """How far a stream got through its pages of ids, as a checkpoint names it (ResumePoint): the
    earliest page not yet complete, how many pages are open from it, and their profiles not yet
    complete. Workers complete profiles out of order; this holds only the pages in progress (a few,
    for a few dozen workers), never every id, and the checkpoint stays as small when one profile
    is slow: it names the profiles still to read, not those done. It names them by their state key
    (a digest), never their id: ids are often emails.
    """

    def __init__(self, resume_from: Optional[ResumePoint] = None):
        self._lock = threading.Lock()
        self._pages: list[_PageInProgress] = []
        self.resume_from = resume_from

    def ids(self, pages: Iterable[IdPage]) -> Iterator[str]:
        """The ids of `pages` not read before an interruption, noting each page as it is handed out."""
        skip = self.resume_from.done if self.resume_from else frozenset()
        for page in pages:
            wanted = [external_id for external_id in page.ids if not self._skipped(external_id, page.only, skip)]
            with self._lock:
                self._pages.append(_PageInProgress(page.position, set(wanted), set(page.ids) - set(wanted)))
                self._forget_complete_pages()
            yield from wanted

    @staticmethod
    def _skipped(external_id: str, only: Optional[frozenset[str]], done: frozenset[str]) -> bool:
        if only is None and not done:
            return False
        key = profile_state_key(external_id)
        # 0.2.0 wrote ids in `done`, not keys: both are skipped.
        return (only is not None and key not in only) or key in done or external_id in done

    def profile_done(self, external_id: str) -> None:
        with self._lock:
            for page in self._pages:
                if external_id in page.waiting:
                    page.waiting.discard(external_id)
                    page.done.add(external_id)
                    break
            self._forget_complete_pages()

    def checkpoint(self, configured_fingerprint: str) -> Optional[dict[str, Any]]:
        """The reading position (ResumePoint's current form); None when no page is open."""
        with self._lock:
            if not self._pages:
                return None
            pending = set().union(*(page.waiting for page in self._pages))
            return {
                "position": self._pages[0].position,
                "open_pages": len(self._pages),
                "pending": sorted(map(profile_state_key, pending)),
                "configured": configured_fingerprint,
            }

    def _forget_complete_pages(self) -> None:
        # Only the last page may be complete and still kept: it says where the next one starts.
        while len(self._pages) > 1 and not self._pages[0].waiting:
            self._pages.pop(0)


class UserListing:
    """Every user of the space, from `GET .../collections/users/profiles?limit=&next=`.

    Semi-documented: Segment's docs say list methods exist and call this URL, but publish no answer;
    public code that uses it in production reads `{"data": [{"segment_id": ...}], "cursor":
    {"has_more", "next"}}` and looks each profile up as `segment_id:<id>`, as this does. Each page
    is one request of the shared budget (100 users a page: 1% more requests than the profiles').
    """

    def __init__(self, config: ConnectorConfig, client: ProfileApiClient):
        self._client = client
        self._url = space_url(config.base_url, config.space_id) + USER_LISTING_PATH
        self._space_id = config.space_id
        # This sync's pages, by token: (their ids, the next page's token). The first user stream
        # reads the listing from the API; the others replay it, so that a sync pages through it
        # once, not once a stream (at a million users, 10,000 requests each), and every stream
        # reads the same users. ~100 bytes a user: 101 MB at a million (tracemalloc).
        self._read: dict[str, tuple[tuple[str, ...], Optional[str]]] = {}

    def probe(self) -> None:
        """One request for one user: raises ListingUnavailable if the space does not list profiles."""
        self._page(FIRST_LISTING_TOKEN, limit_one=True)

    def pages(self, start_token: str = FIRST_LISTING_TOKEN) -> Iterator[IdPage]:
        guard = PageGuard()
        token: Optional[str] = start_token
        while token is not None:
            if token in self._read:
                ids, next_token = self._read[token]
            else:
                page = self._page(token)
                data = page.body.get("data") or []
                if not isinstance(data, list) or not all(isinstance(item, dict) and isinstance(item.get("segment_id"), str) for item in data):
                    raise page.unexpected("'data' is not a list of objects with a 'segment_id'")
                ids = tuple(f"segment_id:{item['segment_id']}" for item in data)
                next_token = cursor_token(page)
                if next_token is not None:
                    guard.follow(next_token, page)
                self._read[token] = (ids, next_token)
            yield IdPage(f"{LISTED}:{token}", list(ids))
            token = next_token

    def _page(self, token: str, limit_one: bool = False) -> ApiPage:
        params = {"next": token, **({"limit": 1} if limit_one else {})}
        try:
            response = self._client.get(PageRequest(self._url, params, LISTING_ENDPOINT, "", None if limit_one else LIST_PAGE_SIZE))
            return page_of(response, LISTING_ENDPOINT, "")
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

    @property
    def fingerprint(self) -> str:
        return ids_fingerprint(self._config.user_external_ids)

    def sample(self, size: int) -> list[str]:
        """The first `size` users: the configured ones, then listed ones (a page of the listing at a time)."""
        return list(itertools.islice((external_id for page in self.pages() for external_id in page.ids), size))

    def pages(self, resume: Optional[ResumePoint] = None) -> Iterator[IdPage]:
        """Every page of ids to read; from `resume` on when it still fits this configuration.

        A position that no longer fits (the configured ids changed, or the listing was turned off)
        never skips a profile: that part of the pass starts again, with a warning.
        """
        kind, _, where = resume.position.partition(":") if resume else (CONFIGURED, "", "0")
        same_ids = resume is not None and resume.configured == self.fingerprint
        if resume is not None and kind == CONFIGURED and same_ids and where.isdigit():
            yield from self._resumed(configured_pages(self._config.user_external_ids, int(where)), resume)
            yield from self._listed_pages()
            return
        if resume is not None and kind == LISTED and self.listing is not None:
            if not same_ids:
                self._warn_restart(resume, "the configured ids are all read again, then the listing goes on where it stopped")
                yield from configured_pages(self._config.user_external_ids)
            yield from self._resumed(self.listing.pages(where), resume)
            return
        if resume is not None:
            self._warn_restart(resume, "the pass starts again from its first profile")
        yield from configured_pages(self._config.user_external_ids)
        yield from self._listed_pages()

    def _listed_pages(self) -> Iterator[IdPage]:
        if self.listing is not None:
            yield from self.listing.pages()

    @staticmethod
    def _resumed(pages: Iterator[IdPage], resume: ResumePoint) -> Iterator[IdPage]:
        """`pages`, the first `resume.open_pages` of them limited to the profiles still pending."""
        for number, page in enumerate(pages):
            yield dataclasses.replace(page, only=resume.pending) if number < resume.open_pages else page

    def _warn_restart(self, resume: ResumePoint, what: str) -> None:
        if resume.configured is None:
            why = "it was written by connector 0.2.0, which did not note which list of configured ids it indexes"
        elif resume.configured != self.fingerprint:
            why = "the configured ids changed since"
        else:
            why = "it does not fit this configuration (the listing was turned off, or the position is not one this version writes)"
        logger.warning(
            f"The interrupted attempt's reading position {resume.position!r} is not used: {why}, so {what}. Profiles it "
            "had already read may be delivered again (append + dedup removes them); none is skipped, and every "
            "watermark in the state is kept."
        )


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

    def sample(self, size: int) -> list[str]:
        """The first `size` configured accounts: linked ones would take reading every user's links."""
        return list(self._config.account_external_ids[:size])

    def pages(self, resume: Optional[ResumePoint] = None) -> Iterator[IdPage]:
        yield from configured_pages(tuple(self._all()))

    def _all(self) -> list[str]:
        ids = dict.fromkeys(self._config.account_external_ids)
        if self._linked is not None:
            if not self._linked.complete:
                self._read_links()
            ids.update(dict.fromkeys(self._linked.ids()))
        return list(ids)
