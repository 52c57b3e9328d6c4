"""Following the Profile API's cursor through the pages of one profile.

The cursor is `{"url", "has_more", "next", "limit"?}`; `next` is opaque (a trait name for traits, a
base64 token for events) and is passed back as it came, never computed. The last page has
`has_more: false` and empty strings. `url` is not followed: rebuilding the request from our own
URL plus `next` keeps `limit`, `include` and `start` whatever shape `url` has.
"""

from __future__ import annotations

import logging
from typing import Optional

from source_segment_profile.errors import RepeatedCursor, describe_request
from source_segment_profile.pages import ApiPage

logger = logging.getLogger("airbyte")
# Empty pages that say has_more, followed in a row before the profile fails: a few are plausible
# (a filter that matched nothing on a page), dozens are a server that loops.
MAX_EMPTY_PAGES_IN_A_ROW = 5


def cursor_token(page: ApiPage) -> Optional[str]:
    """The `next` token to send for the page after `page`, or None when it was the last."""
    cursor = page.body.get("cursor")
    if not isinstance(cursor, dict) or cursor.get("has_more") is not True:
        return None
    token = cursor.get("next")
    if not token:
        logger.warning(
            f"{describe_request(page.endpoint, page.external_id, page.request_id)} says has_more but gives no 'next' cursor: stopping after this "
            "page; later pages of this profile, if any, are not read."
        )
        return None
    if not isinstance(token, str):
        raise page.unexpected(f"cursor 'next' is {type(token).__name__}, not a string")
    return token


class PageGuard:
    """What one profile's pages must not do: hand back a cursor twice (following it would emit
    pages again or loop for ever), or go on with empty pages that say has_more without end (an
    empty page is followed: a server filtering `include` or `start` may answer one)."""

    def __init__(self) -> None:
        self._seen_tokens: set[str] = set()
        self._empty_pages_in_a_row = 0

    def follow(self, token: str, page: ApiPage) -> None:
        """Raises when following `token` from `page` would loop; else notes both."""
        if token in self._seen_tokens:
            raise RepeatedCursor(
                f"{describe_request(page.endpoint, page.external_id, page.request_id)} returned a cursor it had already returned for this profile; following it would read "
                "the same pages again. Report it to Segment support with the Request-Id."
            )
        self._seen_tokens.add(token)
        # Every paginated answer holds its items in `data` (a list) or `traits` (an object).
        empty = not (page.body.get("data") or page.body.get("traits"))
        self._empty_pages_in_a_row = self._empty_pages_in_a_row + 1 if empty else 0
        if self._empty_pages_in_a_row > MAX_EMPTY_PAGES_IN_A_ROW:
            raise page.unexpected(
                f"{self._empty_pages_in_a_row} pages in a row were empty but said has_more; stopping here would silently "
                "drop whatever follows"
            )

