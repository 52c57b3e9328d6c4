"""Following the Profile API's cursor through the pages of one profile."""

from __future__ import annotations

import logging
from typing import Optional

from source_segment_profile.api_client import ApiPage
from source_segment_profile.errors import RepeatedCursor, describe_request

logger = logging.getLogger("airbyte")
# Empty pages that say has_more, followed in a row before the profile fails: a few are plausible
# (a filter that matched nothing on a page), dozens are a server that loops.
MAX_EMPTY_PAGES_IN_A_ROW = 5


class ProfileCursorPaginator:
    """Says which `next` token to send for the following page of one profile, or that it was the last.

    The cursor is `{"url", "has_more", "next", "limit"?}`; `next` is opaque (a trait name for traits, a
    base64 token for events) and is passed back as it came, never computed. The last page has
    `has_more: false` and empty strings. Reading stops when `has_more` is false, `next` is empty or
    a page is empty; a token seen before for the same profile is an error, since following it
    would emit pages twice or loop for ever. `url` is not followed: rebuilding the request from our
    own URL plus `next` keeps `limit`, `include` and `start` whatever shape `url` has.

    An empty page that says `has_more` is followed (a server filtering `include` or `start` may
    well answer one), but not for ever: MAX_EMPTY_PAGES_IN_A_ROW of them fail the profile.
    """

    def __init__(self) -> None:
        self._seen_tokens: set[str] = set()
        self._empty_pages_in_a_row = 0

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
        if not isinstance(token, str):
            raise page.unexpected(f"cursor 'next' is {type(token).__name__}, not a string")
        if token in self._seen_tokens:
            raise RepeatedCursor(
                f"{describe_request(page.endpoint, page.external_id, page.request_id)} returned a cursor it had "
                "already returned for this profile; following it would read the same pages again. "
                "Report it to Segment support with the Request-Id."
            )
        self._seen_tokens.add(token)
        self._empty_pages_in_a_row = self._empty_pages_in_a_row + 1 if items_on_page == 0 else 0
        if self._empty_pages_in_a_row > MAX_EMPTY_PAGES_IN_A_ROW:
            raise page.unexpected(
                f"{self._empty_pages_in_a_row} pages in a row were empty but said has_more; stopping here would "
                "silently drop whatever follows"
            )
        return token
