"""Run the emulator for a test: `with running_emulator(users=50, rate_limit=0) as emulator: ...`.

The emulator runs in a subprocess, as it would beside a connector, so that its threads and its
GIL do not share the test's process, and so that it is always stopped when the test ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .settings import EmulatorSettings

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
# A space of 100,000 users takes about 20 s to index on a 2-core machine (cli.main prints the time).
READY_TIMEOUT_SECONDS = 120


class RunningEmulator:
    """A started emulator: its address and credentials, and its admin routes as methods."""

    def __init__(self, url: str, space_id: str, token: str, process: subprocess.Popen):
        self.url = url
        self.space_id = space_id
        self.token = token
        self.process = process

    def profile_url(self, collection: str, external_id: str, resource: str) -> str:
        """The URL of a profile endpoint, with the external id percent-encoded as it must be."""
        encoded = urllib.parse.quote(external_id, safe=":")
        return f"{self.url}/v1/spaces/{self.space_id}/collections/{collection}/profiles/{encoded}/{resource}"

    def stats(self) -> dict:
        return self._admin("GET", "stats")

    def reset_stats(self) -> dict:
        return self._admin("POST", "stats/reset")

    def requests(self) -> list[dict]:
        return self._admin("GET", "requests")

    def clock(self) -> str:
        """The emulated `now`."""
        return self._admin("GET", "clock")["now"]

    def advance_clock(self, seconds: float) -> str:
        """Moves the emulated clock forward; returns the new `now`."""
        return self._admin("POST", f"clock?advance_seconds={seconds}")["now"]

    def ground_truth(self) -> dict:
        return self._admin("GET", "ground-truth")

    def lookup_ids(self) -> dict:
        """{"users": [...], "accounts": [...]}: every profile's lookup id, without the ground truth."""
        return self._admin("GET", "lookup-ids")

    def set_faults(self, **knobs: Any) -> dict:
        """Changes runtime knobs (snake_case, as the CLI flags): faults, latency, rate limit and
        schedule, Retry-After, gzip, max_list_limit, no_list_method, vanishing profiles,
        computed_traits_epoch."""
        return self._admin("POST", "faults", knobs)

    def vanishing_profiles(self) -> dict:
        """{"after_requests": K, "users": [...], "accounts": [...]}: the lookup ids of the profiles
        that answer 404 once K profile requests have arrived (vanish_* knobs)."""
        return self._admin("GET", "vanishing-profiles")

    def deliver_messages(
        self, kind: str, users: list[str] | None = None, fraction: float | None = None, count: int = 1
    ) -> dict:
        """Delivers `count` new messages of `kind` ("track", "identify" or "group") to each of
        `users` (lookup ids) or to round(fraction * users) users evenly spread over the space; they
        arrive now (the clock then moves 1 ms on). Returns what was delivered:
        {"kind", "arrival", "now", "messages", "users": [{"lookup_id", "message_ids", ...}]}."""
        body: dict[str, Any] = {"kind": kind, "count": count}
        if users is not None:
            body["users"] = list(users)
        if fraction is not None:
            body["fraction"] = fraction
        return self._admin("POST", "messages", body)

    def _admin(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/_emulator/{route}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)


def emulator_command(**options: Any) -> list[str]:
    """The CLI invocation for options named like the flags: rate_limit=0 -> --rate-limit 0,
    gzip=True -> --gzip (a switch; False and None leave an option out)."""
    command = [sys.executable, "-m", "segment_profile_emulator"]
    for name, value in options.items():
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            command.append(flag)
        elif value is not None and value is not False:
            command += [flag, str(value)]
    return command


@contextmanager
def running_emulator(**options: Any) -> Iterator[RunningEmulator]:
    """Starts the emulator CLI with `options` on a free port; stops it when the block ends."""
    with tempfile.TemporaryDirectory(prefix="segment-emulator-") as workdir:
        ready_file = Path(workdir) / "ready.json"
        log_path = Path(workdir) / "emulator.log"
        options = {"port": 0, **options, "ready_file": ready_file}
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(emulator_command(**options), stdout=log, stderr=subprocess.STDOUT, env=environment)
        try:
            ready = _wait_until_ready(process, ready_file, log_path)
            yield RunningEmulator(
                ready["url"],
                options.get("space_id", EmulatorSettings.space_id),
                options.get("token", EmulatorSettings.token),
                process,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_ready(process: subprocess.Popen, ready_file: Path, log_path: Path) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if ready_file.exists():
            return json.loads(ready_file.read_text())
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited with {process.returncode}:\n{log_path.read_text()}")
        time.sleep(0.02)
    raise TimeoutError(f"the emulator was not ready after {READY_TIMEOUT_SECONDS}s:\n{log_path.read_text()}")
