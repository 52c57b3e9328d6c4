"""Running the installed connector as Airbyte would, against the emulator: `read` (records, CPU
time, peak RSS and STATE messages of the connector process), `sync` (one read against a fresh
emulator) and the emulator's counters that the rows check."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmarks.connector_output import READ_BLOCK, OutputTally, emitted_at
from integration_tests.connector_cli import STREAMS, configured_catalog, connector_command
from segment_profile_emulator.testing import running_emulator

SEGMENT_LIMIT = 100  # requests/s per space (Segment product limits)
USERS, ACCOUNTS = 1000, 100
# Budget for rows with neither latency nor limit: high enough that pacing never waits.
UNPACED_BUDGET = 5000


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
