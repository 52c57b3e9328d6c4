"""Rows of the request rate: how much of its budget, or of the space's limit, the connector gets
answered per second, and how many 429s it draws.

Issue 13, request path at real-API conditions (1,000 users and 100 accounts unless said):
  budget       every stream, full refresh, 100 ms +-50% latency, 100/s limit, budget 100/s:
               successful requests/s / budget >= 0.95, no 429.
Issue 14, adaptive rate (the connector's default config, budget 80/s; 100 ms +-50% latency):
  uncontended  limit 100/s: successful requests/s / 80 >= 0.95, no 429.
  limit50-none, limit50-seconds, limit20-none, limit20-seconds
               the limit at 50 or 20/s, 429s without or with Retry-After (seconds): goodput /
               limit >= 0.85, 429s <= 5% and requests during a Retry-After wait <= 1% of requests.
               These four run side by side (see SIDE_BY_SIDE in run.py; --sequential not to).
  limit-drop   the limit drops from 100 to 30/s halfway, no Retry-After (Segment documents none):
               goodput / capacity >= 0.85 (capacity: the integral of min(limit, 80/s) over the
               run), 429s <= 5%, requests during a Retry-After wait <= 1% (none is sent).
"""

from __future__ import annotations

import argparse
from typing import Callable

from benchmarks.connector_runs import ACCOUNTS, SEGMENT_LIMIT, STREAMS, USERS, goodput, rejected, run_summary, sync
from benchmarks.report import Check, Row, share

DEFAULT_BUDGET = 80  # the connector's default requests_per_second (spec.json)
REAL_LATENCY = {"latency_ms": 100, "latency_spread": 0.5}


def budget_use(args: argparse.Namespace) -> Row:
    """Row 1: at the documented limit, with a budget equal to it, the budget is the speed limit."""
    budget = SEGMENT_LIMIT
    stats, result = sync({"users": USERS, "accounts": ACCOUNTS, **REAL_LATENCY, "rate_limit": SEGMENT_LIMIT}, requests_per_second=budget)
    ratio = goodput(stats) / budget
    checks = [
        Check("successful requests/s / budget", f"{goodput(stats):.1f}/s = **{ratio:.2f}**", ">= 0.95", ratio >= 0.95),
        Check("429s", f"**{rejected(stats)}**", "0", rejected(stats) == 0),
    ]
    return Row(
        f"Budget use: {len(STREAMS)} streams, full refresh, {USERS + ACCOUNTS:,} profiles, 100 ms +-50% latency, limit {SEGMENT_LIMIT}/s, budget {budget}/s",
        checks,
        f"{run_summary(stats)}; {result.records:,} records; "
        f"{stats['requests_total'] / (USERS + ACCOUNTS):.2f} requests per profile",
        [f"With a budget of {budget}/s at a {SEGMENT_LIMIT}/s limit, the connector got {ratio:.2f} of its budget answered per second, with {rejected(stats)} 429s."],
        {"stats": stats, "connector": result.as_json()},
    )


def uncontended(args: argparse.Namespace) -> Row:
    """Row 5: the default budget (80/s) is used when the space's limit leaves room for it."""
    stats, result = sync({"users": USERS, "accounts": ACCOUNTS, **REAL_LATENCY, "rate_limit": SEGMENT_LIMIT})
    ratio = goodput(stats) / DEFAULT_BUDGET
    return Row(
        f"Uncontended: limit {SEGMENT_LIMIT}/s, default config (budget {DEFAULT_BUDGET}/s), {len(STREAMS)} streams, {USERS + ACCOUNTS:,} profiles",
        [
            Check("successful requests/s / budget", f"{goodput(stats):.1f}/s = **{ratio:.2f}**", ">= 0.95", ratio >= 0.95),
            Check("429s", f"**{rejected(stats)}**", "0", rejected(stats) == 0),
        ],
        f"{run_summary(stats)}; {result.records:,} records",
        [f"Uncontended, the default config got {ratio:.2f} of its {DEFAULT_BUDGET}/s budget answered per second, with {rejected(stats)} 429s."],
        {"stats": stats, "connector": result.as_json()},
    )


def contention_checks(stats: dict, served: float, capacity_name: str, retry_after: str) -> tuple[list[Check], dict]:
    """The three targets of a contended run: goodput / what the server could serve, the share of
    429s, the share of requests sent during a Retry-After wait (none without Retry-After)."""
    ratio = goodput(stats) / served
    total = stats["requests_total"]
    throttled = share(rejected(stats), total)
    during_wait = share(stats["requests_during_retry_after"], total)
    checks = [
        Check(f"goodput / {capacity_name}", f"{goodput(stats):.1f}/s = **{ratio:.2f}**", ">= 0.85", ratio >= 0.85),
        Check("429s / requests", f"**{throttled:.1%}** ({rejected(stats):,})", "<= 5%", throttled <= 0.05),
        Check(
            "sent during Retry-After / requests",
            f"**{during_wait:.1%}** ({stats['requests_during_retry_after']:,})" if retry_after != "none" else f"{during_wait:.1%} (no Retry-After sent)",
            "<= 1%",
            during_wait <= 0.01,
        ),
    ]
    return checks, {"goodput_ratio": ratio, "share_429": throttled, "share_during_retry_after": during_wait}


def contended(limit: float, retry_after: str) -> Callable[[argparse.Namespace], Row]:
    """Rows 6-9: the space's other callers leave `limit` requests/s of the connector's 80."""

    def row(args: argparse.Namespace) -> Row:
        stats, result = sync({"users": USERS, "accounts": ACCOUNTS, **REAL_LATENCY, "rate_limit": limit, "retry_after": retry_after})
        checks, figures = contention_checks(stats, limit, "limit", retry_after)
        telling = "no Retry-After" if retry_after == "none" else f"Retry-After ({retry_after})"
        return Row(
            f"Contended: limit {limit:g}/s, 429s with {telling}, default config (budget {DEFAULT_BUDGET}/s), {len(STREAMS)} streams, {USERS + ACCOUNTS:,} profiles",
            checks,
            f"{run_summary(stats)}; {result.records:,} records",
            [
                f"At a {limit:g}/s limit with {telling}, goodput was {figures['goodput_ratio']:.2f} of the limit and {figures['share_429']:.1%} of requests drew a 429"
                + ("." if retry_after == "none" else f"; {figures['share_during_retry_after']:.1%} were sent during a Retry-After wait.")
            ],
            {"stats": stats, "connector": result.as_json(), **figures},
        )

    row.__doc__ = contended.__doc__
    return row


def limit_drop(args: argparse.Namespace) -> Row:
    """Row 10: the limit drops from 100 to 30/s halfway through the sync (no Retry-After: Segment
    documents none). Halfway: half the elapsed time of the uncontended row if it ran before in this
    run, else --drop-after seconds."""
    before, after = SEGMENT_LIMIT, 30
    measured = args.measured.get("uncontended")
    drop_after = args.drop_after or (round(measured["stats"]["elapsed_seconds"] / 2) if measured else 30)
    emulator = {"users": USERS, "accounts": ACCOUNTS, **REAL_LATENCY, "rate_limit": before, "rate_limit_schedule": f"{drop_after}:{after}", "retry_after": "none"}
    stats, result = sync(emulator)
    elapsed = stats["elapsed_seconds"]
    capacity = min(before, DEFAULT_BUDGET) * min(elapsed, drop_after) + min(after, DEFAULT_BUDGET) * max(0.0, elapsed - drop_after)
    checks, figures = contention_checks(stats, capacity / elapsed, "capacity", emulator["retry_after"])
    return Row(
        f"Limit drop: {before}/s, then {after}/s from {drop_after} s on, no Retry-After, default config (budget {DEFAULT_BUDGET}/s), {len(STREAMS)} streams, {USERS + ACCOUNTS:,} profiles",
        checks,
        f"capacity {capacity:,.0f} requests (min(limit, {DEFAULT_BUDGET}/s) over the {elapsed:.1f} s); {run_summary(stats)}; {result.records:,} records",
        [f"When the limit dropped from {before}/s to {after}/s after {drop_after} s, goodput was {figures['goodput_ratio']:.2f} of capacity; {figures['share_429']:.1%} of requests drew a 429."],
        {"stats": stats, "connector": result.as_json(), "drop_after_seconds": drop_after, "capacity_requests": capacity, **figures},
    )
