"""Issue 25, skipping unchanged profiles (skip_unchanged_profiles), one measurement for six rows:
  skip-today, skip-0, skip-10, skip-100, skip-delivered, skip-1m
               10,000 users from the listing (read_all_users, as state-10k), 10 accounts, the
               emulator's default data, no latency nor limit; the five user streams user_traits,
               user_events, user_external_ids, user_metadata and user_links, all incremental
               (append_dedup), each sync given the previous sync's final STATE of each stream.
               The emulated clock stands still between syncs: only delivered messages change users.
               With skip_unchanged_profiles on (full_pass_every_days left at its default, 7): sync 1
               from no state; `identify` messages to 0% of the users, sync 2a; to 10%, sync 2b;
               to 100%, sync 2c. Today (skip-today, a second emulator with the same seed, the option
               off): sync 1, `identify` to 10%, sync 2. Requests per profile = the profile API
               requests the emulator counted during the sync (the listing included; its admin routes
               are never counted) / 10,000. Targets: 2a <= 1.1, 2b <= 1.5, 2c <= today + 1 (today
               measured in the same run); skip-delivered: every user given a message in 2b has the
               message's event among 2b's user_events records and its new anonymous id among its
               user_external_ids records. skip-1m (no target): a daily sync of 1,000,000 users at
               80 requests/s with 10% changed, requests per profile x 1,000,000 / 80, skipping vs
               today. The measurement runs once, in the first of these rows selected (its run time);
               the others report from it. Group `skip`: all six rows (any one of them measures all).
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from benchmarks.connector_output import RECORD_LINE
from benchmarks.connector_runs import UNPACED_BUDGET, ConnectorRead, connector_config, read
from benchmarks.report import Check, Row
from integration_tests.connector_cli import SKIPPABLE_STREAMS, configured_catalog
from segment_profile_emulator.testing import RunningEmulator, running_emulator

SKIP_USERS = 10_000
SKIP_ACCOUNTS = 10
# The five user streams that take part, incremental append_dedup with their cursors: the catalog
# the integration tests of issue 25 sync with.
SKIP_CATALOG = configured_catalog(tuple(SKIPPABLE_STREAMS), cursors=SKIPPABLE_STREAMS)
MESSAGE_KIND = "identify"  # it adds an event, a trait and an anonymous id: every stream has news
FRACTIONS = {"2a": 0.0, "2b": 0.1, "2c": 1.0}  # sync -> the share of users given a message before it
BASELINE_FRACTION = 0.1
# The goals, in requests per profile.
GOAL_UNCHANGED = 1.1
GOAL_TENTH = 1.5
GOAL_ALL_ABOVE_TODAY = 1.0
# The computed row: a daily sync of a million users at the connector's default budget.
MILLION = 1_000_000
DAILY_BUDGET = 80  # requests/s, the connector's default requests_per_second
LISTING_PAGE = 100


@dataclass
class SyncFigures:
    """One sync: the emulator's counters for it alone, and the connector's read."""

    name: str
    changed: int  # users given a message since the previous sync
    stats: dict
    read: ConnectorRead
    users: int

    @property
    def requests(self) -> int:
        return self.stats["requests_total"]

    @property
    def per_profile(self) -> float:
        return self.requests / self.users

    @property
    def by_endpoint(self) -> dict[str, int]:
        return {name: count for name, count in self.stats["by_endpoint"].items() if count}

    def summary(self) -> str:
        streams = ", ".join(f"{name} {count:,}" for name, count in self.by_endpoint.items())
        return f"{self.requests:,} requests ({streams}), {self.read.records:,} records, {self.read.wall_seconds:.1f} s"

    def as_json(self) -> dict:
        return {
            "changed": self.changed,
            "requests": self.requests,
            "requests_per_profile": self.per_profile,
            "by_endpoint": self.by_endpoint,
            "stats": self.stats,
            "connector": self.read.as_json(),
        }


@dataclass
class Delivered:
    """What sync 2b must hold: the users given a message, found in its records or not."""

    users: int = 0
    found: int = 0
    events_missing: list[str] = field(default_factory=list)  # lookup ids, the first few
    ids_missing: list[str] = field(default_factory=list)
    events_twice: int = 0  # new events delivered more than once by the sync

    @property
    def exact(self) -> bool:
        return self.users > 0 and self.found == self.users and self.events_twice == 0

    def as_json(self) -> dict:
        return vars(self) | {"exact": self.exact}


@dataclass
class SkipMeasurement:
    users: int
    skipping: dict[str, SyncFigures]  # "1", "2a", "2b", "2c"
    today: dict[str, SyncFigures]  # "1", "2"
    delivered: Delivered
    seconds: float = 0.0

    def as_json(self) -> dict:
        return {
            "users": self.users,
            "skipping": {name: sync.as_json() for name, sync in self.skipping.items()},
            "today": {name: sync.as_json() for name, sync in self.today.items()},
            "delivered": self.delivered.as_json(),
        }


def list_segment_ids(emulator: RunningEmulator, users: int) -> list[str]:
    """Every user's segment id, in user order (the listing's), to name the users that
    read_all_users reads as `segment_id:<id>`. Before any sync: not in its counters."""
    segment_ids: list[str] = []
    url: Optional[str] = f"{emulator.url}/v1/spaces/{emulator.space_id}/collections/users/profiles?limit={LISTING_PAGE}&next=0"
    auth = "Basic " + base64.b64encode(f"{emulator.token}:".encode()).decode()
    while url:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": auth}), timeout=60) as answer:
            page = json.load(answer)
        segment_ids += [entry["segment_id"] for entry in page["data"]]
        url = None if len(segment_ids) >= users or not page["data"] else f"{emulator.url}/v1/spaces/{emulator.space_id}/collections/users/profiles?limit={LISTING_PAGE}&next={len(segment_ids)}"
    if len(segment_ids) != users:
        raise RuntimeError(f"the listing gave {len(segment_ids)} users of {users}")
    return segment_ids


def check_delivered(output_file: Path, answer: dict, external_id_of: dict[str, str]) -> Delivered:
    """Whether each user of a delivery (`answer`: deliver_messages') has, in a saved output, the
    event of each of its messages (user_events, by external_id and messageId) and each anonymous id
    they added (user_external_ids, by external_id, type and id). `external_id_of`: a lookup id ->
    the external id the connector names the user by."""
    events: dict[tuple[str, str], int] = {}
    anonymous_ids: set[tuple[str, str]] = set()
    with open(output_file, "rb") as lines:
        for line in lines:
            if not line.startswith(RECORD_LINE) or (b'"stream":"user_events"' not in line and b'"stream":"user_external_ids"' not in line):
                continue
            record = json.loads(line)["record"]
            data = record["data"]
            if record["stream"] == "user_events":
                key = (data.get("external_id"), data.get("messageId"))
                events[key] = events.get(key, 0) + 1
            elif record["stream"] == "user_external_ids" and data.get("type") == "anonymous_id":
                anonymous_ids.add((data.get("external_id"), data.get("id")))
    result = Delivered()
    for user in answer["users"]:
        external_id = external_id_of[user["lookup_id"]]
        result.users += 1
        counts = [events.get((external_id, message_id), 0) for message_id in user["message_ids"]]
        result.events_twice += sum(count > 1 for count in counts)
        has_events = all(counts)
        has_ids = all((external_id, value) in anonymous_ids for value in user.get("anonymous_ids", []))
        if not has_events and len(result.events_missing) < 5:
            result.events_missing.append(user["lookup_id"])
        if not has_ids and len(result.ids_missing) < 5:
            result.ids_missing.append(user["lookup_id"])
        result.found += has_events and has_ids
    return result


def daily_hours(requests_per_profile: float, profiles: int = MILLION, budget: float = DAILY_BUDGET) -> float:
    """Hours a sync of `profiles` takes at `budget` requests/s, at `requests_per_profile`."""
    return requests_per_profile * profiles / budget / 3600


def _sequence(users: int, skip: bool, fractions: dict[str, float], workdir: Path, check_sync: Optional[str] = None) -> tuple[dict[str, SyncFigures], Delivered]:
    """Sync 1 from no state, then for each of `fractions`: messages to that share of the users
    and a sync from the previous one's final states. `check_sync`: the sync whose records
    check_delivered compares with its delivery."""
    emulator_options = {"users": users, "accounts": SKIP_ACCOUNTS, "rate_limit": 0}
    catalog = SKIP_CATALOG
    syncs: dict[str, SyncFigures] = {}
    delivered = Delivered()
    with running_emulator(**emulator_options) as emulator:
        accounts = emulator.lookup_ids()["accounts"]
        external_id_of = {}
        if check_sync:
            lookup_ids = emulator.lookup_ids()["users"]
            external_id_of = {lookup: f"segment_id:{segment}" for lookup, segment in zip(lookup_ids, list_segment_ids(emulator, users))}
        config = connector_config(
            emulator,
            {"users": [], "accounts": accounts},
            read_all_users=True,
            requests_per_second=UNPACED_BUDGET,
            skip_unchanged_profiles=skip,
        )

        def sync(name: str, changed: int, state: Optional[list], output_file: Optional[Path] = None) -> SyncFigures:
            emulator.reset_stats()
            result = read(workdir, config, catalog, state=state, output_file=output_file)
            return SyncFigures(name, changed, emulator.stats(), result, users)

        previous = syncs["1"] = sync("1", users, None)
        for name, fraction in fractions.items():
            answer = emulator.deliver_messages(MESSAGE_KIND, fraction=fraction)
            output_file = workdir / f"sync{name}.jsonl" if name == check_sync else None
            previous = syncs[name] = sync(name, len(answer["users"]), list(previous.read.states.values()), output_file)
            if output_file:
                delivered = check_delivered(output_file, answer, external_id_of)
                output_file.unlink()
    return syncs, delivered


def measure(users: int = SKIP_USERS) -> SkipMeasurement:
    """Both sequences, each against its own emulator (same seed and data)."""
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        skipping, delivered = _sequence(users, True, FRACTIONS, workdir, check_sync="2b")
        today, _ = _sequence(users, False, {"2": BASELINE_FRACTION}, workdir)
    return SkipMeasurement(users, skipping, today, delivered)


def _measurement(args: argparse.Namespace) -> SkipMeasurement:
    """The run's one measurement, made by the first skip row that asks (an error too: the rows
    that follow report it rather than measure again)."""
    if not hasattr(args, "skip_unchanged"):
        try:
            args.skip_unchanged = measure()
        except Exception as error:
            args.skip_unchanged = error
    if isinstance(args.skip_unchanged, Exception):
        raise RuntimeError(f"the skip-unchanged measurement failed: {args.skip_unchanged}") from args.skip_unchanged
    return args.skip_unchanged


def _setting(m: SkipMeasurement) -> str:
    return (
        f"{m.users:,} users from the listing (read_all_users), {SKIP_ACCOUNTS} accounts, no latency nor limit; "
        f"5 user streams incremental (append_dedup), each sync from the previous one's final states"
    )


def _per_profile(sync: SyncFigures) -> str:
    return f"{sync.requests:,} / {sync.users:,} = **{sync.per_profile:.3f}**"


def today_row(args: argparse.Namespace) -> Row:
    """Skip-unchanged: today's cost (the option off) of a second sync with 10% changed."""
    m = _measurement(args)
    first, second = m.today["1"], m.today["2"]
    return Row(
        measure=f"Today (skip_unchanged_profiles off): sync 2 after `{MESSAGE_KIND}` to {BASELINE_FRACTION:.0%} of the users; {_setting(m)}",
        checks=[],
        details=f"requests per profile {_per_profile(second)} (baseline of skip-100 and skip-1m); sync 2: {second.summary()}; sync 1: {first.summary()}",
        says=[],
        raw={"today": {name: sync.as_json() for name, sync in m.today.items()}},
    )


def sync_row(name: str) -> Callable[[argparse.Namespace], Row]:
    """A sync of the skipping sequence: its requests per profile against its goal."""
    fraction = FRACTIONS[name]

    def row(args: argparse.Namespace) -> Row:
        m = _measurement(args)
        sync, today = m.skipping[name], m.today["2"]
        if name == "2c":
            goal, target = today.per_profile + GOAL_ALL_ABOVE_TODAY, f"<= today + 1 = {today.per_profile + GOAL_ALL_ABOVE_TODAY:.3f}"
        else:
            goal = GOAL_UNCHANGED if fraction == 0 else GOAL_TENTH
            target = f"<= {goal:g}"
        before = {"2a": "1", "2b": "2a", "2c": "2b"}[name]
        details = f"{sync.changed:,} users given a message; sync {name}: {sync.summary()}"
        if name == "2a":
            details += f"; sync 1 (from no state, reads everything): {_per_profile(m.skipping['1']).replace('**', '')} requests per profile, {m.skipping['1'].summary()}"
        return Row(
            measure=f"Skip unchanged: sync {name} from sync {before}'s states after `{MESSAGE_KIND}` to {fraction:.0%} of the users, skip_unchanged_profiles on; {_setting(m)}",
            checks=[Check(f"sync {name} requests per profile", _per_profile(sync), target, sync.per_profile <= goal)],
            details=details,
            says=[],
            raw={f"sync {name}": sync.as_json()},
        )

    row.__doc__ = f"Skip-unchanged: requests per profile of sync {name}, {fraction:.0%} of the users changed."
    return row


def delivered_row(args: argparse.Namespace) -> Row:
    """Skip-unchanged: sync 2b delivers every message sent before it."""
    m = _measurement(args)
    d = m.delivered
    problems = []
    if d.events_missing:
        problems.append(f"events missing for e.g. {', '.join(d.events_missing)}")
    if d.ids_missing:
        problems.append(f"anonymous ids missing for e.g. {', '.join(d.ids_missing)}")
    return Row(
        measure=f"Skip unchanged: sync 2b's records hold each message given before it ({d.users:,} users, `{MESSAGE_KIND}`): its event (user_events, messageId) and its new anonymous id (user_external_ids)",
        checks=[Check("exactly delivered", f"**{'yes' if d.exact else 'no'}** ({d.found:,} of {d.users:,})", "yes", d.exact)],
        details="; ".join([f"new events delivered more than once: {d.events_twice}", *problems]),
        says=[],
        raw={"delivered": d.as_json()},
    )


def million_row(args: argparse.Namespace) -> Row:
    """Skip-unchanged: a daily sync of 1,000,000 users at 80 requests/s, 10% changed (computed)."""
    m = _measurement(args)
    tenth, today = m.skipping["2b"], m.today["2"]
    skip_hours, today_hours = daily_hours(tenth.per_profile), daily_hours(today.per_profile)
    ratio = today.per_profile / tenth.per_profile
    says = [
        f"**Skipping unchanged profiles**: with 10% of {m.users:,} users changed, a sync made {tenth.per_profile:.2f} requests a profile "
        f"against {today.per_profile:.2f} today ({ratio:.1f}x fewer); at 1,000,000 users and 80 requests/s that is {skip_hours:.1f} h "
        f"instead of {today_hours:.1f} h. Unchanged, {m.skipping['2a'].per_profile:.2f} a profile; all changed, {m.skipping['2c'].per_profile:.2f}."
    ]
    return Row(
        measure=f"Skip unchanged, computed: a daily sync of {MILLION:,} users at {DAILY_BUDGET} requests/s with 10% changed = requests per profile x {MILLION:,} / {DAILY_BUDGET}",
        checks=[],
        details=(
            f"skipping (sync 2b, {tenth.per_profile:.3f} a profile) **{skip_hours:.2f} h** vs today ({today.per_profile:.3f}) **{today_hours:.2f} h**; "
            f"today / skipping = **{ratio:.2f}x** (both measured in this run at {m.users:,} users, extrapolated linearly)"
        ),
        says=says,
        raw={"skip_hours": skip_hours, "today_hours": today_hours, "ratio": ratio, "skip_per_profile": tenth.per_profile, "today_per_profile": today.per_profile},
    )
