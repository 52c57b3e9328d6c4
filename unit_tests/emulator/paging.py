"""Reading the emulator as a client does: an authenticated session, cursor following, and the
two shapes the API answers in (an event's message id, flat or wrapped metadata)."""

from __future__ import annotations

import requests


def api_session(emulator) -> requests.Session:
    session = requests.Session()
    session.auth = (emulator.token, "")
    return session


def get(api, emulator, collection, external_id, resource, **params):
    return api.get(emulator.profile_url(collection, external_id, resource), params=params, timeout=30)


def follow_pages(api, emulator, response):
    """The bodies of `response` and of every page after it, following each cursor's url (relative
    or absolute) while it says has_more."""
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        yield body
        cursor = body.get("cursor")
        if cursor is None or not cursor["has_more"]:
            return
        url = cursor["url"] if cursor["url"].startswith("http") else emulator.url + cursor["url"]
        response = api.get(url, timeout=30)


def page_items(body, items_key):
    """A page's items: (name, value) pairs of traits, or the list (none for `"data": null`)."""
    page = body[items_key]
    if isinstance(page, dict):
        return list(page.items())
    return page or []


def follow_cursors(api, emulator, response, items_key):
    """Every item from `response` on, following each cursor's url (relative or absolute); and the
    cursors seen."""
    items, cursors = [], []
    for body in follow_pages(api, emulator, response):
        items += page_items(body, items_key)
        cursors.append(body.get("cursor"))
    return items, cursors


def page_through(api, emulator, collection, external_id, resource, items_key, **params):
    """Every item of a profile's listing, following each cursor's url; and the cursors seen."""
    return follow_cursors(api, emulator, get(api, emulator, collection, external_id, resource, **params), items_key)


def message_id(event):
    """An event's id: the seed spec's messageId, or message_id as some API versions name it."""
    return event.get("messageId") or event["message_id"]


def fields(metadata):
    """A metadata answer's fields, flat (the seed spec) or wrapped in {"metadata": ...} (Segment's docs)."""
    return metadata.get("metadata", metadata)
