"""Masking of personal data in anything the connector logs.

Email and phone ids are personal data (Segment's docs warn that email lookup keys put PII in logs),
so their values never appear in logs, errors or traces; other id types are pseudonymous and are
shown as they are, because a user needs them to find the profile.
"""

PERSONAL_ID_TYPES = {"email", "phone"}


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
