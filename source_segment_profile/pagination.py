"""Following the Profile API's cursor through the pages of one profile."""

from __future__ import annotations

import logging
from typing import Optional

from source_segment_profile.api_client import ApiPage
from source_segment_profile.errors import RepeatedCursor, describe_request

logger = logging.getLogger("airbyte")


class ProfileCursorPaginator:
    """Says which `next` token to send for the following page of one profile, or that it was the last.

    The cursor is `{"url", "has_more", "next", "limit"?}`; `next` is opaque (a trait name for traits, a
    base64 token for events) and is passed back as it came, never computed. The last page has
    `has_more: false` and empty strings. Reading stops when `has_more` is false, `next` is empty or
    a page is empty; a token seen before for the same profile is an error, since following it
    would emit pages twice or loop for ever. `url` is not followed: rebuilding the request from our
    own URL plus `next` keeps `limit`, `include` and `start` whatever shape `url` has.
    """

    def __init__(self) -> None:
        self._seen_tokens: set[str] = set()

    def next_token(self, page: ApiPage, items_on_page: int) -> Optional[str]:
        cursor = page.body.get("cursor")
        if not isinstance(cursor, dict) or cursor.get("has_more") is not True:
            return None
        token = cursor.get("next")
        if not token:
            logger.warning(
                f"{describe_request(page.endpoint, page.external_id, page.request_id)} says has_more but gives "
                "no 'next' cursor: stopping after this page; later pages of this profile, if any, are not read."
            )
            return None
        if items_on_page == 0:
            return None
        if not isinstance(token, str):
            raise page.unexpected(f"cursor 'next' is {type(token).__name__}, not a string")
        if token in self._seen_tokens:
            raise RepeatedCursor(
                f"{describe_request(page.endpoint, page.external_id, page.request_id)} returned a cursor it had "
                "already returned for this profile; following it would read the same pages again. "
                "Report it to Segment support with the Request-Id."
            )
        self._seen_tokens.add(token)
        return token
