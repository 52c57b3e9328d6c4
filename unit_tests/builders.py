"""Request and response builders for the unit tests, and a small fake Profile API.

The fake answers through requests' own seam, a transport adapter: the `api` fixture mounts
`FakeProfileApi.adapter()` on every Session the connector builds, so every GET goes through the
connector's real requests code (query encoding, headers, timeouts) to the fake instead of a socket.

Responses follow the seed OpenAPI spec (openapi/) and what Segment's docs add to it:
a cursor `{"url", "has_more", "next"}` whose last page has `has_more: false` and empty strings.
Expected URLs in the encoding tests are written out literally; `profile_path` here exists so that
the other tests can register a profile's endpoint without repeating the URL layout.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Union
from urllib.parse import parse_qs, quote, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

SPACE_ID = "spa_unit"
TOKEN = "unit-token"
BASE_URL = "https://profiles.segment.com"

USER_STREAMS = ("user_traits", "user_events", "user_external_ids", "user_metadata", "user_links")
ACCOUNT_STREAMS = ("account_traits", "account_external_ids")
ALL_STREAMS = USER_STREAMS + ACCOUNT_STREAMS
# The streams of one class of traits read the traits path too (with `class=`): FakeProfileApi answers
# by path, so they are tested apart (unit_tests/integration/test_user_trait_classes.py).
TRAIT_CLASS_STREAMS = ("user_audiences", "user_computed_traits")
# stream -> (collection, resource)
ENDPOINTS = {
    "user_traits": ("users", "traits"),
    "user_events": ("users", "events"),
    "user_external_ids": ("users", "external_ids"),
    "user_metadata": ("users", "metadata"),
    "user_links": ("users", "links"),
    "account_traits": ("accounts", "traits"),
    "account_external_ids": ("accounts", "external_ids"),
}


# --- configuration --------------------------------------------------------------------------


def config(**overrides: Any) -> dict[str, Any]:
    """A valid config: one user id, no account id, the US host; `None` removes a field."""
    values: dict[str, Any] = {
        "space_id": SPACE_ID,
        "access_token": TOKEN,
        "user_external_ids": ["user_id:u1"],
        "account_external_ids": [],
    }
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


# --- URLs -----------------------------------------------------------------------------------


def profile_path(stream: str, external_id: str, space_id: str = SPACE_ID) -> str:
    collection, resource = ENDPOINTS[stream]
    return f"/v1/spaces/{space_id}/collections/{collection}/profiles/{quote(external_id, safe=':')}/{resource}"


def profile_url(stream: str, external_id: str, base_url: str = BASE_URL, space_id: str = SPACE_ID) -> str:
    return base_url + profile_path(stream, external_id, space_id)


# --- response bodies ------------------------------------------------------------------------


def cursor(next: str = "", has_more: Optional[bool] = None, url: str = "") -> dict[str, Any]:
    """A cursor; `has_more` follows `next` unless given."""
    return {"url": url, "has_more": bool(next) if has_more is None else has_more, "next": next, "limit": 200}


def traits_page(traits: Mapping[str, Any], next: str = "", **cursor_fields: Any) -> dict[str, Any]:
    return {"traits": dict(traits), "cursor": cursor(next, **cursor_fields)}


def data_page(items: Optional[Iterable[Mapping[str, Any]]], next: str = "", with_cursor: bool = True, **cursor_fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"data": None if items is None else [dict(item) for item in items]}
    if with_cursor:
        body["cursor"] = cursor(next, **cursor_fields)
    return body


events_page = data_page
external_ids_page = data_page
links_page = data_page


def event(message_id: str, timestamp: str = "2026-11-20T10:00:00.000Z", name: str = "Order Completed", **fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        "messageId": message_id,
        "timestamp": timestamp,
        "properties": {"order": message_id},
        "context": {"library": {"name": "analytics.js"}},
        **fields,
    }


def external_id(value: str, type: str = "user_id", **fields: Any) -> dict[str, Any]:
    return {
        "id": value,
        "type": type,
        "source_id": "src_1",
        "collection": "users",
        "created_at": "2026-10-01T00:00:00Z",
        "encoding": "none",
        **fields,
    }


def link(to_collection: str, *ids: tuple[str, str]) -> dict[str, Any]:
    return {"to_collection": to_collection, "external_ids": [external_id(value, type, collection=to_collection) for type, value in ids]}


def metadata_body(segment_id: str = "use_1", wrapped: bool = False) -> dict[str, Any]:
    fields = {"segment_id": segment_id, "created_at": "2026-10-01T00:00:00Z", "updated_at": "2026-11-01T00:00:00Z"}
    return {"metadata": {**fields, "expires_at": "2027-10-01T00:00:00Z", "first_message_id": "m0"}} if wrapped else fields


def error_body(status: int) -> dict[str, Any]:
    code, message = {
        400: ("validation_error", "The request is invalid."),
        401: ("unauthorized", "The specified token is invalid."),
        403: ("forbidden", "Forbidden."),
        404: ("not_found", "Profile was not found."),
        429: ("rate_limit_error", "Too many requests."),
    }.get(status, ("internal_error", "Something went wrong."))
    return {"error": {"code": code, "message": message}}


def empty_page(stream: str) -> dict[str, Any]:
    """The empty answer of a stream's endpoint (no traits, no data)."""
    if stream.endswith("traits"):
        return traits_page({})
    if stream == "user_metadata":
        return {}
    return data_page([])


def page_of(stream: str, n: int, next: str = "", profile: str = "p") -> dict[str, Any]:
    """A one-item page of any paginated stream; the item is identifiable by `profile` and `n`."""
    if stream.endswith("traits"):
        return traits_page({f"trait_{n:03d}": f"{profile}-{n}"}, next=next)
    if stream == "user_events":
        return events_page([event(f"{profile}-m{n}", timestamp=f"2026-11-20T10:{59 - n:02d}:00Z")], next=next)
    if stream == "user_links":
        return links_page([link("accounts", ("group_id", f"{profile}-g{n}"))], next=next)
    return external_ids_page([external_id(f"{profile}-{n}")], next=next)


# --- replies --------------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP answer. `body` is JSON unless it is bytes/str; `Request-Id` is added unless given.

    `exception` (a requests exception, e.g. `requests.ReadTimeout("Read timed out.")`) stands for a
    request that got no complete answer: the fake transport raises it instead of answering.
    """

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    exception: Optional[BaseException] = None

    @classmethod
    def error(cls, status: int, **headers: str) -> "Reply":
        return cls(status, error_body(status), {key.replace("_", "-"): value for key, value in headers.items()})


ReplyLike = Union[Reply, Mapping[str, Any], BaseException]


def as_reply(value: ReplyLike) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, BaseException):
        return Reply(exception=value)
    return Reply(200, value)


class RequestHeaders(Mapping[str, str]):
    """Headers a request was sent with; names are looked up case-insensitively, as in HTTP."""

    def __init__(self, headers: Mapping[str, str]):
        self._items = {name.lower(): (name, value) for name, value in headers.items()}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(dict(self.items()))


@dataclass(frozen=True)
class SeenRequest:
    url: str
    path: str
    params: dict[str, list[str]]
    headers: Mapping[str, str]  # as sent, plus Host
    timeout: Any  # requests' (connect_timeout, read_timeout)
    at: float  # the fake clock's time when the request was made

    def param(self, name: str) -> Optional[str]:
        values = self.params.get(name)
        return values[0] if values else None


class FakeProfileApi:
    """Answers Profile API requests from what a test registered, and records every request.

    `pages(...)` serves a cursor-paginated profile: the page asked for is chosen by the `next`
    query parameter (none: the first page; `next=X`: the page after the one whose cursor gave X),
    so a connector that does not pass `next` back as given gets an error, not a page.
    `replies(...)` answers the given replies in order, the last one for ever.
    An unregistered path answers 418, which the connector reports as an unexpected answer.
    """

    def __init__(self, clock: Callable[[], float] = lambda: 0.0, base_url: str = BASE_URL):
        self._clock = clock
        self._base_url = base_url
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[SeenRequest], Reply]] = {}
        self._request_ids = itertools.count(1)
        self.seen: list[SeenRequest] = []
        # Headers every answer carries unless its Reply says otherwise, e.g. the API clock's `Date`.
        self.headers: dict[str, str] = {}

    # registration

    def pages(self, stream: str, external_id: str, *pages: Mapping[str, Any], space_id: str = SPACE_ID) -> "FakeProfileApi":
        bodies = [dict(page) for page in pages]

        def handler(request: SeenRequest) -> Reply:
            token = request.param("next")
            if token is None:
                return Reply(200, bodies[0])
            for index, body in enumerate(bodies[:-1]):
                if (body.get("cursor") or {}).get("next") == token:
                    return Reply(200, bodies[index + 1])
            return Reply(400, {"error": {"code": "invalid_request_error", "message": f"unknown cursor {token!r}"}})

        self._handlers[profile_path(stream, external_id, space_id)] = handler
        return self

    def replies(self, stream: str, external_id: str, *replies: ReplyLike, space_id: str = SPACE_ID) -> "FakeProfileApi":
        queue = [as_reply(reply) for reply in replies]
        position = itertools.count()

        def handler(_: SeenRequest) -> Reply:
            return queue[min(next(position), len(queue) - 1)]

        self._handlers[profile_path(stream, external_id, space_id)] = handler
        return self

    def handler(self, stream: str, external_id: str, answer: Callable[[SeenRequest], ReplyLike], space_id: str = SPACE_ID) -> "FakeProfileApi":
        self._handlers[profile_path(stream, external_id, space_id)] = lambda request: as_reply(answer(request))
        return self

    # inspection

    def requests_to(self, stream: Optional[str] = None, external_id: Optional[str] = None) -> list[SeenRequest]:
        prefix = None
        if stream is not None:
            collection, resource = ENDPOINTS[stream]
            if external_id is not None:
                prefix = profile_path(stream, external_id)
        with self._lock:
            seen = list(self.seen)
        if prefix is not None:
            return [request for request in seen if request.path == prefix]
        if stream is not None:
            return [
                request for request in seen if f"/collections/{collection}/profiles/" in request.path and request.path.endswith(f"/{resource}")
            ]
        return seen

    # requests' transport seam

    def adapter(self) -> "FakeAdapter":
        return FakeAdapter(self)

    def _answer(self, request: requests.PreparedRequest, timeout: Any) -> requests.Response:
        parts = urlsplit(request.url)
        seen = SeenRequest(
            url=request.url,
            path=parts.path,
            params=parse_qs(parts.query, keep_blank_values=True),
            headers=RequestHeaders({**request.headers, "Host": parts.netloc}),
            timeout=timeout,
            at=self._clock(),
        )
        with self._lock:
            self.seen.append(seen)
            handler = self._handlers.get(parts.path)
        reply = handler(seen) if handler else Reply(418, {"error": {"code": "test", "message": f"unregistered path {parts.path}"}})
        if reply.exception is not None:
            raise reply.exception
        response_headers = {"request-id": f"req-{next(self._request_ids)}"}
        response_headers.update({name.lower(): value for name, value in self.headers.items()})
        response_headers.update({name.lower(): value for name, value in reply.headers.items()})
        if isinstance(reply.body, bytes):
            body = reply.body
        elif isinstance(reply.body, str):
            body = reply.body.encode()
        else:
            response_headers.setdefault("content-type", "application/json")
            body = json.dumps(reply.body).encode()
        response_headers["content-length"] = str(len(body))
        response = requests.Response()
        response.status_code = reply.status
        response.headers = CaseInsensitiveDict(response_headers)
        response._content = body
        response.url = request.url
        response.request = request
        return response


class FakeAdapter(BaseAdapter):
    """A requests transport adapter whose every request is answered by the FakeProfileApi."""

    def __init__(self, api: FakeProfileApi):
        super().__init__()
        self._api = api

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, **_: Any) -> requests.Response:
        return self._api._answer(request, timeout)

    def close(self) -> None:
        pass


def paged_answer(stream: str, profile: str, pages: int) -> Callable[[Any], "Reply"]:
    """A handler serving `pages` pages of `page_of` for one profile, by the `next` each page gives."""
    bodies = [page_of(stream, n, next=f"{profile}/p{n + 1}" if n < pages else "", profile=profile) for n in range(1, pages + 1)]
    by_token = {None: bodies[0], **{f"{profile}/p{n}": bodies[n - 1] for n in range(2, pages + 1)}}
    return lambda request: by_token.get(request.param("next"), Reply.error(400))
