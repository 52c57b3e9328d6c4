"""The Profile API's answers as the CDK's HttpResponse, built from templates.

Templates (unit_tests/resource/http/response/<stream>.json) hold one realistic answer per stream,
in the shapes of the seed OpenAPI spec (openapi/) and Segment's docs: a cursor
`{"url", "has_more", "next", "limit"}` whose last page has `has_more: false` and empty strings, and
errors `{"error": {"code", "message"}}`. A builder starts from the template as the last page and
says only what a test changes.
"""

from __future__ import annotations

import copy
import functools
import json
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Mapping, Optional

from airbyte_cdk.test.mock_http import HttpResponse
from airbyte_cdk.test.mock_http.response_builder import FieldPath, NestedPath, Path, RecordBuilder, create_record_builder, find_template

# The error codes and messages Segment's docs and the seed spec show for each status.
ERRORS = {
    400: ("validation_error", "The request is invalid."),
    401: ("unauthorized", "The specified token is invalid."),
    403: ("forbidden", "Forbidden."),
    404: ("not_found", "Profile was not found."),
    408: ("request_timeout", "The request timed out."),
    429: ("too_many_requests", "Too many requests. Please retry later."),
    500: ("internal_error", "An internal error occurred."),
    502: ("bad_gateway", "Bad gateway."),
    503: ("service_unavailable", "Service unavailable."),
    504: ("gateway_timeout", "Gateway timeout."),
}


@functools.cache
def _template(stream: str) -> Mapping[str, Any]:
    return find_template(stream, __file__)


def template(stream: str) -> dict[str, Any]:
    """A fresh copy of the stream's template: builders change it in place."""
    return copy.deepcopy(_template(stream))


class ResponseBuilder:
    """An answer: a JSON body, a status, headers (`Request-Id`, `Date`, `Retry-After`)."""

    def __init__(self, body: Any, status: int = 200):
        self._body = body
        self._status = status
        self._headers: dict[str, str] = {}

    def with_header(self, name: str, value: str) -> "ResponseBuilder":
        self._headers[name] = value
        return self

    def with_request_id(self, request_id: str) -> "ResponseBuilder":
        return self.with_header("Request-Id", request_id)

    def with_date(self, moment: datetime) -> "ResponseBuilder":
        """The API's clock: user_events takes its sync's watermark from the first answer's Date."""
        return self.with_header("Date", format_datetime(moment, usegmt=True))

    def build(self) -> HttpResponse:
        return HttpResponse(json.dumps(self._body), self._status, dict(self._headers))


class PageResponseBuilder(ResponseBuilder):
    """A page of a paginated endpoint; the last one unless `with_next` says there is another."""

    def with_next(self, token: str) -> "PageResponseBuilder":
        # `url` is whatever the server writes; the connector rebuilds the next request from its own URL and `next`.
        self._body["cursor"].update(has_more=True, next=token, url=f"?next={token}")
        return self


class TraitsResponseBuilder(PageResponseBuilder):
    """`{"traits": {...}, "cursor": {...}}`: the template's traits unless `with_traits`."""

    @classmethod
    def of(cls, stream: str) -> "TraitsResponseBuilder":
        return cls(template(stream))

    def with_traits(self, traits: Mapping[str, Any] | None) -> "TraitsResponseBuilder":
        self._body["traits"] = None if traits is None else dict(traits)
        return self


class DataResponseBuilder(PageResponseBuilder):
    """`{"data": [...], "cursor": {...}}` (events, external ids, links): no item until `with_record`."""

    @classmethod
    def of(cls, stream: str) -> "DataResponseBuilder":
        body = template(stream)
        body["data"] = []
        return cls(body)

    def with_record(self, record: RecordBuilder) -> "DataResponseBuilder":
        return self.with_item(record.build())

    def with_item(self, item: Mapping[str, Any]) -> "DataResponseBuilder":
        """An item as it is, for shapes the template does not have."""
        self._body["data"].append(dict(item))
        return self

    def with_null_data(self) -> "DataResponseBuilder":
        self._body["data"] = None
        return self


class MetadataResponseBuilder(ResponseBuilder):
    """The seed spec's flat metadata, or Segment docs' `{"metadata": {...}}` once `wrapped`."""

    @classmethod
    def of(cls, segment_id: str) -> "MetadataResponseBuilder":
        return cls({**template("user_metadata"), "segment_id": segment_id})

    def wrapped(self, **more_fields: Any) -> "MetadataResponseBuilder":
        self._body = {"metadata": {**self._body, **more_fields}}
        return self


class ErrorResponseBuilder(ResponseBuilder):
    """`{"error": {"code", "message"}}`: the status's code, and its message unless another is given."""

    @classmethod
    def of(cls, status: int, message: Optional[str] = None) -> "ErrorResponseBuilder":
        code, default_message = ERRORS[status]
        return cls({"error": {"code": code, "message": message or default_message}}, status)

    def with_retry_after(self, value: str) -> "ErrorResponseBuilder":
        return self.with_header("Retry-After", value)


def _record(stream: str, id_path: Path, cursor_path: FieldPath | None = None) -> RecordBuilder:
    return create_record_builder(template(stream), FieldPath("data"), record_id_path=id_path, record_cursor_path=cursor_path)


def event_record() -> RecordBuilder:
    """The template's event: `.with_id(messageId)`, `.with_cursor(timestamp)`."""
    return _record("user_events", FieldPath("messageId"), FieldPath("timestamp"))


def external_id_record(stream: str) -> RecordBuilder:
    """The template's external id of `stream` (user or account): `.with_id(value)`."""
    return _record(stream, FieldPath("id"))


def link_record() -> RecordBuilder:
    """The template's link to an account: `.with_id(value)` sets its first external id's value."""
    return _record("user_links", NestedPath(["external_ids", 0, "id"]))


def listed_user() -> RecordBuilder:
    """A user of the listing (`read_all_users`): `.with_id(segment_id)`."""
    return _record("list_users", FieldPath("segment_id"))
