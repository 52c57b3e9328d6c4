"""The one place where Profile API URLs are built: the space's base, a profile's resource, the listing."""

from urllib.parse import quote

# Segment's docs: list methods exist; their auth example lists users at this path (profile_ids.py).
USER_LISTING_PATH = "collections/users/profiles"


def space_url(base_url: str, space_id: str) -> str:
    """`https://profiles.segment.com/v1/spaces/spa_1/`: what every path is relative to."""
    return f"{base_url}/v1/spaces/{quote(space_id, safe='')}/"


def profile_path(collection: str, external_id: str, resource: str) -> str:
    """One resource of one profile, e.g. `collections/users/profiles/email:a%2Bb%40x.com/traits`.

    The id is a single path segment, so everything but unreserved characters is percent-encoded:
    Segment's docs note that an unencoded `+` (read as a space) or `/`, `?`, `#`, `%` yields a 404 or
    even a 500. `:` stays readable; it is legal in a segment and separates the id's type from its value.
    """
    return f"collections/{collection}/profiles/{quote(external_id, safe=':')}/{resource}"
