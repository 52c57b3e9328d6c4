"""What the server answers a profile request: the Outcome it decides on, and the API's error
answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .formats import to_json_bytes

if TYPE_CHECKING:
    from .faults import RetryAfter

SERVER_ERRORS = {
    500: ("internal_error", "Internal server error."),
    502: ("bad_gateway", "Bad gateway."),
    503: ("service_unavailable", "Service unavailable, try again later."),
}


def error_body(code: str, message: str) -> bytes:
    return to_json_bytes({"error": {"code": code, "message": message}})


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.body = error_body(code, message)


# (status, code, message) of the errors raised in several places
PROFILE_NOT_FOUND = (404, "not_found", "Profile was not found.")
ROUTE_NOT_FOUND = (404, "not_found", "The requested route was not found.")
INVALID_CURSOR = (400, "invalid_request_error", "The next cursor is invalid.")


def invalid_limit(maximum: int) -> tuple[int, str, str]:
    return (400, "validation_error", f"limit must be between 1 and {maximum}")


@dataclass
class Outcome:
    """What the server decided to do with one profile request."""

    endpoint: str | None = None
    space_id: str | None = None
    external_id: str | None = None
    query: dict = field(default_factory=dict)
    status: int | None = None  # None: the connection is reset without a response
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    cut: str | None = None  # "truncate" or "reset_mid_body": only half the body is sent
    faults: list[str] = field(default_factory=list)
    delay_seconds: float = 0.0
    retry_after: RetryAfter | None = None  # a 429's Retry-After, written when the answer is sent

    def fail(self, error: ApiError) -> Outcome:
        self.status, self.body = error.status, error.body
        return self
