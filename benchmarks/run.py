"""`make bench`: the request path at the real API's conditions (issues 13, 14 and 15), the
user_events state at a million profiles (issue 17), and skipping unchanged profiles (issue 25).

    python -m benchmarks.run                      # every row (see --list)
    python -m benchmarks.run --only budget,rss    # some rows, or groups of rows
    python -m benchmarks.run --only skip          # issue 25's six rows (one measurement)

Every figure is measured in the run that prints it: each row starts its own emulator and runs the
INSTALLED connector (`source-segment-profile`: reinstall it after a change; the header says
whether it is the working tree's and whether it changed during the run) as Airbyte would, and its
targets are checked against figures of that same row. Requests, 429s, requests sent during a
Retry-After wait and the elapsed time (first request's arrival to last answer) are the emulator's
own counters; records, CPU time (wait4) and peak RSS (VmHWM) are the connector process's. The
table and the raw figures go to bench-output/ (results.md and results.json; for a subset of rows,
results-<rows>.*). The exit status is 1 when a row misses its target or fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from benchmarks import heavy_pages_and_rss, lines_of_code, lookback, request_rate, skip_unchanged, state_size
from benchmarks.checkout import REPOSITORY, compare_with_checkout, fingerprint, installed_connector
from benchmarks.report import Row, header, table, verdict, what_this_says

OUTPUT = Path("bench-output")
# The modules of rows, in the order of their first row in the table: their docstrings are --help's.
ROW_MODULES = (request_rate, heavy_pages_and_rss, lines_of_code, lookback, state_size, skip_unchanged)
ROWS: dict[str, tuple[str, Callable[[argparse.Namespace], Row]]] = {
    "budget": ("13", request_rate.budget_use),
    "heavy-pages": ("13", heavy_pages_and_rss.heavy_pages),
    "rss-scale": ("13", heavy_pages_and_rss.rss_scale),
    "rss-heavy": ("13", heavy_pages_and_rss.rss_heavy_profile),
    "loc": ("13", lines_of_code.lines_of_code),
    "uncontended": ("14", request_rate.uncontended),
    "limit50-none": ("14", request_rate.contended(50, "none")),
    "limit50-seconds": ("14", request_rate.contended(50, "seconds")),
    "limit20-none": ("14", request_rate.contended(20, "none")),
    "limit20-seconds": ("14", request_rate.contended(20, "seconds")),
    "limit-drop": ("14", request_rate.limit_drop),
    "lookback": ("15", lookback.lookback),
    "state-10k": ("17", state_size.state_at(state_size.STATE_SMALLER)),
    "state-100k": ("17", state_size.state_at(state_size.STATE_CHECKED_AT)),
    # One measurement (skip_unchanged.measure) for the six: the first selected makes it.
    "skip-today": ("25", skip_unchanged.today_row),
    "skip-0": ("25", skip_unchanged.sync_row("2a")),
    "skip-10": ("25", skip_unchanged.sync_row("2b")),
    "skip-100": ("25", skip_unchanged.sync_row("2c")),
    "skip-delivered": ("25", skip_unchanged.delivered_row),
    "skip-1m": ("25", skip_unchanged.million_row),
}
GROUPS = {
    "issue13": [name for name, (issue, _) in ROWS.items() if issue == "13"],
    "issue14": [name for name, (issue, _) in ROWS.items() if issue == "14"],
    "issue15": [name for name, (issue, _) in ROWS.items() if issue == "15"],
    "issue17": [name for name, (issue, _) in ROWS.items() if issue == "17"],
    "issue25": [name for name, (issue, _) in ROWS.items() if issue == "25"],
    "rss": ["rss-scale", "rss-heavy"],
    "contention": ["limit50-none", "limit50-seconds", "limit20-none", "limit20-seconds", "limit-drop"],
    "state": ["state-10k", "state-100k"],
    "skip": [name for name, (issue, _) in ROWS.items() if issue == "25"],
}


def selected_rows(only: Optional[str]) -> list[str]:
    """Row names in table order from a comma-separated list of rows and groups (None: all)."""
    if not only:
        return list(ROWS)
    wanted = set()
    for name in filter(None, (part.strip() for part in only.split(","))):
        if name in GROUPS:
            wanted.update(GROUPS[name])
        elif name in ROWS:
            wanted.add(name)
        else:
            raise SystemExit(f"unknown row {name!r}; rows: {', '.join(ROWS)}; groups: {', '.join(GROUPS)}")
    return [name for name in ROWS if name in wanted]



# These rows' pace is set by the limit (20 or 50 requests/s), so that together they use a small
# share of one core (each connector's CPU seconds are in the raw JSON): side by side, each with its
# own emulator, they take the time of the longest instead of the sum. --sequential to compare.
SIDE_BY_SIDE = ("limit50-none", "limit50-seconds", "limit20-none", "limit20-seconds")


def batches(names: list[str], sequential: bool) -> list[list[str]]:
    """The selected rows in table order, one at a time, but the SIDE_BY_SIDE rows in one batch."""
    together = [name for name in names if name in SIDE_BY_SIDE and not sequential]
    result: list[list[str]] = []
    for name in names:
        if name not in together:
            result.append([name])
        elif name == together[0]:
            result.append(together)
    return result


def run_row(name: str, position: int, count: int, args: argparse.Namespace) -> dict:
    """Measures one row; an error becomes the row's result, so that the others still report."""
    function = ROWS[name][1]
    print(f"[{position}/{count}] {name}: {(function.__doc__ or '').splitlines()[0]}", flush=True)
    started, installed_before = time.monotonic(), fingerprint(installed_connector())
    try:
        row, error = function(args), None
        args.measured[name] = row.raw
    except Exception as exception:
        row, error = None, f"{type(exception).__name__}: {exception}"
        traceback.print_exc()
    seconds = time.monotonic() - started
    installed_after = fingerprint(installed_connector())
    print(f"    [{position}/{count}] {name}: {verdict(row)} in {seconds:.0f} s", flush=True)
    return {"name": name, "row": row, "error": error, "seconds": seconds, "installed": sorted({installed_before, installed_after})}


def main(argv: Optional[list[str]] = None) -> int:
    description = "\n".join([__doc__, *(module.__doc__ for module in ROW_MODULES)])
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated rows or groups (default: all); see --list")
    parser.add_argument("--list", action="store_true", help="list the rows and groups, then exit")
    parser.add_argument("--rss-repeats", type=int, default=3, help="pairs of runs for each peak RSS row (the median is reported)")
    parser.add_argument("--sequential", action="store_true", help=f"run {', '.join(SIDE_BY_SIDE)} one after another, not side by side")
    parser.add_argument("--drop-after", type=float, help="limit-drop: seconds until the limit drops (default: half the uncontended row's run, else 30)")
    args = parser.parse_args(argv)
    if args.list:
        print("rows:", ", ".join(ROWS))
        print("\n".join(f"group {name}: {', '.join(rows)}" for name, rows in GROUPS.items()))
        return 0
    names = selected_rows(args.only)
    every_row = names == list(ROWS)
    args.measured = {}
    started, clock = datetime.now(timezone.utc), time.monotonic()
    revision = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPOSITORY, capture_output=True, text=True).stdout.strip()
    differing, extra = compare_with_checkout(installed_connector())
    results = []
    for batch in batches(names, args.sequential):
        with concurrent.futures.ThreadPoolExecutor(len(batch)) as pool:
            results += pool.map(lambda name: run_row(name, names.index(name) + 1, len(names), args), batch)
    total = time.monotonic() - clock

    together = next((batch for batch in batches(names, args.sequential) if len(batch) > 1), [])
    side_by_side = f" {', '.join(together)} ran side by side, each with its own emulator." if together else ""
    report = f"{header(names, every_row, started, total, revision, differing, extra, results)}{side_by_side}\n\n{table(results)}\n\n{what_this_says(results)}\n"
    print("\n" + report)
    OUTPUT.mkdir(exist_ok=True)
    stem = "results" if every_row else "results-" + "-".join(names)
    (OUTPUT / f"{stem}.md").write_text(report)
    raw = {
        "started": started.isoformat(),
        "total_seconds": total,
        "rows": [
            {"name": result["name"], "seconds": result["seconds"], "verdict": verdict(result["row"]), "error": result["error"], "installed": result["installed"],
             **({"measure": result["row"].measure, "checks": [vars(check) for check in result["row"].checks], "raw": result["row"].raw} if result["row"] else {})}
            for result in results
        ],
    }
    (OUTPUT / f"{stem}.json").write_text(json.dumps(raw, indent=2))
    return 0 if all(verdict(result["row"]) in ("PASS", "no target") for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
