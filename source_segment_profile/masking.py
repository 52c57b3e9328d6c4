"""Masking of personal data in anything the connector logs or keeps.

Email and phone ids are personal data (Segment's docs warn that email lookup keys put PII in logs),
so their values never appear in logs, errors or traces; other id types are pseudonymous and are
shown as they are, because a user needs them to find the profile. State names a profile by a
digest of its id (`profile_key`), never by the id.
"""

import hashlib

PERSONAL_ID_TYPES = {"email", "phone"}
# Keys are the first 64 bits of the id's SHA-256, written as this many hex digits where text is needed.
KEY_HEX_DIGITS = 16


def profile_key(external_id: str) -> int:
    """A profile's key in state: a digest of its id, not the id itself.

    The state is stored by the platform and the CDK logs every incoming state in full, so the
    state holds no id in clear. 64 bits: among a million profiles, the chance that two share a
    key is 3 in 100 million.
    """
    return int.from_bytes(hashlib.sha256(external_id.encode("utf-8")).digest()[:8], "big")


def key_as_hex(key: int) -> str:
    return f"{key:0{KEY_HEX_DIGITS}x}"


def profile_state_key(external_id: str) -> str:
    """The key as 16 hex digits."""
    return key_as_hex(profile_key(external_id))


def mask_external_id(external_id: str) -> str:
    """`email:jane.doe@example.com` -> `email:j***@example.com`; `phone:+15551234567` -> `phone:***67`.

    An id typed without its `type:` (a config mistake) is masked when it looks like an email.
    """
    id_type, separator, value = external_id.partition(":")
    if not separator:
        return _mask_email(external_id) if "@" in external_id else external_id
    if id_type.lower() not in PERSONAL_ID_TYPES:
        return external_id
    if id_type.lower() == "email":
        return f"{id_type}:{_mask_email(value)}"
    return f"{id_type}:***{value[-2:]}"


def _mask_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    return f"{local[:1]}***@{domain}" if at else f"{value[:1]}***"


def mask_id_list(external_ids: list[str], limit: int = 10) -> str:
    """A capped, masked list for summary lines: `user_id:a, email:b***@x.com (+3 more)`."""
    shown = ", ".join(mask_external_id(external_id) for external_id in external_ids[:limit])
    more = len(external_ids) - limit
    return f"{shown} (+{more} more)" if more > 0 else shown
