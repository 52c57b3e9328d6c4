"""What keeps profile ids out of logs, errors, traces and state.

A lookup id's value is often personal data whatever its type: `email:` and `phone:` ids are, and
many `user_id:`s are emails too. So no id value appears in clear in anything the connector logs or
raises: `mask_external_id` shows its type, a few characters and, for a configured id, its place
in the config (`email:j***@example.com (user_external_ids[3])`), which is what a user needs to tell
which profile failed. Only `segment_id:`s the connector found itself (by listing users) are shown
as they are: they are Segment's own pseudonymous ids, and the way into Segment's UI.

Messages the connector writes mask ids as they build them. `redact_profile_ids` is the net under
them, for text the connector does not write: an exception's text carries the request's URL, with
the id percent-encoded in its path; it is applied to every line the connector prints (run.py).
State names a profile by a digest of its id (`profile_key`), never by the id.
"""

from __future__ import annotations

import hashlib
import re
from typing import Iterable
from urllib.parse import unquote

# Segment's own ids, as the user listing names them: shown as they are unless configured.
SEGMENT_ID_TYPE = "segment_id"
# Keys are the first 64 bits of the id's SHA-256, written as this many hex digits where text is needed.
KEY_HEX_DIGITS = 16
# A value this short shows nothing of itself: `user_id:***`.
SHORTEST_VALUE_SHOWN = 6

# Where each configured id sits in the config, for masked forms a user can find again.
_configured_places: dict[str, str] = {}

# Text that can hold an id: a profile URL's id segment (as requests' and urllib3's messages quote
# it), a `type:value` of an id type the config uses, an email (raw or with `@` as `%40`).
PROFILE_URL_SEGMENT = re.compile(r"(?<=/profiles/)[^/?#\s'\"\\]+")
EMAIL = re.compile(r"[^\s@/:'\"\\<>(),;=?&]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_typed_ids = re.compile(r"(?!x)x")  # matches nothing until ids are registered


def register_configured_ids(**places: Iterable[str]) -> None:
    """Remembers where each configured id sits (`user_external_ids=[...]`), replacing earlier ones."""
    global _typed_ids
    _configured_places.clear()
    for field, external_ids in places.items():
        for position, external_id in enumerate(external_ids):
            _configured_places.setdefault(external_id, f"{field}[{position}]")
    types = sorted({external_id.partition(":")[0] for external_id in _configured_places if ":" in external_id}, key=len, reverse=True)
    _typed_ids = re.compile(
        rf"(?<![\w%])(?:{'|'.join(map(re.escape, types))})(?::|%3A)[^\s/?#&'\"\\,;)]+" if types else r"(?!x)x", re.IGNORECASE
    )


def mask_external_id(external_id: str) -> str:
    """`email:jane.doe@example.com` -> `email:j***@example.com (user_external_ids[0])`;
    `user_id:u_12345678` -> `user_id:u***78`; `phone:+15551234567` -> `phone:***67`."""
    place = _configured_places.get(external_id)
    id_type, separator, value = external_id.partition(":")
    if not separator:
        masked = _mask_value(external_id)
    elif id_type.lower() == SEGMENT_ID_TYPE and place is None:
        return external_id
    elif id_type.lower() == "phone":
        masked = f"{id_type}:***{value[-2:]}"
    else:
        masked = f"{id_type}:{_mask_value(value)}"
    return f"{masked} ({place})" if place else masked


def _mask_value(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    return f"{value[:1]}***{value[-2:]}" if len(value) >= SHORTEST_VALUE_SHOWN else "***"


def mask_id_list(external_ids: list[str], limit: int = 10) -> str:
    """A capped, masked list for summary lines: `user_id:a***bc, email:b***@x.com (+3 more)`."""
    shown = ", ".join(mask_external_id(external_id) for external_id in external_ids[:limit])
    more = len(external_ids) - limit
    return f"{shown} (+{more} more)" if more > 0 else shown


def redact_profile_ids(text: str) -> str:
    """`text` with every profile id it holds masked: in URLs, as `type:value`, or an email alone.

    A masked form never matches again (its `***` cuts it short), so applying this twice is harmless.
    """
    text = PROFILE_URL_SEGMENT.sub(lambda match: _masked_segment(match.group(0)), text)
    text = _typed_ids.sub(lambda match: _masked_segment(match.group(0)), text)
    return EMAIL.sub(lambda match: _mask_value(unquote(match.group(0))), text)


def _masked_segment(segment: str) -> str:
    if "***" in segment:
        return segment
    external_id = unquote(segment)
    if ":" not in external_id:  # a bare segment id in a URL
        return external_id
    return mask_external_id(external_id)


def profile_key(external_id: str) -> int:
    """A profile's key in state: a digest of its id, not the id itself.

    The state is stored by the platform and logged, so it holds no id in clear. 64 bits: among
    a million profiles, the chance that two share a key is 3 in 100 million.
    """
    return int.from_bytes(hashlib.sha256(external_id.encode("utf-8")).digest()[:8], "big")


def key_as_hex(key: int) -> str:
    return f"{key:0{KEY_HEX_DIGITS}x}"


def profile_state_key(external_id: str) -> str:
    """The key as 16 hex digits."""
    return key_as_hex(profile_key(external_id))
