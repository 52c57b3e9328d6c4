"""The typed failures of a sync, each with a message that says what happened and what to do.

Every message names the endpoint (stream), the masked profile id and Segment's `Request-Id`
where there is one: Segment support asks for the Request-Id.
"""

from __future__ import annotations

from typing import Optional

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_segment_profile.masking import mask_external_id, mask_id_list

BODY_EXCERPT_CHARS = 200


def describe_request(endpoint: str, external_id: str, request_id: Optional[str]) -> str:
    profile = f" for profile {mask_external_id(external_id)}" if external_id else ""
    return f"{endpoint}{profile} (Request-Id {request_id or 'none'})"


def body_excerpt(body: bytes) -> str:
    text = body[:BODY_EXCERPT_CHARS].decode("utf-8", errors="replace")
    return text + ("..." if len(body) > BODY_EXCERPT_CHARS else "")


class ProfileNotFound(Exception):
    """The API answered 404 for a profile: it is skipped with a warning, the sync goes on."""

    def __init__(self, request_id: Optional[str]):
        super().__init__("profile not found")
        self.request_id = request_id


class ProfileApiError(AirbyteTracedException):
    failure_type: FailureType = FailureType.system_error

    def __init__(self, message: str):
        super().__init__(message=message, internal_message=message, failure_type=self.failure_type)


class CredentialsRejected(ProfileApiError):
    """401/403: the token is wrong or not allowed on this space. Retrying cannot help."""

    failure_type = FailureType.config_error


class RateLimitExhausted(ProfileApiError):
    """429s went on for longer than the configured total wait."""

    failure_type = FailureType.transient_error


class TransientApiError(ProfileApiError):
    """5xx, resets, truncated bodies or timeouts that outlasted the retries."""

    failure_type = FailureType.transient_error


class TransportMisconfigured(ProfileApiError):
    """TLS, proxy or URL errors: the connection cannot work as configured. Retrying cannot help."""

    failure_type = FailureType.config_error


class FeatureUnavailable(ProfileApiError):
    """A 400 about `class`: the space has no audiences or computed traits to filter by."""

    failure_type = FailureType.config_error


class ProfilesNotFound(ProfileApiError):
    """Every profile a stream looked up answered 404: the ids, the space or the region is wrong."""

    failure_type = FailureType.config_error


def profiles_not_found(what: str, space: str, missing: list[str]) -> ProfilesNotFound:
    """The error for a lookup where every profile answered 404: `what` says which ("12 profiles of user_traits")."""
    return ProfilesNotFound(
        f"None of the {what} was found in {space}: every lookup answered 404 ({mask_id_list(missing)}). "
        "Check that 'space_id' and 'region' are those of the access token's Unify space, and that the ids exist "
        "there, written 'type:value' in lower case (Segment matches lower-case ids only)."
    )


class UnexpectedResponse(ProfileApiError):
    """A 4xx other than 401/403/404/429, or a body that is not the JSON the API documents."""

    failure_type = FailureType.system_error

    def __init__(self, message: str, status: Optional[int] = None, request_id: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.request_id = request_id


class RepeatedCursor(ProfileApiError):
    """The API handed back a cursor it had already given for this profile: following it would loop."""

    failure_type = FailureType.system_error


class StateError(AirbyteTracedException):
    """A state the connector cannot use at all. Its message says what to do, and never advises
    clearing the stream's data: the API keeps ~14 days of events, the warehouse keeps the rest."""

    def __init__(self, message: str):
        super().__init__(message=message, internal_message=message, failure_type=FailureType.config_error)
