"""The connector process's own setup before the CDK runs (source_segment_profile/run.py)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airbyte_cdk.logger import PRINT_BUFFER

import source_segment_profile.run as run_module
from source_segment_profile.run import STDOUT_PIPE_BYTES
from unit_tests.conftest import REPO_ROOT


def pipe_max_size() -> int:
    try:
        return int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except OSError:
        return 0


@pytest.mark.skipif(pipe_max_size() < STDOUT_PIPE_BYTES, reason="needs Linux pipes that may grow to 1 MiB")
def test_the_connector_gives_its_stdout_pipe_a_1_mib_buffer():
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, str(REPO_ROOT / "main.py"), "spec"], stdout=subprocess.PIPE, env=env)
    assert fcntl.fcntl(process.stdout.fileno(), fcntl.F_GETPIPE_SZ) < STDOUT_PIPE_BYTES  # the kernel's default
    output = process.stdout.read()
    assert process.wait() == 0 and b'"type":"SPEC"' in output

    assert fcntl.fcntl(process.stdout.fileno(), fcntl.F_GETPIPE_SZ) == STDOUT_PIPE_BYTES
    process.stdout.close()


def test_the_connector_still_runs_when_stdout_is_a_file(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(tmp_path / "out.jsonl", "wb") as out:
        finished = subprocess.run([sys.executable, str(REPO_ROOT / "main.py"), "spec"], stdout=out, env=env)

    assert finished.returncode == 0
    assert b'"type":"SPEC"' in (tmp_path / "out.jsonl").read_bytes()


def test_the_cdk_print_buffer_writes_out_every_20_ms(monkeypatch):
    """At the CDK's 100 ms it held ~4 MB of messages at full speed (peak RSS, benchmarks/run.py)."""
    monkeypatch.setattr(PRINT_BUFFER, "flush_interval", PRINT_BUFFER.flush_interval)  # restored after the test
    monkeypatch.setattr(run_module, "enlarge_stdout_pipe", lambda: None)  # pytest's stdout is not ours to resize
    monkeypatch.setattr(run_module, "limit_malloc_arenas", lambda: None)  # nor its malloc

    run_module.prepare_process()

    assert PRINT_BUFFER.flush_interval == run_module.PRINT_BUFFER_FLUSH_SECONDS == 0.02
