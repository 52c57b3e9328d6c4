"""The requests the connector must send, as the CDK's HttpRequest: the exact URL (the id
percent-encoded in its path), the exact query, and the credentials header.

HttpMocker compares the query exactly, so a builder starts from nothing: each test says every
parameter it expects (`limit`, `next`, `include`, `sort`, `start`). Each `with_*` returns a new
builder, so that a first page's builder can be extended into the second page's.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

from airbyte_cdk.test.mock_http import HttpRequest

SPACE_ID = "spa_unit"
ACCESS_TOKEN = "unit-token"
US_HOST = "https://profiles.segment.com"
EU_HOST = "https://profiles.euw1.segment.com"
# HTTP Basic with the token as username and an empty password: base64("unit-token:"), written
# out rather than computed, so that a mistake in how the connector builds it cannot hide here.
AUTHORIZATION = "Basic dW5pdC10b2tlbjo="


class _SpaceRequestBuilder:
    """A GET below `<host>/v1/spaces/<space>/`, with its query and the Authorization header."""

    def __init__(self, path: str):
        self._path = path
        self._host = US_HOST
        self._query: dict[str, str] = {}

    def on_host(self, host: str) -> "_SpaceRequestBuilder":
        changed = copy.copy(self)
        changed._host = host
        return changed

    def with_limit(self, limit: int) -> "_SpaceRequestBuilder":
        return self.with_param("limit", limit)

    def with_next(self, token: str) -> "_SpaceRequestBuilder":
        return self.with_param("next", token)

    def with_param(self, name: str, value: Any) -> "_SpaceRequestBuilder":
        changed = copy.copy(self)
        changed._query = {**self._query, name: str(value)}
        return changed

    def build(self) -> HttpRequest:
        return HttpRequest(
            url=f"{self._host}/v1/spaces/{SPACE_ID}/{self._path}",
            query_params=dict(self._query) or None,
            headers={"Authorization": AUTHORIZATION},
        )


class ProfileRequestBuilder(_SpaceRequestBuilder):
    """One resource of one profile: `ProfileRequestBuilder.user("traits", "email:a+b@x.com")`
    asks for `.../collections/users/profiles/email:a%2Bb%40x.com/traits`.

    The id is one path segment: everything but unreserved characters and `:` is percent-encoded
    (Segment's docs: an unencoded `+` reads as a space, `/`, `?`, `#` or `%` break the path).
    """

    @classmethod
    def user(cls, resource: str, external_id: str) -> "ProfileRequestBuilder":
        return cls("users", resource, external_id)

    @classmethod
    def account(cls, resource: str, external_id: str) -> "ProfileRequestBuilder":
        return cls("accounts", resource, external_id)

    def __init__(self, collection: str, resource: str, external_id: str):
        super().__init__(f"collections/{collection}/profiles/{quote(external_id, safe=':')}/{resource}")


class ListingRequestBuilder(_SpaceRequestBuilder):
    """The user listing (`read_all_users`): `.../collections/users/profiles?next=<offset>&limit=<n>`."""

    @classmethod
    def users(cls) -> "ListingRequestBuilder":
        return cls("collections/users/profiles")

