"""The users listing: GET /v1/spaces/{space}/collections/users/profiles?limit=&next=, the list
method Segment's docs mention, `next` an offset ("0" first)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .answers import INVALID_CURSOR, ROUTE_NOT_FOUND, ApiError
from .paging import page_cursor, page_limit

if TYPE_CHECKING:
    from .dataset import Dataset
    from .routes import ApiRequest
    from .settings import EmulatorSettings

# GET /v1/spaces/{space}/collections/users/profiles: the list method Segment's docs mention
LIST_USERS_ENDPOINT = "list_users"
# Segment docs: list methods take `limit` 1..100, default 10 ("Profile API" page, pagination)
LIST_PROFILES_MAX_LIMIT = 100
LIST_PROFILES_DEFAULT_LIMIT = 10


def list_users(dataset: Dataset, settings: EmulatorSettings, request: ApiRequest) -> dict:
    """The users' segment ids, in user order, from offset `next` ("0" or absent: the first)."""
    if settings.no_list_method:
        raise ApiError(*ROUTE_NOT_FOUND)
    maximum = min(LIST_PROFILES_MAX_LIMIT, settings.max_list_limit)
    limit = page_limit(request.query, LIST_PROFILES_DEFAULT_LIMIT, maximum)
    raw_offset = request.query.get("next") or "0"
    if not (raw_offset.isascii() and raw_offset.isdigit()):
        raise ApiError(*INVALID_CURSOR)
    offset = int(raw_offset)
    end = offset + limit
    segment_ids = dataset.user_segment_ids[offset:end]
    next_token = str(end) if end < dataset.user_count else None
    return {
        "data": [{"segment_id": segment_id} for segment_id in segment_ids],
        "cursor": page_cursor(request, limit, next_token),
    }
