"""Issue 15, the cost of the late-events lookback:
  lookback     1,000 users, user_events incremental, no latency nor limit: sync 1, the clock 1 h
               on, then sync 2 from sync 1's state with a lookback of 10 min, 24 h (the default)
               and 72 h: requests and records of sync 2, the re-emitted records (delivered by
               sync 1 already) and the difference from 10 min. No target. The emulator's default
               data (no --late-events): this row measures what the window costs, not what it catches.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.connector_output import event_keys
from benchmarks.connector_runs import UNPACED_BUDGET, USERS, connector_config, read
from benchmarks.report import Row
from integration_tests.connector_cli import configured_catalog
from segment_profile_emulator.testing import running_emulator

LOOKBACKS_HOURS = {"10 min": 1 / 6, "24 h (default)": None, "72 h": 72}


def lookback(args: argparse.Namespace) -> Row:
    """Row 11: what re-reading the lookback window costs a sync an hour after the last."""
    catalog = configured_catalog(("user_events",), incremental=True)
    with running_emulator(users=USERS, accounts=1, rate_limit=0) as emulator, tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        profiles = emulator.lookup_ids()
        config = connector_config(emulator, profiles, requests_per_second=UNPACED_BUDGET)
        emulator.reset_stats()
        first = read(workdir, config, catalog, output_file=workdir / "sync1.jsonl")
        first_stats = emulator.stats()
        delivered = event_keys(workdir / "sync1.jsonl")
        state = [first.states["user_events"]]
        emulator.advance_clock(3600)
        seconds = {}
        for name, hours in LOOKBACKS_HOURS.items():
            lookback_config = config if hours is None else {**config, "events_lookback_hours": hours}
            emulator.reset_stats()
            second = read(workdir, lookback_config, catalog, state=state, output_file=workdir / "sync2.jsonl")
            keys = event_keys(workdir / "sync2.jsonl")
            stats = emulator.stats()
            seconds[name] = {"requests": stats["requests_total"], "records": second.records, "re_emitted": len(keys & delivered), "new": len(keys - delivered), "stats": stats}
    base = seconds["10 min"]
    cells = []
    says = []
    for name, figures in seconds.items():
        extra_requests, extra_records = figures["requests"] - base["requests"], figures["re_emitted"] - base["re_emitted"]
        cells.append(
            f"{name}: {figures['requests']:,} requests, {figures['records']:,} records ({figures['re_emitted']:,} re-emitted, {figures['new']:,} new)"
            + ("" if figures is base else f", **{extra_requests:+,} requests, {extra_records:+,} re-emitted** vs 10 min")
        )
        if figures is not base:
            says.append(f"A lookback of {name} cost {extra_requests:+,} requests and {extra_records:+,} re-emitted records per sync of {USERS:,} users against one of 10 min.")
    return Row(
        f"Lookback cost: sync 2 of user_events, {USERS:,} users, 1 h after sync 1 ({first.records:,} records, {first_stats['requests_total']:,} requests), no latency nor limit",
        [],
        "; ".join(cells),
        says,
        {"sync1": {"stats": first_stats, "connector": first.as_json()}, "sync2": seconds},
    )
