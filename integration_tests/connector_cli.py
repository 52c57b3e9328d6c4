"""Running the installed connector CLI as a user (or Airbyte) would, and reading what it printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

STREAMS = (
    "user_traits",
    "user_events",
    "user_external_ids",
    "user_metadata",
    "user_links",
    "user_audiences",
    "user_computed_traits",
    "account_traits",
    "account_external_ids",
)
INCREMENTAL_STREAMS = {"user_events": ["timestamp"]}
# Every stream that can be incremental, with its cursor: the user streams skip_unchanged_profiles applies to.
SKIPPABLE_STREAMS = {
    "user_traits": ["read_at"],
    "user_events": ["timestamp"],
    "user_external_ids": ["created_at"],
    "user_metadata": ["updated_at"],
    "user_links": ["read_at"],
}


def connector_command() -> list[str]:
    """The installed console script beside this interpreter, else `python main.py` from the checkout."""
    script = Path(sys.executable).parent / "source-segment-profile"
    if script.exists():
        return [str(script)]
    found = shutil.which("source-segment-profile")
    return [found] if found else [sys.executable, str(Path(__file__).resolve().parent.parent / "main.py")]


def configured_catalog(
    streams: tuple[str, ...] = STREAMS, incremental: bool = True, cursors: Optional[dict[str, list[str]]] = None
) -> dict[str, Any]:
    """A catalog of `streams`, those with a cursor in `cursors` (default: user_events) incremental
    append + dedup, the others full refresh overwrite."""
    cursors = INCREMENTAL_STREAMS if cursors is None else cursors
    entries = []
    for name in streams:
        is_incremental = incremental and name in cursors
        entries.append(
            {
                "stream": {"name": name, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]},
                "sync_mode": "incremental" if is_incremental else "full_refresh",
                "destination_sync_mode": "append_dedup" if is_incremental else "overwrite",
                **({"cursor_field": cursors[name]} if is_incremental else {}),
            }
        )
    return {"streams": entries}


@dataclass
class ConnectorRun:
    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> dict[str, list[dict[str, Any]]]:
        by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for message in self.messages:
            if message["type"] == "RECORD":
                by_stream[message["record"]["stream"]].append(message["record"]["data"])
        return by_stream

    @property
    def states(self) -> list[dict[str, Any]]:
        return [message["state"] for message in self.messages if message["type"] == "STATE"]

    @property
    def logs(self) -> list[str]:
        return [message["log"]["message"] for message in self.messages if message["type"] == "LOG"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [
            message["trace"]["error"]
            for message in self.messages
            if message["type"] == "TRACE" and message["trace"].get("type") == "ERROR"
        ]

    def last_state_of(self, stream: str) -> Optional[dict[str, Any]]:
        for state in reversed(self.states):
            if state.get("stream", {}).get("stream_descriptor", {}).get("name") == stream:
                return state
        return None


def run_connector(
    command: str,
    tmp_path: Path,
    config: Optional[dict[str, Any]] = None,
    catalog: Optional[dict[str, Any]] = None,
    state: Optional[list[dict[str, Any]]] = None,
    extra_args: tuple[str, ...] = (),
    timeout: float = 600,
) -> ConnectorRun:
    args = [*connector_command(), command]
    if config is not None:
        args += ["--config", _write(tmp_path / "config.json", config)]
    if catalog is not None:
        args += ["--catalog", _write(tmp_path / "catalog.json", catalog)]
    if state is not None:
        args += ["--state", _write(tmp_path / "state.json", state)]
    args += list(extra_args)
    completed = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    return ConnectorRun(completed.returncode, completed.stdout, completed.stderr, parse_messages(completed.stdout))


def parse_messages(stdout: str) -> list[dict[str, Any]]:
    messages = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            messages.append(json.loads(line))
    return messages


def _write(path: Path, content: Any) -> str:
    path.write_text(json.dumps(content))
    return str(path)
