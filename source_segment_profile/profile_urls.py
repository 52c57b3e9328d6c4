"""The one place where Profile API URLs are built."""

from urllib.parse import quote


def profile_url(base_url: str, space_id: str, collection: str, external_id: str, resource: str) -> str:
    """URL of one resource of one profile, e.g. `.../collections/users/profiles/email:a%2Bb%40x.com/traits`.

    The id is a single path segment, so everything but unreserved characters is percent-encoded:
    Segment's docs note that an unencoded `+` (read as a space) or `/`, `?`, `#`, `%` yields a 404 or
    even a 500. `:` stays readable; it is legal in a segment and separates the id's type from its value.
    """
    encoded_id = quote(external_id, safe=":")
    return f"{base_url}/v1/spaces/{quote(space_id, safe='')}/collections/{collection}/profiles/{encoded_id}/{resource}"

