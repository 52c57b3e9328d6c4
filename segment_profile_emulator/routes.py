"""The Profile API's routes: which profile resource a path names, and the answers of traits,
events, external_ids, metadata and links, for users and accounts (listing.py lists users)."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qs, unquote

from .answers import INVALID_CURSOR, PROFILE_NOT_FOUND, ApiError
from .formats import to_json_bytes
from .listing import LIST_USERS_ENDPOINT, list_users
from .paging import LAST_PAGE_CURSOR, EventsSelection, offset_page, page_cursor, page_limit, split_names
from .profiles import AccountProfile, UserProfile
from .settings import MAX_PAGE_LIMIT

if TYPE_CHECKING:
    from .clock import EmulatorClock
    from .dataset import Dataset
    from .settings import EmulatorSettings

# (collection, resource) -> endpoint name used in stats and the request log. Accounts have no
# events or metadata; their links are not in the seed spec but Segment's docs show them.
ENDPOINTS = {
    ("users", "traits"): "user_traits",
    ("users", "events"): "user_events",
    ("users", "external_ids"): "user_external_ids",
    ("users", "metadata"): "user_metadata",
    ("users", "links"): "user_links",
    ("accounts", "traits"): "account_traits",
    ("accounts", "external_ids"): "account_external_ids",
    ("accounts", "links"): "account_links",
}
ENDPOINT_NAMES = (*ENDPOINTS.values(), LIST_USERS_ENDPOINT)
TRAITS_DEFAULT_LIMIT = 10  # Segment docs: traits default to 10 per page
DEFAULT_LIMIT = 100
LINKS_MAX_PAGE = 20  # Segment docs: links returns at most 20
TRAIT_CLASSES = ("audience", "computed_trait")


class Route(NamedTuple):
    space_id: str
    collection: str
    external_id: str | None  # None when the raw segment cannot name a profile, or for the listing
    resource: str  # "profiles" for the listing
    endpoint: str
    path: str  # the raw path, echoed in cursor urls


def parse_route(path: str) -> Route | None:
    """/v1/spaces/{space}/collections/{collection}/profiles/{external_id}/{resource}, or the users
    listing /v1/spaces/{space}/collections/users/profiles, else None."""
    parts = path.split("/")
    if len(parts) == 7 and parts[:3] == ["", "v1", "spaces"] and parts[4:] == ["collections", "users", "profiles"]:
        return Route(unquote(parts[3]), "users", None, "profiles", LIST_USERS_ENDPOINT, path)
    if len(parts) != 9 or parts[:3] != ["", "v1", "spaces"] or parts[4] != "collections" or parts[6] != "profiles":
        return None
    endpoint = ENDPOINTS.get((parts[5], parts[8]))
    if endpoint is None:
        return None
    raw_external_id = parts[7]
    try:
        # Only %2B stands for "+": a bare "+" never matches, as with the real API.
        external_id = None if "+" in raw_external_id else unquote(raw_external_id, errors="strict")
    except UnicodeDecodeError:  # percent-encoded bytes that are not UTF-8
        external_id = None
    return Route(unquote(parts[3]), parts[5], external_id, parts[8], endpoint, path)


class ApiRequest(NamedTuple):
    route: Route
    query: dict[str, str]
    host: str  # the Host header, to make absolute cursor urls


def parse_query(query_string: str) -> dict[str, str]:
    return {name: values[-1] for name, values in parse_qs(query_string, keep_blank_values=True).items()}


class ProfileApi:
    """Answers profile requests from the dataset; knows nothing of HTTP, faults or rate limits."""

    def __init__(self, dataset: Dataset, clock: EmulatorClock, settings: EmulatorSettings):
        self.dataset = dataset
        self.clock = clock
        self.settings = settings

    def answer(self, request: ApiRequest) -> bytes:
        """The body of a 200 answer; raises ApiError for a 4xx."""
        route = request.route
        if route.endpoint == LIST_USERS_ENDPOINT:
            return to_json_bytes(list_users(self.dataset, self.settings, request))
        profile = None if route.external_id is None else self.dataset.find(route.collection, route.external_id)
        if profile is None:
            raise ApiError(*PROFILE_NOT_FOUND)
        answer = getattr(self, f"_{route.resource}")(profile, request)
        return answer if isinstance(answer, bytes) else to_json_bytes(answer)

    def _list_limit(self, request: ApiRequest, default: int) -> int:
        """`limit` of a listing other than traits: 1..max_list_limit."""
        return page_limit(request.query, default, self.settings.max_list_limit)

    def _traits(self, profile: UserProfile | AccountProfile, request: ApiRequest) -> dict:
        query = request.query
        limit = page_limit(query, TRAITS_DEFAULT_LIMIT, MAX_PAGE_LIMIT)
        values, details = self.dataset.traits_of(profile, self.clock.now_ms)
        # a message may have added a trait; else the names the profile keeps save a list per page
        names = profile.trait_names if len(values) == len(profile.trait_names) else list(values)
        if query.get("include"):
            wanted = set(split_names(query["include"]))
            names = [name for name in names if name in wanted]
        trait_class = query.get("class")
        if trait_class is not None:
            if trait_class not in TRAIT_CLASSES:
                raise ApiError(400, "validation_error", "class must be audience or computed_trait")
            names = [name for name in names if details[name].trait_class == trait_class]
        start = 0
        if query.get("next"):  # the traits cursor is the name of the first trait of the page
            if query["next"] not in values:
                raise ApiError(*INVALID_CURSOR)
            start = bisect.bisect_left(names, query["next"])
        page = names[start : start + limit]
        if query.get("verbose", "").lower() == "true":
            traits = {
                name: {"value": values[name], "source_id": details[name].source_id, "updated_at": details[name].updated_at}
                for name in page
            }
        else:
            traits = {name: values[name] for name in page}
        has_more = start + limit < len(names)
        return {"traits": traits, "cursor": page_cursor(request, limit, names[start + limit] if has_more else None)}

    def _events(self, user: UserProfile, request: ApiRequest) -> dict | bytes:
        limit = self._list_limit(request, DEFAULT_LIMIT)
        token = request.query.get("next")
        if token:
            selection = EventsSelection.from_cursor(token)
        else:
            selection = EventsSelection.from_query(request.query, self.clock.now_ms)
        window = self.dataset.visible_events(user, selection.clock_ms)
        events = window.events
        # start is inclusive, end exclusive
        low = 0 if selection.start_ms is None else bisect.bisect_left(window.timestamps, selection.start_ms)
        high = len(events) if selection.end_ms is None else bisect.bisect_left(window.timestamps, selection.end_ms)
        if selection.include is not None or selection.exclude is not None:
            events = events[low:high]
            if selection.include is not None:
                events = [event for event in events if event.name in selection.include]
            if selection.exclude is not None:
                events = [event for event in events if event.name not in selection.exclude]
            low, high = 0, len(events)
        # Without filters a page is sliced straight out of the window: a user with 100,000 events
        # costs a page its own events, not a copy of all of them.
        count = max(0, high - low)
        if not count:
            return {"data": None, "cursor": dict(LAST_PAGE_CURSOR)}
        first, stop = min(selection.offset, count), min(selection.offset + limit, count)
        if selection.ascending:
            page = events[low + first : low + stop]
        else:  # newest first
            page = events[high - stop : high - first][::-1]
        next_token = selection.cursor_at(selection.offset + limit) if selection.offset + limit < count else None
        body = b",".join([event.json for event in page])
        return b'{"data":[' + body + b'],"cursor":' + to_json_bytes(page_cursor(request, limit, next_token)) + b"}"

    def _external_ids(self, profile: UserProfile | AccountProfile, request: ApiRequest) -> dict:
        items = self.dataset.external_ids_of(profile, self.clock.now_ms)
        return offset_page(request, len(items), items.__getitem__, "external_ids", self._list_limit(request, DEFAULT_LIMIT))

    def _metadata(self, user: UserProfile, request: ApiRequest) -> dict:
        return self.dataset.user_metadata(user, self.clock.now_ms)

    def _links(self, profile: UserProfile | AccountProfile, request: ApiRequest) -> dict:
        limit = min(self._list_limit(request, DEFAULT_LIMIT), LINKS_MAX_PAGE)
        if isinstance(profile, UserProfile):
            links = self.dataset.user_links(profile, self.clock.now_ms)
            # users are built with 3 accounts at most: one page (group messages may add more)
            if not profile.links_have_cursor:
                return {"data": links}
            return offset_page(request, len(links), links.__getitem__, "links", limit)
        # an account of a big space has thousands of users: only the page's are looked up
        account, now_ms = profile, self.clock.now_ms
        return offset_page(
            request,
            self.dataset.account_link_count(account, now_ms),
            lambda page: self.dataset.account_links(account, page.start, page.stop, now_ms),
            "links",
            limit,
        )
