"""Issue 17, the user_events state at a million profiles:
  state-10k, state-100k
               10,000 or 100,000 users, 2 events each, all read from the listing (read_all_users,
               no ids configured), user_events incremental, no latency nor limit: sync 1 from no
               state, then the clock 1 h on and sync 2 from sync 1's state (every checkpoint then
               carries every profile). Per sync: STATE messages, the final state's bytes and all
               STATE bytes (each STATE line as written to stdout), peak RSS; the largest number of
               profiles sync 2 completed between two STATE messages (what an interruption redoes);
               each figure extrapolated linearly to 1,000,000 profiles (peak RSS from both rows).
               Targets: all STATE bytes <= 20x the final state in both syncs; sync 1's events =
               the ground truth; and, at 100,000, the final state (the larger of the two syncs')
               x10 <= 8 MB (8,000,000 bytes). Group `state`: both rows.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.connector_output import STATE_LINE, event_digests, ground_truth_event_digests
from benchmarks.connector_runs import SEGMENT_LIMIT, UNPACED_BUDGET, ConnectorRead, connector_config, read
from benchmarks.report import Check, Row, share
from integration_tests.connector_cli import configured_catalog
from segment_profile_emulator.testing import running_emulator

# Issue 17: the user_events state at a million profiles, measured at 10,000 and 100,000.
MILLION = 1_000_000
# Few events a user: one events page each, so that 100,000 profiles are read in minutes.
STATE_ROW_EVENTS_PER_USER = 2
# The bounds: the final state, extrapolated from 100,000 profiles, at most 8 MB (decimal:
# 8,000,000 bytes), and all STATE bytes of a sync at most 20x its final state.
STATE_LIMIT_AT_A_MILLION = 8_000_000
STATE_TRAFFIC_LIMIT = 20
# The size whose final state is extrapolated against STATE_LIMIT_AT_A_MILLION (the "measured at 100,000"),
# and the smaller one, whose peak RSS the larger's is compared with.
STATE_CHECKED_AT = 100_000
STATE_SMALLER = 10_000
# The listing's page (Segment's limit for list methods): one request per this many users listed.
LISTING_PAGE = 100


@dataclass
class StateSync:
    """One sync's user_events state traffic, from its STATE lines as written to stdout."""

    read: ConnectorRead
    stats: dict  # the emulator's, for this sync only

    @property
    def messages(self) -> int:
        return self.read.state_messages.get("user_events", 0)

    @property
    def final_bytes(self) -> int:
        return self.read.last_state_line_bytes.get("user_events", 0)

    @property
    def all_bytes(self) -> int:
        return self.read.state_line_bytes.get("user_events", 0)

    @property
    def traffic_ratio(self) -> float:
        return share(self.all_bytes, self.final_bytes)

    def summary(self) -> str:
        return (
            f"{self.messages:,} STATE messages, final {self.final_bytes / 1e6:,.3f} MB ({self.read.state_bytes.get('user_events', 0) / 1e6:,.3f} MB of stream_state), "
            f"all {self.all_bytes / 1e6:,.1f} MB, peak RSS {self.read.peak_rss_mib:.0f} MiB, {self.read.wall_seconds:.1f} s, "
            f"{self.read.records:,} records, {self.stats['requests_total']:,} requests"
        )

    def as_json(self) -> dict:
        figures = {"messages": self.messages, "final_bytes": self.final_bytes, "all_bytes": self.all_bytes, "traffic_ratio": self.traffic_ratio}
        return {**figures, "stats": self.stats, "connector": self.read.as_json()}


def profiles_at_each_state(output_file: Path, watermark: datetime) -> list[int]:
    """For each user_events STATE message of a saved output, in order: how many profiles it says
    were read through `watermark` (the sync's own), i.e. completed by the sync so far."""
    # Imported here, from the checkout: the one decoder of every state version (read_through_state.py
    # keeps it working across format changes), and the other rows need none of the connector.
    from source_segment_profile.read_through_state import profiles_read_through

    counts = []
    with open(output_file, "rb") as lines:
        for line in lines:
            if line.startswith(STATE_LINE):
                stream = json.loads(line)["state"].get("stream")
                if stream and stream["stream_descriptor"]["name"] == "user_events":
                    read_through = profiles_read_through(stream["stream_state"])
                    counts.append(sum(1 for each in read_through.values() if each == watermark))
    return counts


def newest_watermark(read: ConnectorRead) -> datetime:
    """The latest watermark of a read's final user_events state: the sync's own."""
    from source_segment_profile.read_through_state import profiles_read_through  # see profiles_at_each_state

    return max(profiles_read_through(read.states["user_events"]["stream"]["stream_state"]).values())


def state_at(users: int) -> Callable[[argparse.Namespace], Row]:
    """Rows 12-13: the user_events state of a space whose users all come from the listing, extrapolated to a million."""

    def row(args: argparse.Namespace) -> Row:
        scale = MILLION / users
        catalog = configured_catalog(("user_events",), incremental=True)
        emulator_options = {"users": users, "accounts": 1, "events_per_user": STATE_ROW_EVENTS_PER_USER, "rate_limit": 0}
        with running_emulator(**emulator_options) as emulator, tempfile.TemporaryDirectory() as directory:
            workdir = Path(directory)
            # Every user from the list method: how a space of a million profiles is configured.
            config = connector_config(emulator, {"users": [], "accounts": emulator.lookup_ids()["accounts"]}, read_all_users=True, requests_per_second=UNPACED_BUDGET)
            emulator.reset_stats()
            first = StateSync(read(workdir, config, catalog, output_file=workdir / "sync1.jsonl"), emulator.stats())
            # Exactly once: what sync 1 delivered against what the emulator serves at its clock.
            comparing = time.monotonic()
            delivered = event_digests(workdir / "sync1.jsonl")
            (workdir / "sync1.jsonl").unlink()
            truth = np.unique(ground_truth_event_digests(emulator))
            distinct = np.unique(delivered)
            missing, unexpected = len(np.setdiff1d(truth, distinct)), len(np.setdiff1d(distinct, truth))
            twice = len(delivered) - len(distinct)
            comparing = time.monotonic() - comparing
            # Sync 2 starts from sync 1's final state, so that every checkpoint carries every profile.
            emulator.advance_clock(3600)
            emulator.reset_stats()
            second = StateSync(read(workdir, config, catalog, state=[first.read.states["user_events"]], output_file=workdir / "sync2.jsonl"), emulator.stats())
            decoding = time.monotonic()
            completed = profiles_at_each_state(workdir / "sync2.jsonl", newest_watermark(second.read))
            decoding = time.monotonic() - decoding
        # From the sync's start (0 completed) to its first STATE message is a gap too.
        redo_gap = int(max(np.diff([0, *completed]), default=0))
        redo_requests_at_a_million = redo_gap * scale * (1 + 1 / LISTING_PAGE)
        redo_minutes_at_a_million = redo_requests_at_a_million / SEGMENT_LIMIT / 60
        final_bytes = max(first.final_bytes, second.final_bytes)
        final_at_a_million = final_bytes * scale
        peak_rss = max(first.read.peak_rss_mib, second.read.peak_rss_mib)

        checks = []
        if users == STATE_CHECKED_AT:
            checks.append(
                Check(
                    f"final state x{scale:g} (extrapolated to {MILLION:,} profiles)",
                    f"**{final_at_a_million / 1e6:,.2f} MB** ({final_at_a_million:,.0f} bytes)",
                    f"<= {STATE_LIMIT_AT_A_MILLION / 1e6:g} MB ({STATE_LIMIT_AT_A_MILLION:,} bytes)",
                    final_at_a_million <= STATE_LIMIT_AT_A_MILLION,
                )
            )
        for name, each in (("sync 1", first), ("sync 2", second)):
            checks.append(
                Check(
                    f"{name} all STATE bytes / final state",
                    f"{each.all_bytes:,} / {each.final_bytes:,} = **{each.traffic_ratio:,.1f}x**",
                    f"<= {STATE_TRAFFIC_LIMIT}x",
                    each.traffic_ratio <= STATE_TRAFFIC_LIMIT,
                )
            )
        checks.append(
            Check(
                "sync 1 events vs ground truth",
                f"**{missing:,} missing, {unexpected:,} not in it** of {len(truth):,} ({twice:,} delivered twice)",
                "0 missing, 0 extra",
                missing == 0 and unexpected == 0,
            )
        )

        # Peak RSS at a million: from the 10,000 row's peak, if it ran before in this run.
        smaller = args.measured.get("state-10k") if users > STATE_SMALLER else None
        rss_at_a_million = "; peak RSS at a million: needs state-10k in the same run" if users > STATE_SMALLER else ""
        rss_figures: dict = {}
        if smaller:
            smaller_rss, smaller_users = smaller["peak_rss_mib"], smaller["users"]
            ratio = peak_rss / smaller_rss
            per_profile = (peak_rss - smaller_rss) / (users - smaller_users)
            linear = peak_rss + per_profile * (MILLION - users)
            geometric = peak_rss * ratio ** math.log(scale, users / smaller_users)
            rss_at_a_million = (
                f"; peak RSS {smaller_rss:.0f} MiB at {smaller_users:,} -> {peak_rss:.0f} MiB at {users:,} = {ratio:.2f}x, "
                f"extrapolated to {MILLION:,}: {geometric:,.0f} MiB at the same ratio, {linear:,.0f} MiB at the same cost per profile"
            )
            rss_figures = {"rss_ratio": ratio, "rss_at_a_million_same_ratio_mib": geometric, "rss_at_a_million_same_cost_per_profile_mib": linear}

        details = (
            f"STATE bytes are those of the STATE lines as written to stdout, without the newline (\"of stream_state\": the state alone, as compact JSON); "
            f"sync 1: {first.summary()}; sync 2: {second.summary()}; "
            f"sync 2's largest gap between STATE messages: **{redo_gap:,} profiles** of {users:,} ({len(completed)} STATE messages decoded in {decoding:.0f} s); "
            f"extrapolated to {MILLION:,} profiles (x{scale:g}, linear): final state {final_at_a_million / 1e6:,.1f} MB, "
            f"all STATE bytes {first.all_bytes * scale / 1e9:,.2f} GB (sync 1) and {second.all_bytes * scale / 1e9:,.2f} GB (sync 2), "
            f"redo gap {redo_gap * scale:,.0f} profiles (if a pass keeps as many checkpoints) = {redo_minutes_at_a_million:,.1f} min at {SEGMENT_LIMIT} requests/s "
            f"(a request a profile, one a {LISTING_PAGE} listed)"
            f"{rss_at_a_million}"
        )
        says = [
            f"At {users:,} profiles the final user_events state was {final_bytes / 1e6:,.3f} MB: {final_at_a_million / 1e6:,.1f} MB extrapolated to {MILLION:,}.",
            f"All STATE bytes were {first.traffic_ratio:,.1f}x the final state in sync 1 and {second.traffic_ratio:,.1f}x in sync 2 ({STATE_TRAFFIC_LIMIT}x at most).",
            f"An interruption of sync 2 would redo up to {redo_gap:,} profiles: {redo_minutes_at_a_million:,.1f} min at {SEGMENT_LIMIT} requests/s extrapolated to {MILLION:,}.",
        ]
        return Row(
            f"user_events state: {users:,} users from the listing (read_all_users, {STATE_ROW_EVENTS_PER_USER} events each), 1 account, no latency nor limit; "
            f"sync 1 from no state, sync 2 from its state with the clock 1 h on",
            checks,
            details,
            says,
            {
                "users": users,
                "sync1": first.as_json(),
                "sync2": second.as_json(),
                "events": {"truth": len(truth), "delivered": len(delivered), "missing": missing, "unexpected": unexpected, "delivered_twice": twice},
                "sync2_profiles_at_each_state": completed,
                "redo_gap_profiles": redo_gap,
                "ground_truth_comparison_seconds": comparing,
                "state_decoding_seconds": decoding,
                "peak_rss_mib": peak_rss,
                "extrapolated_to_a_million": {
                    "final_state_bytes": final_at_a_million,
                    "sync1_all_state_bytes": first.all_bytes * scale,
                    "sync2_all_state_bytes": second.all_bytes * scale,
                    "redo_gap_profiles": redo_gap * scale,
                    "redo_gap_minutes": redo_minutes_at_a_million,
                    **rss_figures,
                },
            },
        )

    row.__doc__ = state_at.__doc__
    return row
