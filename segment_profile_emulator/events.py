"""The events of users: a pure function of (seed, user index, UTC day), or of the option that
shapes them (a fixed count, late arrival, a device clock a year ahead)."""

from __future__ import annotations

import json
import math
import random
from typing import Any, NamedTuple

from .formats import DAY_MS, HOUR_MS, RETENTION_MS, format_timestamp, to_json_bytes
from .options import FUTURE_EVENT_ARRIVAL_BEFORE_START_MS, FUTURE_EVENT_CLOCK_AHEAD_MS, DatasetOptions
from .profiles import UserProfile
from .randomness import random_uuid, stable_hash
from .traits import CITIES, PLANS

# Fixed event counts (events_per_user, heavy_user_events) are generated in blocks of this many
# consecutive events from one RNG: seeding an RNG costs half as much as making an event.
EVENT_BLOCK_SIZE = 64


class ServedEvent(NamedTuple):
    timestamp_ms: int
    name: str | None  # what include/exclude match: `event` of track, `name` of page/screen
    json: bytes  # serialized once: pages join these as they are, and bytes are compact in the cache


TRACK_EVENT_NAMES = (
    "Product Viewed",
    "Product Added",
    "Order Completed",
    "Signed In",
    "Checkout Started",
    "Coupon Applied",
    "Vidéo regardée",
    "注文完了",
)
PAGE_NAMES = ("Home", "Pricing", "Docs", "Checkout")
SCREEN_NAMES = ("Feed", "Settings", "Profile")
LIBRARIES = (("analytics.js", "4.1.0"), ("analytics-ios", "4.1.5"), ("analytics-python", "2.3.2"))


def _poisson(rate: float, uniform: float) -> int:
    """Inverse CDF of a Poisson distribution: the event count of a day from one uniform draw."""
    probability = cumulative = math.exp(-rate)
    count = 0
    while uniform > cumulative and probability > 0:
        count += 1
        probability *= rate / count
        cumulative += probability
    return count


class _Draws:
    """Many small random choices sliced out of one big random integer: about twice as fast as one
    RNG call per choice, which matters for the hundreds of thousands of events of a big space."""

    def __init__(self, rng: random.Random):
        self._bits = rng.getrandbits(192)

    def below(self, bound: int) -> int:
        self._bits, value = divmod(self._bits, bound)
        return value

    def pick(self, options: tuple | list) -> Any:
        return options[self.below(len(options))]


def _make_event(rng: random.Random, user: UserProfile, timestamp_ms: int, sources: list[str]) -> ServedEvent:
    draws = _Draws(rng)
    roll = draws.below(100)
    name = None
    if roll < 60:
        name = draws.pick(TRACK_EVENT_NAMES)
        body: dict[str, Any] = {"type": "track", "event": name}
        properties = {
            "sku": f"SKU-{draws.below(10**5):05d}",
            "price": (100 + draws.below(49_900)) / 100,
            "quantity": 1 + draws.below(5),
            "coupon": draws.pick((None, "ÉTÉ-2026", "🎁")),
            "order_total_micros": 2**63 + draws.below(10**6),
        }
    elif roll < 75:
        name = draws.pick(PAGE_NAMES)
        body = {"type": "page", "name": name}
        properties = {"path": f"/{name.lower()}", "title": f"{name} · Exämple", "referrer": None}
    elif roll < 85:
        name = draws.pick(SCREEN_NAMES)
        body = {"type": "screen", "name": name}
        properties = {"screen_depth": 1 + draws.below(4)}
    elif roll < 95:
        body = {"type": "identify"}
        properties = {}
        body["traits"] = {"plan": draws.pick(PLANS), "logins": draws.below(5001), "city": draws.pick(CITIES)}
    else:
        body = {"type": "group"}
        properties = {}
    body["properties"] = properties
    library_name, library_version = draws.pick(LIBRARIES)
    ip = draws.below(2**24)
    body["context"] = {
        "ip": f"10.{ip >> 16}.{(ip >> 8) & 255}.{ip & 255}",
        "library": {"name": library_name, "version": library_version},
        "locale": draws.pick(("en-US", "fr-FR", "ja-JP")),
    }
    body["timestamp"] = format_timestamp(timestamp_ms)
    # About 10% of real events carry the id as `message_id` only (the seed spec says `messageId`).
    body["message_id" if draws.below(10) == 0 else "messageId"] = random_uuid(rng)
    body["source_id"] = draws.pick(sources)
    if draws.below(10) < 3:  # fields the seed spec does not list but real responses carry
        user_id = user.external_ids[0]
        body["external_ids"] = [{"id": user_id["id"], "type": "user_id", "collection": "users", "encoding": "none"}]
        body["related"] = {"users": None}
    return ServedEvent(timestamp_ms, name, to_json_bytes(body))


class NewestArrival(NamedTuple):
    """The event that reached the API last: what a profile's metadata moves with."""

    arrival_ms: int
    message_id: str


class EventWindow(NamedTuple):
    """The events a profile shows at one clock, oldest first, with their timestamps for bisecting,
    and the one of them that arrived last (None without events)."""

    timestamps: list[int]
    events: list[ServedEvent]
    newest_arrival: NewestArrival | None


def _newest_arrival(arrivals: list[tuple[int, ServedEvent]]) -> NewestArrival | None:
    """The latest of (arrival, event) pairs; the message id read back from its one event's body."""
    if not arrivals:
        return None
    arrival_ms, event = max(arrivals, key=lambda pair: pair[0])
    body = json.loads(event.json)
    return NewestArrival(arrival_ms, body.get("messageId") or body["message_id"])


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


class EventGenerator:
    """The events of a space's users, generated (Dataset.visible_events caches them). `now_ms` is the
    clock the dataset starts at: future events arrive relative to it."""

    def __init__(self, seed: int, sources: list[str], options: DatasetOptions, now_ms: int):
        self.seed = seed
        self.sources = sources
        self.options = options
        self.now_ms = now_ms

    def generate_visible_events(self, user: UserProfile, now_ms: int) -> EventWindow:
        """Dataset.visible_events without the cache."""
        start_ms = now_ms - RETENTION_MS
        fixed_count = self.options.fixed_event_count(user.index)
        if fixed_count is None:
            events = self._natural_events(user, start_ms, now_ms)
        else:
            events = self._fixed_count_events(user, fixed_count, start_ms, now_ms)
        # The newest event of each kind is the one that arrived last of its kind: an ordinary event
        # arrives at its timestamp, a late one `delay_ms` after it, a future one at a fixed instant.
        arrivals = [(events[-1].timestamp_ms, events[-1])] if events else []
        extra = []
        for delay_ms in self.options.late_event_delays_ms(user.index):
            late = self._late_events(user, delay_ms, start_ms, now_ms)
            extra += late
            arrivals += [(late[-1].timestamp_ms + delay_ms, late[-1])] if late else []
        if self.options.has_future_event(user.index):
            future = self._future_event(user, start_ms, now_ms)
            extra += future
            arrivals += [(self.future_event_arrival_ms, event) for event in future]
        if extra:
            events = sorted(events + extra, key=lambda event: event.timestamp_ms)
        return EventWindow([event.timestamp_ms for event in events], events, _newest_arrival(arrivals))

    def _natural_events(self, user: UserProfile, start_ms: int, end_ms: int) -> list[ServedEvent]:
        """The user's own events with start_ms <= timestamp < end_ms, oldest first."""
        events: list[ServedEvent] = []
        if user.events_per_hour > 0 and end_ms > start_ms:
            for day in range(start_ms // DAY_MS, (end_ms - 1) // DAY_MS + 1):
                events += [
                    event for event in self._day_events(user, day) if start_ms <= event.timestamp_ms < end_ms
                ]
        return events

    def _day_events(self, user: UserProfile, day: int) -> list[ServedEvent]:
        """The events of one UTC day: a pure function of (seed, user, day), oldest first."""
        day_seed = stable_hash(self.seed, "events", user.index, day)
        count = _poisson(user.events_per_hour * 24, day_seed / 2**64)
        if not count:
            return []
        rng = random.Random(day_seed)
        offsets = sorted(rng.sample(range(DAY_MS), count))
        return [_make_event(rng, user, day * DAY_MS + offset, self.sources) for offset in offsets]

    def _fixed_count_events(self, user: UserProfile, count: int, start_ms: int, end_ms: int) -> list[ServedEvent]:
        """Events evenly spaced so that any RETENTION_MS-long window holds exactly `count`: event
        j is at phase + floor(j * RETENTION_MS / count), so event j + count is RETENTION_MS after
        event j. Event j is a pure function of (seed, user, count, j // EVENT_BLOCK_SIZE)."""
        if count == 0 or end_ms <= start_ms:
            return []
        phase = stable_hash(self.seed, "event phase", user.index, count) % RETENTION_MS
        # start <= phase + floor(j R / c) < end  <=>  ceil((start - phase) c / R) <= j < ceil((end - phase) c / R)
        first = _ceil_div((start_ms - phase) * count, RETENTION_MS)
        stop = _ceil_div((end_ms - phase) * count, RETENTION_MS)
        events: list[ServedEvent] = []
        for block in range(first // EVENT_BLOCK_SIZE, (stop - 1) // EVENT_BLOCK_SIZE + 1):
            rng = random.Random(stable_hash(self.seed, "fixed-count events", user.index, count, block))
            # every event of the block before `first` is drawn too: each draw moves the RNG on
            for j in range(block * EVENT_BLOCK_SIZE, min(stop, (block + 1) * EVENT_BLOCK_SIZE)):
                event = _make_event(rng, user, phase + j * RETENTION_MS // count, self.sources)
                if j >= first:
                    events.append(event)
        return events

    def _late_events(self, user: UserProfile, delay_ms: int, start_ms: int, end_ms: int) -> list[ServedEvent]:
        """One event per hour, stamped inside that hour, arriving delay_ms after its timestamp:
        visible at clock end_ms are those stamped in [start_ms, end_ms - delay_ms). The events of a
        day are a pure function of (seed, user, delay, day)."""
        last_ms = end_ms - delay_ms  # exclusive: later ones are still in transit
        events: list[ServedEvent] = []
        for day in range(start_ms // DAY_MS, (last_ms - 1) // DAY_MS + 1):
            rng = random.Random(stable_hash(self.seed, "late events", user.index, delay_ms, day))
            for hour in range(24):
                timestamp_ms = day * DAY_MS + hour * HOUR_MS + rng.randrange(HOUR_MS)
                if timestamp_ms >= last_ms:
                    break  # the day's later hours are later still
                event = _make_event(rng, user, timestamp_ms, self.sources)
                if timestamp_ms >= start_ms:
                    events.append(event)
        return events

    @property
    def future_event_arrival_ms(self) -> int:
        return self.now_ms - FUTURE_EVENT_ARRIVAL_BEFORE_START_MS

    def _future_event(self, user: UserProfile, start_ms: int, end_ms: int) -> list[ServedEvent]:
        """The event of a device whose clock is a year ahead, if it has arrived by end_ms and its
        timestamp is still within retention."""
        arrival_ms = self.future_event_arrival_ms
        timestamp_ms = arrival_ms + FUTURE_EVENT_CLOCK_AHEAD_MS
        if not (arrival_ms < end_ms and timestamp_ms >= start_ms):
            return []
        rng = random.Random(stable_hash(self.seed, "future event", user.index, arrival_ms))
        return [_make_event(rng, user, timestamp_ms, self.sources)]
