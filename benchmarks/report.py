"""What a row measured (Row, with a Check per target) and the report of a run: its header, the
table and "What this says"."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import datetime
from typing import Optional


@dataclass
class Check:
    """One target: a measured figure, how it is shown, and whether it met the target."""

    label: str  # what the figure is, e.g. "429s"
    shown: str  # the figure, e.g. "0"
    target: str  # e.g. "0"
    met: bool


@dataclass
class Row:
    measure: str
    checks: list[Check]
    details: str  # figures behind the checked ones
    says: list[str]  # plain restatements of the figures, for "What this says"
    raw: dict

    @property
    def passed(self) -> Optional[bool]:
        return all(check.met for check in self.checks) if self.checks else None


def share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def verdict(row: Optional[Row]) -> str:
    if row is None:
        return "FAIL (error)"
    return {True: "PASS", False: "FAIL", None: "no target"}[row.passed]


def table(results: list[dict]) -> str:
    lines = ["| row | measure | result | target | | run time |", "|---|---|---|---|---|---|"]
    for result in results:
        row: Optional[Row] = result["row"]
        if row is None:
            cells = (result["name"], f"`{result['name']}`", f"error: {result['error']}", "", verdict(row))
        else:
            figures = "; ".join(f"{check.label} {check.shown}" for check in row.checks)
            targets = "; ".join(f"{check.target}" for check in row.checks) or "-"
            missed = [check.label for check in row.checks if not check.met]
            shown = verdict(row) + (f": {', '.join(missed)}" if missed else "")
            cells = (result["name"], row.measure, "; ".join(filter(None, [figures, row.details])), targets, f"**{shown}**" if missed else shown)
        if len(result["installed"]) > 1:
            cells = (*cells[:-1], f"{cells[-1]} (the installed connector changed during the row)")
        lines.append("| " + " | ".join([*cells, f"{result['seconds']:.0f} s"]) + " |")
    return "\n".join(lines)


def what_this_says(results: list[dict]) -> str:
    lines = [f"- {sentence}" for result in results if result["row"] for sentence in result["row"].says]
    missed = [result["name"] for result in results if verdict(result["row"]).startswith("FAIL")]
    met = [result["name"] for result in results if verdict(result["row"]) == "PASS"]
    lines.append(f"- Targets met: {', '.join(met) or 'none'}; missed: {', '.join(missed) or 'none'}.")
    return "What this says:\n\n" + "\n".join(lines)


def header(names: list[str], every_row: bool, started: datetime, total_seconds: float, revision: str, differing: list[str], extra: list[str], results: list[dict]) -> str:
    """When and on what the figures were measured (`every_row`: whether `names` are all the rows):
    whether the installed connector (which the rows run) was the working tree's at the start
    (`differing`, `extra`: compare_with_checkout), and whether it stayed the same throughout."""
    versions = sorted({version for result in results for version in result["installed"]})
    same = "the working tree's at the start" if not differing else f"differs from the working tree at the start in {', '.join(differing)}"
    stale = f", plus modules the working tree no longer has: {', '.join(extra)}" if extra else ""
    changed = "" if len(versions) <= 1 else "; IT CHANGED DURING THE RUN"
    return (
        f"`python -m benchmarks.run` ({'all rows' if every_row else 'rows ' + ', '.join(names)}), "
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"checkout {revision}, installed connector {', '.join(versions)} ({same}{stale}{changed}), {total_seconds / 60:.1f} min in all."
    )
