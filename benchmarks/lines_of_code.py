"""The row of the connector's size (issue 13):
  loc          lines of source_segment_profile/*.py at 66942d9 and in the working tree. No target.
"""

from __future__ import annotations

import argparse
import subprocess

from benchmarks.checkout import REPOSITORY
from benchmarks.report import Row, share

LOC_BEFORE = "66942d9"  # the last revision with the hand-written HTTP client and forked reader


def code_lines(text: str) -> int:
    """Lines that are neither blank nor only a comment (docstrings count: they are read too)."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def lines_of_code(args: argparse.Namespace) -> Row:
    """Row 4: the connector's size before issue 13's rewrite and now (the working tree)."""

    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=REPOSITORY, check=True, capture_output=True, text=True).stdout

    before_files = [path for path in git("ls-tree", "-r", "--name-only", LOC_BEFORE, "source_segment_profile/").split() if path.endswith(".py")]
    before = [git("show", f"{LOC_BEFORE}:{path}") for path in before_files]
    now_files = sorted((REPOSITORY / "source_segment_profile").rglob("*.py"))
    now = [path.read_text() for path in now_files]
    counted = {name: (sum(map(code_lines, texts)), sum(len(text.splitlines()) for text in texts)) for name, texts in (("before", before), ("now", now))}
    (before_code, before_all), (now_code, now_all) = counted["before"], counted["now"]
    change = now_code - before_code
    return Row(
        f"Lines of code, source_segment_profile/*.py, non-blank non-comment (wc -l): {LOC_BEFORE} vs working tree",
        [],
        f"{before_code:,} ({before_all:,}) in {len(before_files)} files -> **{now_code:,}** ({now_all:,}) in {len(now_files)} files = {change:+,} ({share(change, before_code):+.0%})",
        [f"source_segment_profile/ has {now_code:,} lines of code, {change:+,} ({share(change, before_code):+.0%}) from {before_code:,} at {LOC_BEFORE}."],
        {"before": {"revision": LOC_BEFORE, "files": len(before_files), "code_lines": before_code, "lines": before_all},
         "now": {"files": len(now_files), "code_lines": now_code, "lines": now_all}},
    )
