"""Writes unit_tests/resource/states/: states that released versions of the connector wrote (issue 21).

Each version's own code writes its states: a git worktree of its commit, its main.py run as the
CLI with only that worktree on PYTHONPATH (ahead of the installed package), against the emulator
of the same worktree. A fixture file is one STATE message as that version emitted it; what wrote
it (commit, version, commands, emulator flags, config) is in manifest.json beside it, which
unit_tests/test_released_states.py reads to start the same emulator.

    .venv/bin/python scripts/write_released_states.py

Never edit a fixture by hand: run this again (it writes every file anew).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from segment_profile_emulator.testing import RunningEmulator, _wait_until_ready, emulator_command  # noqa: E402
from source_segment_profile.masking import profile_state_key  # noqa: E402

STATES_DIR = REPO_ROOT / "unit_tests" / "resource" / "states"
TOKEN, SPACE_ID = "emulator-token", "spa_demo"
NOW = "2026-11-25T12:00:00Z"  # before every commit below, so no cursor they wrote is in the tests' future
# A second sync comes this much later on the API's clock, so its watermark differs from the first's.
HOURS_BETWEEN_SYNCS = 6

# The last commit that wrote each state version. 0.1.0 wrote version 1 up to c4f7dce, which already
# writes version 2 (30832ee, the 0.2.0 release, only changed version numbers); version 3 came with
# 3010228, still called 0.2.0.
RELEASES = {
    1: ("c4f7dce^", "0.1.0"),
    2: ("30832ee", "0.2.0"),
    3: ("971438b", "0.2.0 (unreleased: state version 3)"),
}
EMULATORS = {
    "small": {"users": 12, "accounts": 3, "seed": 7, "now": NOW, "rate_limit": 0},
    # A checkpoint comes every 200 profiles: 210 configured ids and 300 listed users give one
    # inside the configured ids and one inside the listing.
    "large": {"users": 300, "accounts": 3, "seed": 7, "now": NOW, "rate_limit": 0},
}
CONFIGURED_USERS = {"small": 12, "large": 210}


Pick = Callable[[list[dict]], dict]  # a sync's messages -> the STATE message to keep


@dataclass
class Run:
    """Syncs of one stream by one version; `picks`: fixture file -> (which sync, which of its STATE messages)."""

    state_version: int
    emulator: str
    stream: str
    sync_mode: str
    syncs: int
    picks: dict[str, tuple[int, Pick]]
    read_all_users: bool = False

    @property
    def config_name(self) -> str:
        return self.emulator + ("_all_users" if self.read_all_users else "")


def last_state(messages: list[dict]) -> dict:
    return states_of(messages)[-1]


def first_reading_at(kind: str) -> Pick:
    """The first STATE message whose reading position is of `kind` ("configured:" or "listed:")."""
    return lambda messages: next(state for state in states_of(messages) if reading_of(state).get("position", "").startswith(kind))


RUNS = [
    Run(1, "small", "user_events", "incremental", 1, {"v1_user_events_final.json": (0, last_state)}),
    Run(2, "small", "user_events", "incremental", 1, {"v2_user_events_final.json": (0, last_state)}),
    Run(3, "small", "user_events", "incremental", 2, {
        "v3_user_events_final.json": (0, last_state),
        "v3_user_events_after_two_syncs.json": (1, last_state),
    }),
    # A second sync, so that its checkpoints name profiles at two watermarks.
    Run(2, "large", "user_events", "incremental", 2, {
        "v2_user_events_reading_configured.json": (1, first_reading_at("configured:")),
        "v2_user_events_reading_listed.json": (1, first_reading_at("listed:")),
    }, read_all_users=True),
    Run(3, "large", "user_events", "incremental", 2, {
        "v3_user_events_reading_configured.json": (1, first_reading_at("configured:")),
        "v3_user_events_reading_listed.json": (1, first_reading_at("listed:")),
    }, read_all_users=True),
    Run(2, "large", "user_traits", "full_refresh", 1, {"v2_user_traits_reading.json": (0, first_reading_at("configured:"))}, read_all_users=True),
    Run(3, "large", "user_traits", "full_refresh", 1, {
        "v3_user_traits_reading.json": (0, first_reading_at("configured:")),
        "v3_user_traits_complete.json": (0, last_state),
    }, read_all_users=True),
]


def states_of(messages: list[dict]) -> list[dict]:
    return [message["state"] for message in messages if message["type"] == "STATE"]


def reading_of(state: dict) -> dict:
    return state["stream"]["stream_state"].get("reading") or {}


# --- running an old version -----------------------------------------------------------------


@contextmanager
def worktree(commit: str) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="released-state-")) / "tree"
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(folder), commit], check=True, capture_output=True)
    try:
        check_imports_from(folder)
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(folder)], check=True)


def environment_of(tree: Path) -> dict[str, str]:
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    environment.pop("DEPLOYMENT_MODE", None)  # cloud mode refuses http to 127.0.0.1
    return environment


def check_imports_from(tree: Path) -> None:
    """The venv installs the current connector and emulator: the worktree's must win."""
    files = subprocess.run(
        [sys.executable, "-c", "import source_segment_profile as s, segment_profile_emulator as e; print(s.__file__); print(e.__file__)"],
        cwd=tree, env=environment_of(tree), check=True, capture_output=True, text=True,
    ).stdout.split()
    if not all(Path(file).is_relative_to(tree) for file in files):
        raise RuntimeError(f"{tree} is shadowed: {files}")


@contextmanager
def emulator_in(tree: Path, flags: dict[str, Any]) -> Iterator[RunningEmulator]:
    with tempfile.TemporaryDirectory() as folder:
        ready_file, log_path = Path(folder) / "ready.json", Path(folder) / "emulator.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                emulator_command(port=0, ready_file=ready_file, **flags), cwd=tree, env=environment_of(tree), stdout=log, stderr=subprocess.STDOUT
            )
        try:
            yield RunningEmulator(_wait_until_ready(process, ready_file, log_path)["url"], SPACE_ID, TOKEN, process)
        finally:
            process.terminate()
            process.wait(timeout=10)


def read(tree: Path, folder: Path, config: dict, run: Run, state: Optional[dict]) -> list[dict]:
    """One sync through the version's own CLI (in `folder`); its messages, or an error if it failed."""
    stream = {"name": run.stream, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]}
    configured = {"stream": stream, "sync_mode": run.sync_mode, "destination_sync_mode": "append"}
    if run.sync_mode == "incremental":
        configured["cursor_field"] = ["timestamp"]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "catalog.json").write_text(json.dumps({"streams": [configured]}))
    if state is not None:
        (folder / "state.json").write_text(json.dumps([state]))
    command = [sys.executable, str(tree / "main.py"), *read_arguments(state is not None)]
    finished = subprocess.run(command, cwd=folder, env=environment_of(tree), capture_output=True, text=True, timeout=600)
    messages = [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]
    errors = [message for message in messages if message["type"] == "TRACE" and message["trace"]["type"] == "ERROR"]
    if finished.returncode or errors:
        raise RuntimeError(f"{run.stream} at {tree} failed ({finished.returncode}): {errors or finished.stderr[-2000:]}")
    return messages


def read_arguments(with_state: bool) -> list[str]:
    return ["read", "--config", "config.json", "--catalog", "catalog.json", *(["--state", "state.json"] if with_state else [])]


def config_for(emulator: RunningEmulator, run: Run) -> dict:
    lookup_ids = [user["lookup_id"] for user in emulator.ground_truth()["users"]]
    config = {"space_id": SPACE_ID, "access_token": TOKEN, "user_external_ids": lookup_ids[: CONFIGURED_USERS[run.emulator]]}
    return {**config, "read_all_users": True} if run.read_all_users else config


def delivered_before(messages: list[dict], state: dict) -> list[str]:
    """Keys of the profiles whose records came before `state`: what an attempt interrupted there had delivered."""
    delivered = set()
    for message in messages:
        if message["type"] == "STATE" and message["state"] is state:
            return sorted(map(profile_state_key, delivered))
        if message["type"] == "RECORD":
            delivered.add(message["record"]["data"]["external_id"])
    raise ValueError("the state is not among the messages")


def write_run(run: Run, manifest: dict) -> None:
    commit_spec, version = RELEASES[run.state_version]
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", commit_spec], check=True, capture_output=True, text=True).stdout.strip()
    with worktree(commit) as tree, emulator_in(tree, EMULATORS[run.emulator]) as emulator, tempfile.TemporaryDirectory() as folder:
        config = config_for(emulator, run)
        # The tests start today's emulator with these flags: every version's must serve the same ids.
        if manifest["configs"].setdefault(run.config_name, config) != config:
            raise RuntimeError(f"{commit[:7]}'s emulator serves other ids than an earlier run's with the flags of {run.emulator!r}")
        syncs, clocks, state = [], [], None
        for sync in range(run.syncs):
            if sync:
                emulator.advance_clock(HOURS_BETWEEN_SYNCS * 3600)
            clocks.append(emulator.clock())
            syncs.append(read(tree, Path(folder), {**config, "api_base_url": emulator.url}, run, state))
            state = last_state(syncs[-1])
        for name, (sync, pick) in run.picks.items():
            picked, states = pick(syncs[sync]), states_of(syncs[sync])
            (STATES_DIR / name).write_text(json.dumps(picked, indent=2, ensure_ascii=False) + "\n")
            manifest["fixtures"][name] = {
                "commit": commit,
                "version": version,
                "state_version": run.state_version,
                "stream": run.stream,
                "sync_mode": run.sync_mode,
                "emulator": run.emulator,
                "emulator_clock": clocks[sync],
                "config": run.config_name,
                "commands": [f"PYTHONPATH=<worktree> python <worktree>/main.py {' '.join(read_arguments(bool(index)))}" for index in range(sync + 1)],
                "picked": f"STATE message {states.index(picked) + 1} of {len(states)} of sync {sync + 1}",
            }
            if run.stream == "user_traits" and reading_of(picked):
                manifest["fixtures"][name]["profiles_delivered_before"] = delivered_before(syncs[sync], picked)
            print(f"{name}: {manifest['fixtures'][name]['picked']}, by {commit[:7]}", file=sys.stderr)


def main() -> None:
    STATES_DIR.mkdir(parents=True, exist_ok=True)
    manifest = {
        "_about": (
            "Written by scripts/write_released_states.py, never by hand. Each fixture is one STATE message as the "
            "commit named wrote it: `commands` ran in a worktree of that commit (PYTHONPATH=<worktree>), each sync given "
            "the last STATE message of the one before as state.json, against that worktree's emulator started with "
            "`emulators[emulator]` flags, the config `configs[config]` plus api_base_url (the emulator's url), and the "
            f"emulator clock advanced {HOURS_BETWEEN_SYNCS} h between syncs; `emulator_clock` is its clock during the sync "
            "that wrote the fixture. `profiles_delivered_before`: keys of the profiles whose records came before the "
            "fixture in that sync's output."
        ),
        "emulators": EMULATORS,
        "configs": {},
        "fixtures": {},
    }
    for run in RUNS:
        write_run(run, manifest)
    (STATES_DIR / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
