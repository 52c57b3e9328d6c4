"""The data knobs (DatasetOptions): what a plain synthetic space lacks, and which users carry it."""

from __future__ import annotations

from dataclasses import dataclass

from .formats import HOUR_MS, RETENTION_MS, YEAR_MS

# The lone-surrogate trait (DatasetOptions.lone_surrogate_trait): a JavaScript string cut in the
# middle of an emoji, the high half of U+1F680 (\ud83d\ude80), which JSON.stringify writes as a
# \ud83d escape. Every 7th user (3, 10, 17, ...) carries it.
LONE_SURROGATE_TRAIT = "nickname"
LONE_SURROGATE_VALUE = "\ud83d rocket"
LONE_SURROGATE_USER_PERIOD = 7
LONE_SURROGATE_USER_OFFSET = 3

# Late events (DatasetOptions.late_event_hours): the k-th lateness goes to every 5th user from
# LATE_EVENT_USER_OFFSETS[k % 4]; offset 3 is never used so that the users without events
# (index % 10 == 8) keep none.
LATE_EVENT_USER_PERIOD = 5
LATE_EVENT_USER_OFFSETS = (1, 2, 4, 0)

# Future-stamped events (DatasetOptions.future_events): users 4, 14, 24, ... carry one event from a
# device whose clock is a year ahead; it arrived an hour before the emulator's starting clock.
FUTURE_EVENT_USER_PERIOD = 10
FUTURE_EVENT_USER_OFFSET = 4
FUTURE_EVENT_CLOCK_AHEAD_MS = YEAR_MS
FUTURE_EVENT_ARRIVAL_BEFORE_START_MS = HOUR_MS


def parse_late_event_hours(text: str) -> tuple[float, ...]:
    """`6,23,72` -> (6.0, 23.0, 72.0); "" -> (). Raises ValueError on anything else."""
    if not text.strip():
        return ()
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"late_events must be hours separated by commas, such as 6,23,72, not {text!r}") from None


@dataclass(frozen=True)
class DatasetOptions:
    """The data knobs; their defaults give the plain space.

    - lone_surrogate_trait: every 7th user (3, 10, 17, ...) has a trait "nickname" whose JSON text
      on the wire is "\\ud83d rocket", a lone UTF-16 surrogate escape (what JavaScript clients
      produce): Python's json reads it, orjson rejects the whole body. The ground truth reports
      the value as a client that cannot hold lone surrogates must deliver it, U+FFFD in its place:
      "\\ufffd rocket".
    - events_per_user: every user has exactly this many events in any 14-day retention window,
      evenly spaced (RETENTION_MS / N apart, from a per-user phase), instead of the natural 0..3,000.
    - heavy_user_events: user 0 has exactly this many events in the window (its window is cached
      apart from the others, so paging through 100,000 events generates them once).
    - late_event_hours: for each lateness L (hours, 0 < L < 336), every 5th user (from an offset
      per L) has one extra event per hour: stamped inside that hour, it only arrives, and shows in
      answers, L hours later. At any clock the events of the last L hours are still in transit.
    - future_events: users 4, 14, 24, ... have one event stamped 365 days after its arrival (a
      device clock a year ahead), arrived an hour before the dataset's starting clock: newest first
      it is on top, and start/end/sort treat it by its timestamp like any other.

    Late, future and fixed-count events are ordinary events otherwise (same shape, unique
    message ids), kept for 14 days after their timestamp, and listed by the ground truth exactly
    when they are visible.
    """

    lone_surrogate_trait: bool = False
    events_per_user: int | None = None
    heavy_user_events: int | None = None
    late_event_hours: tuple[float, ...] = ()
    future_events: bool = False

    def __post_init__(self) -> None:
        for name in ("events_per_user", "heavy_user_events"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a whole number of events, 0 or more")
        retention_hours = RETENTION_MS // HOUR_MS
        for hours in self.late_event_hours:
            if not 0 < hours < retention_hours:
                # a lateness of 14 days or more arrives after its event has left the window
                raise ValueError(f"late_events hours must be above 0 and below {retention_hours} (the 14-day retention)")
        if len(set(self.late_event_hours)) != len(self.late_event_hours):
            raise ValueError("late_events must not repeat an hour count")
        for name in ("lone_surrogate_trait", "future_events"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")

    def fixed_event_count(self, user_index: int) -> int | None:
        """How many events the user has in any retention window, or None for the natural count."""
        if user_index == 0 and self.heavy_user_events is not None:
            return self.heavy_user_events
        return self.events_per_user

    def late_event_delays_ms(self, user_index: int) -> list[int]:
        """The latenesses, in milliseconds, of the user's late events."""
        return [
            round(hours * HOUR_MS)
            for position, hours in enumerate(self.late_event_hours)
            if user_index % LATE_EVENT_USER_PERIOD == LATE_EVENT_USER_OFFSETS[position % len(LATE_EVENT_USER_OFFSETS)]
        ]

    def has_future_event(self, user_index: int) -> bool:
        return self.future_events and user_index % FUTURE_EVENT_USER_PERIOD == FUTURE_EVENT_USER_OFFSET

    def has_lone_surrogate_trait(self, user_index: int) -> bool:
        return self.lone_surrogate_trait and user_index % LONE_SURROGATE_USER_PERIOD == LONE_SURROGATE_USER_OFFSET
