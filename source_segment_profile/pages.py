"""How a 2xx answer of the Profile API becomes a page: its body decoded exactly, once.

parse_response and next_page_token both read a page; `page_of` decodes the body the first time
and keeps the page on the response for the second.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import orjson
import requests

from source_segment_profile.errors import UnexpectedResponse, body_excerpt, describe_request

# orjson parses integers exactly within [-2**63, 2**64) and silently turns the rest into floats;
# traits hold such numbers. Those have 20+ digits, or 19 after a minus sign. The body's digits are
# mapped to "0" and everything else but "-" to " " (bytes.translate, one C pass), and two substring
# searches decide. A match inside a string only costs the slower exact parser.
DIGITS_AS_ZEROS = bytes(b"0"[0] if chr(byte).isdigit() and byte < 128 else byte if byte == b"-"[0] else b" "[0] for byte in range(256))
TWENTY_DIGITS = b"0" * 20
NEGATIVE_NINETEEN_DIGITS = b"-" + b"0" * 19
# A JSON text can only carry a lone UTF-16 surrogate as an escape, \uD800 to \uDFFF.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class ApiPage:
    """A decoded 2xx answer, with what an error about it would need to name."""

    body: dict[str, Any]
    raw: bytes
    request_id: Optional[str]
    endpoint: str
    external_id: str
    status: int
    server_date: Optional[str] = None  # the answer's Date header: the API's clock

    def unexpected(self, reason: str) -> UnexpectedResponse:
        return unexpected_answer(self.raw, self.status, self.endpoint, self.external_id, self.request_id, reason)


def unexpected_answer(raw: bytes, status: int, endpoint: str, external_id: str, request_id: Optional[str], reason: str) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"Unexpected answer (HTTP {status}) from {describe_request(endpoint, external_id, request_id)}: "
        f"{reason}. Body starts: {body_excerpt(raw)!r}. If this persists, contact Segment support with the Request-Id."
    )


def page_of(response: requests.Response, endpoint: str, external_id: str) -> ApiPage:
    """The response's page, decoded on first use and kept on the response."""
    page = getattr(response, "profile_api_page", None)
    if page is None:
        raw, request_id = response.content, response.headers.get("request-id")
        body = decode_json_object(raw, lambda reason: unexpected_answer(raw, response.status_code, endpoint, external_id, request_id, reason))
        page = ApiPage(body, raw, request_id, endpoint, external_id, response.status_code, response.headers.get("date"))
        response.profile_api_page = page
    return page


def decode_json_object(raw: bytes, unexpected: Callable[[str], UnexpectedResponse]) -> dict[str, Any]:
    """The page's raw body as a JSON object, or the error that says it is not one.

    orjson is several times faster; the stdlib parser takes the bodies orjson cannot read exactly
    (integers beyond 64 bits) or at all (lone UTF-16 surrogate escapes, which JavaScript clients
    send in traits, and bytes that are not UTF-8). Strings that cannot be UTF-8 are delivered
    with U+FFFD in place of what cannot be encoded, so that one odd trait never fails a sync.
    """
    digits = raw.translate(DIGITS_AS_ZEROS)
    body: Any = None
    if TWENTY_DIGITS not in digits and NEGATIVE_NINETEEN_DIGITS not in digits:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    if body is None:
        try:
            body = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            raise unexpected("the body is not JSON") from None
        if SURROGATE_ESCAPE.search(raw):
            body = without_lone_surrogates(body)
    if not isinstance(body, dict):
        raise unexpected("the body is not a JSON object")
    return body


def without_lone_surrogates(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            # Through UTF-16, valid pairs join into one character; lone halves become U+FFFD.
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, dict):
        return {without_lone_surrogates(key): without_lone_surrogates(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_lone_surrogates(item) for item in value]
    return value


