"""`make bench`: the request path at the real API's conditions (issues 13, 14 and 15), and the
user_events state at a million profiles (issue 17).

    python -m benchmarks.run                      # every row (see --list)
    python -m benchmarks.run --only budget,rss    # some rows, or groups of rows

Every figure is measured in the run that prints it: each row starts its own emulator and runs the
INSTALLED connector (`source-segment-profile`: reinstall it after a change; the header says
whether it is the working tree's and whether it changed during the run) as Airbyte would, and its
targets are checked against figures of that same row. Requests, 429s, requests sent during a
Retry-After wait and the elapsed time (first request's arrival to last answer) are the emulator's
own counters; records, CPU time (wait4) and peak RSS (VmHWM) are the connector process's. The
table and the raw figures go to bench-output/ (results.md and results.json; for a subset of rows,
results-<rows>.*). The exit status is 1 when a row misses its target or fails.

Issue 13, request path at real-API conditions (1,000 users and 100 accounts unless said):
  budget       7 streams, full refresh, 100 ms +-50% latency, 100/s limit, budget 100/s:
               successful requests/s / budget >= 0.95, no 429.
  heavy-pages  user_events only, every page full (200 events), 50 ms +-50% latency, 100/s limit
               and budget: records/s (first to last record's emitted_at) >= 0.95 x 100 pages/s x
               200 records; and the connector's CPU seconds per 100,000 records.
  rss-scale    7 streams, no latency nor limit: peak RSS at 10x the profiles <= 1.10x.
  rss-heavy    user_events of 11 users, with and without a profile of 100,000 events: < 50 MiB more.
               Both RSS rows: the median of --rss-repeats pairs of runs.
  loc          lines of source_segment_profile/*.py at 66942d9 and in the working tree. No target.
Issue 14, adaptive rate (the connector's default config, budget 80/s; 100 ms +-50% latency):
  uncontended  limit 100/s: successful requests/s / 80 >= 0.95, no 429.
  limit50-none, limit50-seconds, limit20-none, limit20-seconds
               the limit at 50 or 20/s, 429s without or with Retry-After (seconds): goodput /
               limit >= 0.85, 429s <= 5% and requests during a Retry-After wait <= 1% of requests.
               These four run side by side (see SIDE_BY_SIDE; --sequential not to).
  limit-drop   the limit drops from 100 to 30/s halfway, no Retry-After (Segment documents none):
               goodput / capacity >= 0.85 (capacity: the integral of min(limit, 80/s) over the
               run), 429s <= 5%, requests during a Retry-After wait <= 1% (none is sent).
Issue 15, the cost of the late-events lookback:
  lookback     1,000 users, user_events incremental, no latency nor limit: sync 1, the clock 1 h
               on, then sync 2 from sync 1's state with a lookback of 10 min, 24 h (the default)
               and 72 h: requests and records of sync 2, the re-emitted records (delivered by
               sync 1 already) and the difference from 10 min. No target. The emulator's default
               data (no --late-events): this row measures what the window costs, not what it catches.
Issue 17, the user_events state at a million profiles:
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
import codecs
import concurrent.futures
import hashlib
import importlib.metadata
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import traceback
import urllib.request
from array import array
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from integration_tests.connector_cli import STREAMS, configured_catalog, connector_command
from segment_profile_emulator.testing import running_emulator

OUTPUT = Path("bench-output")
REPOSITORY = Path(__file__).resolve().parent.parent
SEGMENT_LIMIT = 100  # requests/s per space (Segment product limits)
DEFAULT_BUDGET = 80  # the connector's default requests_per_second (spec.json)
PAGE_SIZE = 200  # the connector's default page_size, the largest the API takes for events
USERS, ACCOUNTS = 1000, 100
REAL_LATENCY = {"latency_ms": 100, "latency_spread": 0.5}
LOC_BEFORE = "66942d9"  # the last revision with the hand-written HTTP client and forked reader
# The heavy-pages row: each user has this many events, whole pages of 200, and there are enough
# users for this many seconds of reading at 100 pages/s.
EVENTS_PER_USER = 10 * PAGE_SIZE
HEAVY_READ_SECONDS = 32
# Budget for rows with neither latency nor limit: high enough that pacing never waits.
UNPACED_BUDGET = 5000


# --- running the connector and reading its output ---------------------------------------------


RECORD_LINE = b'{"type":"RECORD"'
STATE_LINE = b'{"type":"STATE"'
TRACE_LINE = b'{"type":"TRACE"'
READ_BLOCK = 1 << 20


class OutputTally:
    """What the benchmark needs of a connector's stdout, read a block at a time.

    This process shares the 2 cores with the connector and the emulator, so it does next to
    nothing per record: it counts record lines with bytes.count over whole blocks (a message is one
    line, so a record starts right after a newline), keeps the first and last record line for their
    emitted_at, and decodes only STATE lines (one per stream every 200 profiles), keeping the last
    of each stream and counting their messages and bytes. `output_file`, if given, receives the
    whole output.
    """

    def __init__(self, output_file: Optional[Path] = None):
        self.records = 0
        self.first_record: Optional[bytes] = None
        self.last_record: Optional[bytes] = None
        self.last_states: dict[str, dict] = {}
        # Per stream: STATE messages, the bytes of all their lines and of the last one, each line
        # as the connector wrote it to stdout without its newline (what the platform receives).
        self.state_messages: dict[str, int] = {}
        self.state_line_bytes: dict[str, int] = {}
        self.last_state_line_bytes: dict[str, int] = {}
        self.errors: list[str] = []  # the messages of TRACE errors, to say why a read failed
        self._sink = open(output_file, "wb") if output_file else None
        self._carry = b""

    def feed(self, block: bytes) -> None:
        """Takes the next block of output; a line cut at the block's end waits for the rest."""
        text = self._carry + block
        end = text.rfind(b"\n") + 1
        self._carry = text[end:]
        if end:
            self._complete_lines(text[:end])

    def close(self) -> None:
        if self._carry:
            self._complete_lines(self._carry + b"\n")
            self._carry = b""
        if self._sink:
            self._sink.close()

    def state_bytes(self, stream: str) -> int:
        """The size of a stream's last stream_state, as compact JSON; 0 if it sent none."""
        state = self.last_states.get(stream)
        return len(json.dumps(state["stream"]["stream_state"], separators=(",", ":"))) if state else 0

    def _complete_lines(self, lines: bytes) -> None:
        if self._sink:
            self._sink.write(lines)
        # Every message starts a line: look for the marker after a newline (and at the very start).
        framed = b"\n" + lines
        count = framed.count(b"\n" + RECORD_LINE)
        if count:
            self.records += count
            if self.first_record is None:
                self.first_record = _line_at(framed, framed.find(b"\n" + RECORD_LINE) + 1)
            self.last_record = _line_at(framed, framed.rfind(b"\n" + RECORD_LINE) + 1)
        at = framed.find(b"\n" + STATE_LINE)
        while at != -1:
            line = _line_at(framed, at + 1)
            state = json.loads(line)["state"]
            if "stream" in state:
                stream = state["stream"]["stream_descriptor"]["name"]
                self.last_states[stream] = state
                self.state_messages[stream] = self.state_messages.get(stream, 0) + 1
                self.state_line_bytes[stream] = self.state_line_bytes.get(stream, 0) + len(line)
                self.last_state_line_bytes[stream] = len(line)
            at = framed.find(b"\n" + STATE_LINE, at + 1)
        at = framed.find(b"\n" + TRACE_LINE)
        while at != -1:
            trace = json.loads(_line_at(framed, at + 1))["trace"]
            if trace.get("type") == "ERROR":
                self.errors.append(trace["error"].get("message") or "")
            at = framed.find(b"\n" + TRACE_LINE, at + 1)


def _line_at(text: bytes, start: int) -> bytes:
    return text[start : text.index(b"\n", start)]


def emitted_at(record_line: bytes) -> int:
    """A RECORD line's emitted_at (ms), without decoding the record."""
    return int(record_line[record_line.rindex(b'"emitted_at":') + 13 :].split(b"}", 1)[0].split(b",", 1)[0])


def event_keys(output_file: Path) -> set[tuple[str, str]]:
    """The primary keys (external_id, messageId) of the user_events records in a saved output."""
    keys = set()
    with open(output_file, "rb") as lines:
        for line in lines:
            if line.startswith(RECORD_LINE):
                record = json.loads(line)["record"]
                if record["stream"] == "user_events":
                    keys.add((record["data"]["external_id"], record["data"]["messageId"]))
    return keys


def event_digest(external_id: str, message_id: str) -> int:
    """A user_events primary key as 64 bits: 8 bytes a key where a tuple of two strings takes ~200
    (at 100,000 profiles the keys are compared by the hundred thousand)."""
    return int.from_bytes(hashlib.blake2b(f"{external_id}\0{message_id}".encode(), digest_size=8).digest(), "big")


def event_digests(output_file: Path) -> np.ndarray:
    """The digests of the user_events records' primary keys in a saved output, one per record (a
    record delivered twice is there twice), unsorted."""
    digests = array("Q")
    with open(output_file, "rb") as lines:
        for line in lines:
            if line.startswith(RECORD_LINE):
                record = json.loads(line)["record"]
                if record["stream"] == "user_events":
                    digests.append(event_digest(record["data"]["external_id"], record["data"]["messageId"]))
    return np.frombuffer(digests, dtype=np.uint64)


USERS_ARRAY = '"users":['  # where the ground truth's users start (after its space_id, now and seed)


def ground_truth_users(chunks: Iterable[bytes]) -> Iterator[dict]:
    """The users of an emulator's ground truth one at a time, from its JSON text in pieces of any
    size: at 100,000 users it is ~425 MB, which json.load would hold whole, and several times that
    as Python objects. Each user is decoded once the text holds the whole of it."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    text, at, in_users = "", 0, False
    for chunk in itertools.chain(chunks, [b""]):
        finished = not chunk
        text, at = text[at:] + utf8.decode(chunk, final=finished), 0
        if not in_users:
            start = text.find(USERS_ARRAY)
            if start == -1:
                continue
            at, in_users = start + len(USERS_ARRAY), True
        while True:
            while at < len(text) and text[at] in ", \n\r\t":
                at += 1
            if text.startswith("]", at):
                return
            try:
                user, at = decoder.raw_decode(text, at)
            except json.JSONDecodeError:
                break  # the user goes on in the next piece
            yield user
        if finished:
            raise ValueError(f"the ground truth ends inside its users: {text[at : at + 80]!r}")
    raise ValueError("the ground truth has no users")


def ground_truth_event_digests(emulator: Any) -> np.ndarray:
    """The digests of the user_events keys the emulator serves now (its ground truth, read as it
    streams), each user named as read_all_users reads it: `segment_id:<id>`."""
    digests = array("Q")
    with urllib.request.urlopen(f"{emulator.url}/_emulator/ground-truth", timeout=600) as answer:
        for user in ground_truth_users(iter(lambda: answer.read(READ_BLOCK), b"")):
            external_id = f"segment_id:{user['segment_id']}"
            digests.extend(event_digest(external_id, event.get("messageId") or event.get("message_id")) for event in user["events"])
    return np.frombuffer(digests, dtype=np.uint64)


class PeakRss:
    """The connector process's peak resident memory: the kernel's high-water mark (VmHWM), read
    every 20 ms while it runs (it only grows, so the last reading is the peak up to then). Not
    wait4's ru_maxrss: that counts the forked copy of this benchmark process before exec."""

    def __init__(self, pid: int):
        self.pid = pid
        self.kib = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while (peak := _peak_kib(self.pid)) is not None:
            self.kib = max(self.kib, peak)
            time.sleep(0.02)

    def mib(self) -> float:
        self._thread.join()
        return self.kib / 1024


def _peak_kib(pid: int) -> Optional[int]:
    """VmHWM of a process in KiB; None once it has exited (a zombie has no VmHWM line)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


@dataclass
class ConnectorRead:
    records: int
    wall_seconds: float  # the process, start to exit
    record_span_seconds: float  # first to last record's emitted_at
    cpu_seconds: float  # the process's user + system time (wait4)
    peak_rss_mib: float
    states: dict[str, dict] = field(default_factory=dict)  # the last STATE message of each stream
    state_bytes: dict[str, int] = field(default_factory=dict)  # its stream_state, as compact JSON
    # Per stream, STATE lines as written to stdout (OutputTally): how many, all their bytes, the last's.
    state_messages: dict[str, int] = field(default_factory=dict)
    state_line_bytes: dict[str, int] = field(default_factory=dict)
    last_state_line_bytes: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {name: value for name, value in vars(self).items() if name != "states"}


def read(workdir: Path, config: dict, catalog: dict, state: Optional[list] = None, output_file: Optional[Path] = None) -> ConnectorRead:
    """Runs the installed connector's `read` to the end; raises if it fails."""
    files = {"config": config, "catalog": catalog, **({"state": state} if state is not None else {})}
    command = [*connector_command(), "read"]
    for name, content in files.items():
        (workdir / f"{name}.json").write_text(json.dumps(content))
        command += [f"--{name}", str(workdir / f"{name}.json")]
    stderr_path = workdir / "stderr.log"
    started = time.monotonic()
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
    peak_rss = PeakRss(process.pid)
    tally = OutputTally(output_file)
    while block := process.stdout.read(READ_BLOCK):
        tally.feed(block)
    tally.close()
    # wait4 rather than Popen.wait: it also gives the process's own CPU time.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise RuntimeError(f"the connector exited with status {process.returncode}: {' / '.join(tally.errors)} {stderr_path.read_text()[-2000:]}".strip())
    span = emitted_at(tally.last_record) - emitted_at(tally.first_record) if tally.records else 0
    return ConnectorRead(
        records=tally.records,
        wall_seconds=wall,
        record_span_seconds=span / 1000,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=peak_rss.mib(),
        states=tally.last_states,
        state_bytes={stream: tally.state_bytes(stream) for stream in tally.last_states},
        state_messages=tally.state_messages,
        state_line_bytes=tally.state_line_bytes,
        last_state_line_bytes=tally.last_state_line_bytes,
    )


def connector_config(emulator: Any, profiles: dict, **overrides: Any) -> dict:
    """A config for every profile of `profiles` (the emulator's lookup_ids()); anything not in
    `overrides` is left to the connector's defaults."""
    return {
        "space_id": emulator.space_id,
        "access_token": emulator.token,
        "api_base_url": emulator.url,
        "user_external_ids": profiles["users"],
        "account_external_ids": profiles["accounts"],
        **overrides,
    }


def sync(emulator_options: dict, streams: tuple[str, ...] = STREAMS, incremental: bool = False, **config: Any) -> tuple[dict, ConnectorRead]:
    """One read against a fresh emulator: its stats (counted from the first request) and the read."""
    with running_emulator(**emulator_options) as emulator, tempfile.TemporaryDirectory() as workdir:
        profiles = emulator.lookup_ids()
        emulator.reset_stats()
        result = read(Path(workdir), connector_config(emulator, profiles, **config), configured_catalog(streams, incremental))
        return emulator.stats(), result


def rejected(stats: dict) -> int:
    """Every 429 the emulator sent (its rate limit's and any injected)."""
    return stats["by_status"].get("429", 0)


def goodput(stats: dict) -> float:
    """Successful requests per second of the emulator's elapsed time."""
    return stats["successful_requests"] / stats["elapsed_seconds"]


def run_summary(stats: dict) -> str:
    return (
        f"{stats['successful_requests']:,} successful of {stats['requests_total']:,} requests "
        f"in {stats['elapsed_seconds']:.1f} s, peak {stats['peak_in_flight']} in flight"
    )


def installed_connector() -> dict[str, bytes]:
    """The installed package's sources by path: what the console script runs. (Not the checkout's
    egg-info, which the current directory would put first.)"""
    site = sysconfig.get_paths()["purelib"]
    distribution = next(iter(importlib.metadata.distributions(name="source-segment-profile", path=[site])))
    return {
        str(path): distribution.locate_file(path).read_bytes()
        for path in distribution.files
        if str(path).startswith("source_segment_profile/") and str(path).endswith((".py", ".json"))
    }


def fingerprint(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path] + b"\0")
    return digest.hexdigest()[:10]


def compare_with_checkout(files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """(modules of the working tree that are installed differently or not at all, installed
    modules the working tree does not have: setuptools' build/ directory keeps deleted ones)."""
    checkout = {str(path.relative_to(REPOSITORY)): path.read_bytes() for path in (REPOSITORY / "source_segment_profile").rglob("*") if path.suffix in (".py", ".json")}
    differing = sorted(path for path, content in checkout.items() if files.get(path) != content)
    extra = sorted(path for path in files.keys() - checkout.keys() if path.endswith(".py"))
    return differing, extra


# --- rows ---------------------------------------------------------------------------------------


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
        f"Budget use: 7 streams, full refresh, {USERS + ACCOUNTS:,} profiles, 100 ms +-50% latency, limit {SEGMENT_LIMIT}/s, budget {budget}/s",
        checks,
        f"{run_summary(stats)}; {result.records:,} records; "
        f"{stats['requests_total'] / (USERS + ACCOUNTS):.2f} requests per profile",
        [f"With a budget of {budget}/s at a {SEGMENT_LIMIT}/s limit, the connector got {ratio:.2f} of its budget answered per second, with {rejected(stats)} 429s."],
        {"stats": stats, "connector": result.as_json()},
    )


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
        f"Peak RSS (connector process, VmHWM), 7 streams, {USERS * 11 // 10:,} vs {USERS * 110 // 10:,} profiles, no latency nor limit",
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


def uncontended(args: argparse.Namespace) -> Row:
    """Row 5: the default budget (80/s) is used when the space's limit leaves room for it."""
    stats, result = sync({"users": USERS, "accounts": ACCOUNTS, **REAL_LATENCY, "rate_limit": SEGMENT_LIMIT})
    ratio = goodput(stats) / DEFAULT_BUDGET
    return Row(
        f"Uncontended: limit {SEGMENT_LIMIT}/s, default config (budget {DEFAULT_BUDGET}/s), 7 streams, {USERS + ACCOUNTS:,} profiles",
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
            f"Contended: limit {limit:g}/s, 429s with {telling}, default config (budget {DEFAULT_BUDGET}/s), 7 streams, {USERS + ACCOUNTS:,} profiles",
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
        f"Limit drop: {before}/s, then {after}/s from {drop_after} s on, no Retry-After, default config (budget {DEFAULT_BUDGET}/s), 7 streams, {USERS + ACCOUNTS:,} profiles",
        checks,
        f"capacity {capacity:,.0f} requests (min(limit, {DEFAULT_BUDGET}/s) over the {elapsed:.1f} s); {run_summary(stats)}; {result.records:,} records",
        [f"When the limit dropped from {before}/s to {after}/s after {drop_after} s, goodput was {figures['goodput_ratio']:.2f} of capacity; {figures['share_429']:.1%} of requests drew a 429."],
        {"stats": stats, "connector": result.as_json(), "drop_after_seconds": drop_after, "capacity_requests": capacity, **figures},
    )


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


# Issue 17: the user_events state at a million profiles, measured at 10,000 and 100,000.
MILLION = 1_000_000
# Few events a user: one events page each, so that 100,000 profiles are read in minutes.
STATE_ROW_EVENTS_PER_USER = 2
# The issue's bounds: the final state, extrapolated from 100,000 profiles, at most 8 MB (decimal:
# 8,000,000 bytes), and all STATE bytes of a sync at most 20x its final state.
STATE_LIMIT_AT_A_MILLION = 8_000_000
STATE_TRAFFIC_LIMIT = 20
# The size whose final state is extrapolated against STATE_LIMIT_AT_A_MILLION (the issue's "measured at 100,000"),
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
    # Imported here, from the checkout: the one decoder of every state version (events_state.py
    # keeps it working across format changes), and the other rows need none of the connector.
    from source_segment_profile.events_state import profiles_read_through

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
    from source_segment_profile.events_state import profiles_read_through  # see profiles_at_each_state

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


ROWS: dict[str, tuple[str, Callable[[argparse.Namespace], Row]]] = {
    "budget": ("13", budget_use),
    "heavy-pages": ("13", heavy_pages),
    "rss-scale": ("13", rss_scale),
    "rss-heavy": ("13", rss_heavy_profile),
    "loc": ("13", lines_of_code),
    "uncontended": ("14", uncontended),
    "limit50-none": ("14", contended(50, "none")),
    "limit50-seconds": ("14", contended(50, "seconds")),
    "limit20-none": ("14", contended(20, "none")),
    "limit20-seconds": ("14", contended(20, "seconds")),
    "limit-drop": ("14", limit_drop),
    "lookback": ("15", lookback),
    "state-10k": ("17", state_at(STATE_SMALLER)),
    "state-100k": ("17", state_at(STATE_CHECKED_AT)),
}
GROUPS = {
    "issue13": [name for name, (issue, _) in ROWS.items() if issue == "13"],
    "issue14": [name for name, (issue, _) in ROWS.items() if issue == "14"],
    "issue15": [name for name, (issue, _) in ROWS.items() if issue == "15"],
    "issue17": [name for name, (issue, _) in ROWS.items() if issue == "17"],
    "rss": ["rss-scale", "rss-heavy"],
    "contention": ["limit50-none", "limit50-seconds", "limit20-none", "limit20-seconds", "limit-drop"],
    "state": ["state-10k", "state-100k"],
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


# --- the report ---------------------------------------------------------------------------------


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


def header(names: list[str], started: datetime, total_seconds: float, revision: str, differing: list[str], extra: list[str], results: list[dict]) -> str:
    """When and on what the figures were measured: whether the installed connector (which the rows
    run) was the working tree's at the start (`differing`, `extra`: compare_with_checkout), and
    whether it stayed the same throughout."""
    versions = sorted({version for result in results for version in result["installed"]})
    same = "the working tree's at the start" if not differing else f"differs from the working tree at the start in {', '.join(differing)}"
    stale = f", plus modules the working tree no longer has: {', '.join(extra)}" if extra else ""
    changed = "" if len(versions) <= 1 else "; IT CHANGED DURING THE RUN"
    return (
        f"`python -m benchmarks.run` ({'all rows' if names == list(ROWS) else 'rows ' + ', '.join(names)}), "
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"checkout {revision}, installed connector {', '.join(versions)} ({same}{stale}{changed}), {total_seconds / 60:.1f} min in all."
    )


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    args.measured = {}
    started, clock = datetime.now(timezone.utc), time.monotonic()
    revision = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPOSITORY, capture_output=True, text=True).stdout.strip()
    differing, extra = compare_with_checkout(installed_connector())
    results = []
    for batch in batches(names, args.sequential):
        with concurrent.futures.ThreadPoolExecutor(len(batch)) as pool:
            results += pool.map(lambda name: run_row(name, names.index(name) + 1, len(names), args), batch)
    total = time.monotonic() - clock
    total = time.monotonic() - clock

    together = next((batch for batch in batches(names, args.sequential) if len(batch) > 1), [])
    side_by_side = f" {', '.join(together)} ran side by side, each with its own emulator." if together else ""
    report = f"{header(names, started, total, revision, differing, extra, results)}{side_by_side}\n\n{table(results)}\n\n{what_this_says(results)}\n"
    print("\n" + report)
    OUTPUT.mkdir(exist_ok=True)
    stem = "results" if names == list(ROWS) else "results-" + "-".join(names)
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
