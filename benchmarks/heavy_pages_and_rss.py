"""Rows of the heaviest reads: records/s and CPU time when every events page is full, and peak RSS
as profiles and events grow.

Issue 13, request path at real-API conditions (1,000 users and 100 accounts unless said):
  heavy-pages  user_events only, every page full (200 events), 50 ms +-50% latency, 100/s limit
               and budget: records/s (first to last record's emitted_at) >= 0.95 x 100 pages/s x
               200 records; and the connector's CPU seconds per 100,000 records.
  rss-scale    every stream, no latency nor limit: peak RSS at 10x the profiles <= 1.10x.
  rss-heavy    user_events of 11 users, with and without a profile of 100,000 events: < 50 MiB more.
               Both RSS rows: the median of --rss-repeats pairs of runs.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, Optional

from benchmarks.connector_runs import SEGMENT_LIMIT, STREAMS, UNPACED_BUDGET, USERS, ConnectorRead, rejected, run_summary, sync
from benchmarks.report import Check, Row

PAGE_SIZE = 200  # the connector's default page_size, the largest the API takes for events
# The heavy-pages row: each user has this many events, whole pages of 200, and there are enough
# users for this many seconds of reading at 100 pages/s.
EVENTS_PER_USER = 10 * PAGE_SIZE
HEAVY_READ_SECONDS = 32


def heavy_pages(args: argparse.Namespace) -> Row:
    """Row 2: every events page full, so that the budget alone would allow 100 x 200 records/s."""
    pages_per_user = EVENTS_PER_USER // PAGE_SIZE
    users = math.ceil(HEAVY_READ_SECONDS * SEGMENT_LIMIT / pages_per_user)
    emulator = {"users": users, "accounts": 1, "events_per_user": EVENTS_PER_USER, "latency_ms": 50, "latency_spread": 0.5, "rate_limit": SEGMENT_LIMIT}
    stats, result = sync(emulator, ("user_events",), requests_per_second=SEGMENT_LIMIT)
    ceiling = SEGMENT_LIMIT * PAGE_SIZE
    rate = result.records / result.record_span_seconds
    ratio = rate / ceiling
    cpu_per_100k = result.cpu_seconds / result.records * 100_000
    cpu_share = result.cpu_seconds / result.wall_seconds
    checks = [Check("records/s / (100 pages/s x 200)", f"{rate:,.0f}/s = **{ratio:.2f}**", ">= 0.95", ratio >= 0.95)]
    return Row(
        f"Heaviest case: user_events, every page {PAGE_SIZE} events ({users} users x {EVENTS_PER_USER:,}), 50 ms +-50% latency, limit and budget {SEGMENT_LIMIT}/s",
        checks,
        f"{result.records:,} records in {result.record_span_seconds:.1f} s (first to last record); "
        f"connector CPU **{cpu_per_100k:.1f} s per 100,000 records** ({result.cpu_seconds:.1f} s, {cpu_share:.2f} of a core over its {result.wall_seconds:.1f} s); "
        f"{run_summary(stats)}, {rejected(stats)} 429s",
        [
            f"With every page full, the connector emitted {rate:,.0f} records/s, {ratio:.2f} of the {ceiling:,}/s that {SEGMENT_LIMIT} pages/s of {PAGE_SIZE} allow.",
            f"It spent {cpu_per_100k:.1f} CPU seconds per 100,000 records, {cpu_share:.2f} of a core while it ran.",
        ],
        {"stats": stats, "connector": result.as_json(), "records_per_second": rate, "cpu_seconds_per_100k_records": cpu_per_100k},
    )


def median_pair(pairs: list[tuple[ConnectorRead, ConnectorRead]], figure: Callable[[ConnectorRead, ConnectorRead], float]) -> tuple[ConnectorRead, ConnectorRead, list[float]]:
    """The pair whose figure is the median, and every pair's figure in the order measured. Peak
    RSS depends on which profiles happen to be in flight together: one pair is one draw."""
    figures = [figure(*pair) for pair in pairs]
    median = sorted(range(len(pairs)), key=figures.__getitem__)[len(pairs) // 2]
    return (*pairs[median], figures)


def rss_scale(args: argparse.Namespace) -> Row:
    """Row 3a: memory must not grow with the number of profiles (beyond their ids and cursors)."""

    def peak(users: int) -> ConnectorRead:
        # user_events incremental: the records of a first full sync, plus the per-profile state.
        return sync({"users": users, "accounts": users // 10, "rate_limit": 0}, incremental=True, requests_per_second=UNPACED_BUDGET)[1]

    pairs = [(peak(USERS), peak(10 * USERS)) for _ in range(args.rss_repeats)]
    small, large, ratios = median_pair(pairs, lambda small, large: large.peak_rss_mib / small.peak_rss_mib)
    ratio = large.peak_rss_mib / small.peak_rss_mib
    return Row(
        f"Peak RSS (connector process, VmHWM), {len(STREAMS)} streams, {USERS * 11 // 10:,} vs {USERS * 110 // 10:,} profiles, no latency nor limit",
        [Check("peak RSS ratio", f"{small.peak_rss_mib:.0f} -> {large.peak_rss_mib:.0f} MiB = **{ratio:.2f}x**", "<= 1.10x", ratio <= 1.10)],
        f"median of {len(pairs)} pairs: {', '.join(f'{each:.2f}x' for each in ratios)}; {small.records:,} and {large.records:,} records; "
        f"user_events state {small.state_bytes.get('user_events', 0) / 1024:.0f} and {large.state_bytes.get('user_events', 0) / 1024:.0f} KiB",
        [f"Peak RSS went from {small.peak_rss_mib:.0f} MiB for {USERS * 11 // 10:,} profiles to {large.peak_rss_mib:.0f} MiB for {USERS * 110 // 10:,} ({ratio:.2f}x, the median of {len(pairs)} pairs)."],
        {"pairs": [{"small": small.as_json(), "large": large.as_json()} for small, large in pairs], "ratios": ratios},
    )


def rss_heavy_profile(args: argparse.Namespace) -> Row:
    """Row 3b: a profile with 100,000 events must not stand in memory whole."""
    users, heavy_events = 11, 100_000

    def peak(heavy: Optional[int]) -> ConnectorRead:
        return sync({"users": users, "accounts": 1, "rate_limit": 0, "heavy_user_events": heavy}, ("user_events",), requests_per_second=UNPACED_BUDGET)[1]

    pairs = [(peak(None), peak(heavy_events)) for _ in range(args.rss_repeats)]
    without, with_heavy, differences = median_pair(pairs, lambda without, with_heavy: with_heavy.peak_rss_mib - without.peak_rss_mib)
    difference = with_heavy.peak_rss_mib - without.peak_rss_mib
    return Row(
        f"Peak RSS, user_events of {users} users, one of them with {heavy_events:,} events vs none",
        [Check("peak RSS difference", f"{without.peak_rss_mib:.0f} -> {with_heavy.peak_rss_mib:.0f} MiB = **{difference:+.0f} MiB**", "< 50 MiB", difference < 50)],
        f"median of {len(pairs)} pairs: {', '.join(f'{each:+.0f}' for each in differences)} MiB; {without.records:,} and {with_heavy.records:,} records",
        [f"A profile of {heavy_events:,} events changed peak RSS by {difference:+.0f} MiB ({without.peak_rss_mib:.0f} -> {with_heavy.peak_rss_mib:.0f} MiB, the median of {len(pairs)} pairs)."],
        {"pairs": [{"without": without.as_json(), "with": with_heavy.as_json()} for without, with_heavy in pairs], "differences_mib": differences},
    )
