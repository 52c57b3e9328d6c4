"""The connector's configuration: parsed once, checked once, then passed down as a typed object.

JSON schema (spec.json) checks types; this module checks what a schema cannot express and turns
every problem into a `config_error` whose message names the field and the offending value
(never the access token).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Optional
from urllib.parse import urlsplit

from airbyte_cdk.models import FailureType
from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_segment_profile.masking import mask_external_id

REGION_HOSTS = {
    # Segment Profile API hosts (Profile API docs, "Regional endpoints").
    "us": "https://profiles.segment.com",
    "eu": "https://profiles.euw1.segment.com",
}

# Segment product limits: 100 requests/s per space, shared with every other caller of the space
# (personalisation services too), so the default leaves a fifth of it to them.
DEFAULT_REQUESTS_PER_SECOND = 80.0
# Requests in flight needed to use a budget = rate x latency: 100/s x up to 0.3 s (Segment's p95 is
# under 0.2 s). Idle workers only wait on the budget, so the default errs high.
DEFAULT_MAX_CONCURRENCY = 32
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_RATE_LIMIT_MAX_WAIT_MINUTES = 10.0
# Mobile SDKs send queued events hours or days after they happened; an event that reaches the API
# later than the lookback after its timestamp is never read. A day covers a phone offline
# overnight; the API keeps events ~14 days, so a longer lookback than that reads nothing more.
DEFAULT_EVENTS_LOOKBACK_HOURS = 24.0
MAX_EVENTS_LOOKBACK_HOURS = 14 * 24.0
# The seed OpenAPI spec allows limit 1..200 on every paginated endpoint; every page costs one
# request of the space's budget, so ask for the largest.
MAX_PAGE_SIZE = 200

# Profiles whose traits type the trait columns at discover: 50 requests per traits stream, well
# under a second of the space's 100 requests/s; enough to see every trait a space commonly sets.
DEFAULT_TRAIT_COLUMNS_SAMPLE_SIZE = 50

# skip_unchanged_profiles trusts the metadata's updated_at, which Segment moves with every message
# but (undocumented) perhaps not with a recomputed trait or a merge: a pass that reads every profile
# this often bounds how old such a change can be in the destination. A week is half the ~14 days
# the API keeps events, so a late event that did not move the metadata is still there to read.
DEFAULT_FULL_PASS_EVERY_DAYS = 7

LOOPBACK_HOSTS = {"localhost"}


class ConfigError(AirbyteTracedException):
    """A configuration problem the user must fix; reported as `config_error`, never retried."""

    def __init__(self, message: str):
        super().__init__(message=message, internal_message=message, failure_type=FailureType.config_error)


@dataclass(frozen=True)
class ConnectorConfig:
    space_id: str
    access_token: str
    base_url: str
    user_external_ids: tuple[str, ...]
    account_external_ids: tuple[str, ...]
    trait_names: tuple[str, ...]
    start_date: Optional[datetime]
    requests_per_second: float
    max_concurrency: int
    request_timeout_seconds: float
    max_retries: int
    rate_limit_max_wait_seconds: float
    events_lookback_seconds: float
    page_size: int
    read_all_users: bool = False
    accounts_from_user_links: bool = False
    region: str = "us"
    trait_columns_sample_size: int = 0
    skip_unchanged_profiles: bool = False
    full_pass_every_days: int = DEFAULT_FULL_PASS_EVERY_DAYS  # 0: never

    @property
    def full_pass_every(self) -> Optional[timedelta]:
        """How old the last full pass may be before a skipping sync reads every profile again (None: never)."""
        return timedelta(days=self.full_pass_every_days) if self.full_pass_every_days else None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def space(self) -> str:
        """`space 'spa_1' (region us, profiles.segment.com)`: what a not-found error names."""
        return f"space '{self.space_id}' (region {self.region}, {self.host})"


def parse_config(raw: Mapping[str, Any]) -> ConnectorConfig:
    """Checks a raw config mapping and returns the typed config, or raises ConfigError."""
    space_id = _required_string(raw, "space_id")
    access_token = _required_string(raw, "access_token", secret=True)
    region = raw.get("region") or "us"
    if region not in REGION_HOSTS:
        raise ConfigError(f"Config field 'region' is {region!r}; it must be one of: {', '.join(sorted(REGION_HOSTS))}.")
    base_url = _base_url(raw.get("api_base_url"), region)
    user_ids = _external_ids(raw, "user_external_ids")
    account_ids = _external_ids(raw, "account_external_ids")
    read_all_users = _flag(raw, "read_all_users")
    accounts_from_user_links = _flag(raw, "accounts_from_user_links")
    if not user_ids and not account_ids and not read_all_users:
        raise ConfigError(
            "Config fields 'user_external_ids' and 'account_external_ids' are both empty and 'read_all_users' is off: "
            "list at least one profile id such as 'user_id:abc123' or 'group_id:acme', or turn on 'read_all_users'."
        )
    trait_names = raw.get("trait_names") or []
    if not isinstance(trait_names, list) or not all(isinstance(name, str) and name for name in trait_names):
        raise ConfigError(f"Config field 'trait_names' must be a list of non-empty trait names, got {trait_names!r}.")
    page_size = _number(raw, "page_size", MAX_PAGE_SIZE, integer=True)
    if page_size > MAX_PAGE_SIZE:
        raise ConfigError(f"Config field 'page_size' is {page_size}; the Profile API allows at most {MAX_PAGE_SIZE}.")
    return ConnectorConfig(
        space_id=space_id,
        access_token=access_token,
        base_url=base_url,
        user_external_ids=user_ids,
        account_external_ids=account_ids,
        trait_names=tuple(dict.fromkeys(trait_names)),
        start_date=_start_date(raw.get("start_date")),
        requests_per_second=_number(raw, "requests_per_second", DEFAULT_REQUESTS_PER_SECOND),
        max_concurrency=_number(raw, "max_concurrency", DEFAULT_MAX_CONCURRENCY, integer=True),
        request_timeout_seconds=_number(raw, "request_timeout_seconds", DEFAULT_REQUEST_TIMEOUT_SECONDS),
        max_retries=_number(raw, "max_retries", DEFAULT_MAX_RETRIES, integer=True, allow_zero=True),
        rate_limit_max_wait_seconds=60 * _number(raw, "rate_limit_max_wait_minutes", DEFAULT_RATE_LIMIT_MAX_WAIT_MINUTES),
        events_lookback_seconds=_events_lookback_seconds(raw),
        page_size=page_size,
        read_all_users=read_all_users,
        accounts_from_user_links=accounts_from_user_links,
        region=region,
        trait_columns_sample_size=_number(raw, "trait_columns_sample_size", DEFAULT_TRAIT_COLUMNS_SAMPLE_SIZE, integer=True, allow_zero=True),
        skip_unchanged_profiles=_flag(raw, "skip_unchanged_profiles"),
        full_pass_every_days=_number(raw, "full_pass_every_days", DEFAULT_FULL_PASS_EVERY_DAYS, integer=True, allow_zero=True),
    )


def _flag(raw: Mapping[str, Any], field: str) -> bool:
    value = raw.get(field, False)
    if not isinstance(value, bool):
        raise ConfigError(f"Config field '{field}' is {value!r}; it must be true or false.")
    return value


SEGMENT_ID_PREFIX = "segment_id:"


def ids_segment_would_not_match(external_ids: Iterable[str]) -> list[str]:
    """Ids with surrounding whitespace or upper-case letters, which Segment never matches.

    Segment's docs (since July 2025): "Make Profile API queries using a lowercase external_id.
    Queries with an external_id in other casing won't return any profiles." They are read as
    given (the user may know better), with a warning.
    """
    return [
        external_id
        for external_id in external_ids
        if external_id != external_id.strip()
        # Segment's own segment ids are mixed case (use_7KTDD...): only external ids must be lower-case.
        or (external_id != external_id.lower() and not external_id.startswith(SEGMENT_ID_PREFIX))
    ]


def _required_string(raw: Mapping[str, Any], field: str, secret: bool = False) -> str:
    value = raw.get(field)
    if not isinstance(value, str) or not value.strip():
        shown = "" if secret or value is None else f" (got {value!r})"
        raise ConfigError(f"Config field '{field}' is missing or empty{shown}: copy it from Unify > Unify settings > API access.")
    if value != value.strip():
        what = "" if secret else f" {value!r}"
        raise ConfigError(f"Config field '{field}'{what} has leading or trailing whitespace; paste the value without it.")
    return value


def _base_url(override: Optional[str], region: str) -> str:
    if not override:
        return REGION_HOSTS[region]
    parts = urlsplit(override)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"Config field 'api_base_url' is {override!r}; it must look like 'https://profiles.segment.com'.")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            f"Config field 'api_base_url' is {override!r}; give scheme, host and port only "
            "(the connector appends /v1/spaces/<space_id>/...)."
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"Config field 'api_base_url' is {override!r}: plain http is only allowed to localhost, 127.0.0.1 "
            "or [::1] (a local emulator); use https."
        )
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(hostname: str) -> bool:
    if hostname in LOOPBACK_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return address in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


def _external_ids(raw: Mapping[str, Any], field: str) -> tuple[str, ...]:
    values = raw.get(field) or []
    if not isinstance(values, list):
        raise ConfigError(f"Config field '{field}' must be a list of 'type:value' ids, got {type(values).__name__}.")
    for position, value in enumerate(values):
        if not isinstance(value, str):
            raise ConfigError(f"Config field '{field}' item {position} is {value!r}; it must be a 'type:value' string.")
        id_type, separator, id_value = value.partition(":")
        if not separator or not id_type.strip() or not id_value or id_type != id_type.strip():
            raise ConfigError(
                f"Config field '{field}' item {position} is {mask_external_id(value)!r}; profile ids are "
                "'type:value', e.g. 'user_id:abc123', 'email:jane@example.com' or 'group_id:acme'."
            )
    # Duplicates would read the same profile twice; dict keeps the first occurrence's order.
    return tuple(dict.fromkeys(values))


def _number(raw: Mapping[str, Any], field: str, default: float, integer: bool = False, allow_zero: bool = False) -> Any:
    value = raw.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"Config field '{field}' is {value!r}; it must be {kind}.")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise ConfigError(f"Config field '{field}' is {value!r}; it must be {bound}.")
    return int(value) if integer else float(value)


def _events_lookback_seconds(raw: Mapping[str, Any]) -> float:
    """`events_lookback_hours`, or the older `events_lookback_minutes` when only that is set."""
    if raw.get("events_lookback_hours") is None and raw.get("events_lookback_minutes") is not None:
        field, hours = "events_lookback_minutes", _number(raw, "events_lookback_minutes", 0, allow_zero=True) / 60
    else:
        field, hours = "events_lookback_hours", _number(raw, "events_lookback_hours", DEFAULT_EVENTS_LOOKBACK_HOURS, allow_zero=True)
    if hours > MAX_EVENTS_LOOKBACK_HOURS:
        raise ConfigError(
            f"Config field '{field}' is {raw[field]!r}; at most {MAX_EVENTS_LOOKBACK_HOURS:g} hours (14 days): "
            "the Profile API keeps no older events."
        )
    return hours * 3600


def _start_date(value: Optional[str]) -> Optional[datetime]:
    if value in (None, ""):
        return None
    try:
        parsed = parse_timestamp(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"Config field 'start_date' is {value!r}; use an ISO 8601 date-time such as '2026-11-01T00:00:00Z'."
        ) from None
    return parsed.astimezone(timezone.utc)


def parse_timestamp(value: str) -> datetime:
    """Parses an ISO 8601 timestamp; a naive one is taken as UTC (Segment timestamps are UTC)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
