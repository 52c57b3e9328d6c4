"""The source: checks the config, probes the credentials, and says which streams exist."""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Iterator, List, Mapping, Optional, Tuple

from airbyte_cdk.models import AirbyteCatalog, AirbyteConnectionStatus, AirbyteMessage, Status
from airbyte_cdk.sources import AbstractSource
from airbyte_cdk.sources.streams import Stream
from airbyte_cdk.utils.airbyte_secrets_utils import add_to_secrets
from airbyte_cdk.sources.utils.casing import camel_to_snake

from source_segment_profile.api_client import PageRequest, ProfileApiClient, basic_auth_header
from source_segment_profile.config import ConfigError, ConnectorConfig, ids_segment_would_not_match, parse_config
from source_segment_profile.errors import CredentialsRejected, ProfileApiError, ProfileNotFound, TransientApiError, profiles_not_found
from source_segment_profile.masking import mask_id_list, register_configured_ids
from source_segment_profile.profile_changes import ProfileChanges
from source_segment_profile.profile_ids import AccountIds, LinkedAccounts, UserIds, UserListing
from source_segment_profile.progress import unmatchable_ids_warning
from source_segment_profile.pages import page_of
from source_segment_profile.profile_urls import profile_path, space_url
from source_segment_profile.rate_budget import RateBudget
from source_segment_profile.streams import (
    AccountExternalIds,
    AccountTraits,
    TraitsStream,
    UserAudiences,
    UserComputedTraits,
    UserEvents,
    UserExternalIds,
    UserLinks,
    UserMetadata,
    UserTraits,
)

USER_STREAMS = (UserTraits, UserEvents, UserExternalIds, UserMetadata, UserLinks, UserAudiences, UserComputedTraits)
ACCOUNT_STREAMS = (AccountTraits, AccountExternalIds)
# The stream names users select (the CDK names a stream after its class: UserTraits -> user_traits).
STREAM_NAMES = tuple(camel_to_snake(stream.__name__) for stream in USER_STREAMS + ACCOUNT_STREAMS)
ACCOUNT_STREAM_NAMES = STREAM_NAMES[len(USER_STREAMS) :]
# check must answer within seconds, not after a sync's worth of retries.
CHECK_TIMEOUT_SECONDS = 15.0
CHECK_MAX_RETRIES = 1
# check looks up this many configured profiles of each collection at most, until one is found:
# enough to tell a wrong space, region or environment (none found) from a few stale ids.
CHECK_PROBED_PROFILES = 3


class SourceSegmentProfile(AbstractSource):
    def check(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteConnectionStatus:
        # Overridden so that the message reaches the user as written, not as a quoted repr.
        succeeded, message = self.check_connection(logger, config)
        if succeeded:
            return AirbyteConnectionStatus(status=Status.SUCCEEDED)
        return AirbyteConnectionStatus(status=Status.FAILED, message=message)

    def check_connection(self, logger: logging.Logger, config: Mapping[str, Any]) -> Tuple[bool, Optional[str]]:
        """Validates the config, then makes one request to prove that the token and the space work."""
        try:
            parsed = load_config(config)
        except ConfigError as error:
            return False, error.message
        probe_config = dataclasses.replace(
            parsed,
            max_retries=CHECK_MAX_RETRIES,
            request_timeout_seconds=min(parsed.request_timeout_seconds, CHECK_TIMEOUT_SECONDS),
            rate_limit_max_wait_seconds=min(parsed.rate_limit_max_wait_seconds, CHECK_TIMEOUT_SECONDS),
        )
        client = ProfileApiClient(probe_config, RateBudget(parsed.requests_per_second))
        unmatchable = ids_segment_would_not_match(parsed.user_external_ids + parsed.account_external_ids)
        if unmatchable:
            logger.warning(f"check: {unmatchable_ids_warning(unmatchable)}")
        try:
            for collection, external_ids in (("users", parsed.user_external_ids), ("accounts", parsed.account_external_ids)):
                probe_profiles(client, parsed, collection, external_ids, logger)
            if parsed.read_all_users:
                UserListing(parsed, client).probe()
        except CredentialsRejected as error:
            return False, error.message
        except TransientApiError as error:
            return False, f"Could not reach the Profile API: {error.message}"
        except ProfileApiError as error:
            return False, error.message
        return True, None

    def discover(self, logger: logging.Logger, config: Mapping[str, Any]) -> AirbyteCatalog:
        """The catalog, with the typed trait columns of a sample of profiles (trait_columns.py)."""
        streams = self.streams(config)
        for stream in streams:
            if isinstance(stream, TraitsStream):
                stream.discover_trait_columns()
        return AirbyteCatalog(streams=[stream.as_airbyte_stream() for stream in streams])

    def streams(self, config: Mapping[str, Any]) -> List[Stream]:
        parsed = load_config(config)
        client = ProfileApiClient(parsed, RateBudget(parsed.requests_per_second))
        users = UserIds(parsed, UserListing(parsed, client) if parsed.read_all_users else None)
        linked = LinkedAccounts() if parsed.accounts_from_user_links else None
        changes = ProfileChanges() if parsed.skip_unchanged_profiles else None
        user_links = UserLinks(parsed, client, users, changes, linked)
        accounts = AccountIds(parsed, linked, user_links.read_links_only)
        user_streams = [user_links if stream is UserLinks else stream(parsed, client, users, changes) for stream in USER_STREAMS]
        if changes is not None:
            changes.read_with(next(stream for stream in user_streams if isinstance(stream, UserMetadata)).read_pages)
        return user_streams + [stream(parsed, client, accounts) for stream in ACCOUNT_STREAMS]

    def read(self, logger: logging.Logger, config: Mapping[str, Any], catalog: Any, state: Any = None) -> Iterator[AirbyteMessage]:
        """Before any profile request: a space that does not list users fails the sync at once
        when `read_all_users` is on, with the message that says what to do. The streams' order is
        otherwise the catalog's (sort is stable)."""
        parsed = load_config(config)
        if parsed.read_all_users:
            UserListing(parsed, ProfileApiClient(parsed, RateBudget(parsed.requests_per_second))).probe()
        # Account streams last when they take the accounts user_links collected: they do not then
        # read every user's links a second time. user_metadata first when skipping unchanged users:
        # the metadata it reads tells the other streams which users changed (profile_changes.py).
        catalog.streams.sort(
            key=lambda configured: (
                parsed.accounts_from_user_links and configured.stream.name in ACCOUNT_STREAM_NAMES,
                not (parsed.skip_unchanged_profiles and configured.stream.name == "user_metadata"),
            )
        )
        for stream_state in state or []:
            if stream_state.stream is not None and stream_state.stream.stream_state is not None:
                name = stream_state.stream.stream_descriptor.name
                logger.info(f"Incoming state of {name}: {describe_state(stream_state.stream.stream_state.__dict__)}.")
        summarized = CdkStateLineDropped()
        logger.addFilter(summarized)
        try:
            yield from super().read(logger, config, catalog, state)
        finally:
            logger.removeFilter(summarized)


class CdkStateLineDropped(logging.Filter):
    """The CDK logs each incoming stream state in full ("Setting state of ..."): at a million
    profiles that is a 7 MB log line. `read` logs a summary of it instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Setting state of "))


def describe_state(stream_state: Mapping[str, Any]) -> str:
    """`2,048 bytes, state_version 3, 1,000 profiles in 2 watermark groups, last full pass at '…',
    resuming an interrupted attempt at 'configured:200'`."""
    parts = [f"{len(json.dumps(stream_state)):,} bytes"]
    if "state_version" in stream_state:
        parts.append(f"state_version {stream_state['state_version']}")
    groups = stream_state.get("read_through")
    if isinstance(groups, list):
        profiles = sum(map(profiles_named, groups))
        parts.append(f"{profiles:,} profiles in {len(groups)} watermark groups")
    if stream_state.get("full_pass_at") is not None:
        parts.append(f"last full pass at {stream_state['full_pass_at']!r}")
    reading = stream_state.get("reading")
    if isinstance(reading, Mapping):
        parts.append(f"resuming an interrupted attempt at {reading.get('position')!r}")
    if stream_state.get("__ab_full_refresh_sync_complete"):
        parts.append("the last pass was complete")
    return ", ".join(parts)


def profiles_named(group: Any) -> int:
    """How many profiles a watermark group names (version 3's count, version 2's list); 0 for a group
    of another shape: the summary is logged before the state is read, and must not fail on one."""
    count = group.get("profile_count") if isinstance(group, Mapping) else None
    listed = group.get("profiles") if isinstance(group, Mapping) else None
    return count if type(count) is int else len(listed) if isinstance(listed, list) else 0


def probe_profiles(client: ProfileApiClient, config: ConnectorConfig, collection: str, external_ids: tuple[str, ...], logger: logging.Logger) -> None:
    """Looks up the first configured profiles until one is found: raises ProfilesNotFound when
    none of the first CHECK_PROBED_PROFILES is (a wrong space, region or environment)."""
    probed = external_ids[:CHECK_PROBED_PROFILES]
    for position, external_id in enumerate(probed):
        try:
            url = space_url(config.base_url, config.space_id) + profile_path(collection, external_id, "traits")
            page_of(client.get(PageRequest(url, {"limit": 1}, "check", external_id, None)), "check", external_id)  # the body must be the API's JSON
        except ProfileNotFound:
            continue
        if position:
            logger.warning(f"check: {mask_id_list(list(probed[:position]))} answered 404 (not found in {config.space}).")
        return
    if probed:
        raise profiles_not_found(f"first {len(probed)} configured {collection[:-1]} ids", config.space, list(probed))


def load_config(config: Mapping[str, Any]) -> ConnectorConfig:
    parsed = parse_config(config)
    register_configured_ids(user_external_ids=parsed.user_external_ids, account_external_ids=parsed.account_external_ids)
    # The CDK masks the token itself (airbyte_secret) but not values derived from it: the Basic
    # auth header would otherwise show in clear in a debug log or a trace (cdk-notes).
    header = basic_auth_header(parsed.access_token)
    add_to_secrets(header)
    add_to_secrets(header.removeprefix("Basic "))
    return parsed
