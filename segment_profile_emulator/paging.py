"""Pages and cursors: `limit`, the opaque `next` tokens, the events cursor that pins its window, and
the cursor object an answer carries."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any, Callable, NamedTuple
from urllib.parse import quote, urlencode

from .answers import INVALID_CURSOR, ApiError, invalid_limit
from .formats import is_count, parse_timestamp, to_json_bytes

if TYPE_CHECKING:
    from .routes import ApiRequest

LAST_PAGE_CURSOR = {"url": "", "has_more": False, "next": ""}


def page_limit(query: dict[str, str], default: int, maximum: int) -> int:
    raw = query.get("limit")
    if raw is None:
        return min(default, maximum)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise ApiError(*invalid_limit(maximum))
    return int(raw)


def split_names(raw: str) -> list[str]:
    return [name.strip() for name in raw.split(",") if name.strip()]


def encode_cursor(fields_: dict) -> str:
    """An opaque `next`: urlsafe base64 of the JSON state of the listing, without padding."""
    return base64.urlsafe_b64encode(to_json_bytes(fields_)).decode().rstrip("=")


def cursor_state(token: str) -> Any:
    """What encode_cursor put in `token`; None if it is not such a token."""
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        return None


def decode_cursor(token: str, kind: str) -> dict:
    state = cursor_state(token)
    if not isinstance(state, dict) or state.get("kind") != kind or not is_count(state.get("offset")):
        raise ApiError(*INVALID_CURSOR)
    return state


def _is_name_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


class EventsSelection(NamedTuple):
    """Which events a listing serves. Pinned in the cursor, so later pages see the same window
    even if the clock moves: an events cursor is a snapshot taken at its first page."""

    clock_ms: int  # the events visible at this clock (arrived, and within retention)
    start_ms: int | None
    end_ms: int | None
    ascending: bool
    include: list[str] | None
    exclude: list[str] | None
    offset: int

    @classmethod
    def from_query(cls, query: dict[str, str], clock_ms: int) -> EventsSelection:
        sort = query.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise ApiError(400, "validation_error", "sort must be asc or desc")
        bounds = []
        for name in ("start", "end"):
            raw = query.get(name)
            try:
                bounds.append(None if raw in (None, "") else parse_timestamp(raw))
            except ValueError:
                raise ApiError(400, "validation_error", f"{name} must be an ISO 8601 timestamp") from None
        include = split_names(query["include"]) if query.get("include") else None
        exclude = split_names(query["exclude"]) if query.get("exclude") else None
        return cls(clock_ms, *bounds, sort == "asc", include, exclude, 0)

    @classmethod
    def from_cursor(cls, token: str) -> EventsSelection:
        state = decode_cursor(token, "events")
        if set(state) != {"kind", *cls._fields}:
            raise ApiError(*INVALID_CURSOR)
        selection = cls(**{name: state[name] for name in cls._fields})
        valid = (
            is_count(selection.clock_ms)
            and all(bound is None or is_count(bound) for bound in (selection.start_ms, selection.end_ms))
            and isinstance(selection.ascending, bool)
            and all(names is None or _is_name_list(names) for names in (selection.include, selection.exclude))
        )
        if not valid:
            raise ApiError(*INVALID_CURSOR)
        return selection

    def cursor_at(self, offset: int) -> str:
        return encode_cursor({"kind": "events", **self._replace(offset=offset)._asdict()})


def offset_page(
    request: ApiRequest, total: int, items_in: Callable[[slice], list], kind: str, limit: int
) -> dict:
    """A page of `total` items from the cursor's offset; `items_in(slice)` gives the page's items."""
    offset = decode_cursor(request.query["next"], kind)["offset"] if request.query.get("next") else 0
    end = offset + limit
    next_token = encode_cursor({"kind": kind, "offset": end}) if end < total else None
    return {"data": items_in(slice(offset, end)), "cursor": page_cursor(request, limit, next_token)}


def page_cursor(request: ApiRequest, limit: int, next_token: str | None) -> dict:
    if next_token is None:
        return {**LAST_PAGE_CURSOR, "limit": limit}
    return {"url": page_url(request, limit=limit, next=next_token), "has_more": True, "next": next_token, "limit": limit}


def page_url(request: ApiRequest, **changes: Any) -> str:
    """The url of `request` with `changes` to its query, last. Relative for users and absolute
    for accounts: the real API has been seen to answer both, and a client must follow either."""
    params = {name: value for name, value in request.query.items() if name not in changes}
    params.update(changes)
    url = f"{request.route.path}?{urlencode(params, quote_via=quote)}"
    if request.route.collection == "accounts":
        url = f"http://{request.host}{url}"
    return url
