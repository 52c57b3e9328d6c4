import ctypes
import sys
from typing import Any, List, Mapping

from airbyte_cdk.entrypoint import AirbyteEntrypoint
from airbyte_cdk.logger import PRINT_BUFFER
from airbyte_cdk.models import ConnectorSpecification
from airbyte_cdk.sources import Source
from airbyte_cdk.sources.utils.schema_helpers import split_config

from source_segment_profile.source import SourceSegmentProfile, load_config


class SegmentProfileEntrypoint(AirbyteEntrypoint):
    """The CDK's entrypoint, with the connector's own config checks run before the JSON-schema one.

    The CDK's check says only "Config validation error: 'jane@example.com' does not match
    '^[^:\\s]+:.+$'": no field name, and an email in clear. The connector's checks cover every
    constraint of spec.json, name the field and mask personal ids, so they go first; the schema
    check still runs after them for anything they would not know.
    """

    @staticmethod
    def validate_connection(source_spec: ConnectorSpecification, config: Mapping[str, Any]) -> None:
        connector_config, _ = split_config(config)
        load_config(connector_config)
        AirbyteEntrypoint.validate_connection(source_spec, config)


def launch(source: Source, args: List[str]) -> None:
    """airbyte_cdk.entrypoint.launch, with SegmentProfileEntrypoint."""
    entrypoint = SegmentProfileEntrypoint(source)
    parsed_args = entrypoint.parse_args(args)
    with PRINT_BUFFER:
        for message in entrypoint.run(parsed_args):
            # One write per message, newline included, so that lines never interleave.
            print(f"{message}\n", end="")


# glibc's mallopt parameter for the number of malloc arenas (malloc.h).
M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Caps glibc's malloc arenas, before any reader thread starts.

    glibc gives threads arenas of their own (up to 8 per core); pages freed in them stay mapped,
    so with 16 reader threads peak RSS grew with the records read: 117 MiB at 1,100 profiles,
    149 MiB at 11,000 (benchmarks/run.py). With 2 arenas: 122 and 124 MiB. No-op without glibc.
    """
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):
        pass


# What Linux lets an unprivileged process ask for (/proc/sys/fs/pipe-max-size's default).
STDOUT_PIPE_BYTES = 1 << 20


def enlarge_stdout_pipe(size: int = STDOUT_PIPE_BYTES) -> None:
    """Gives stdout a 1 MiB pipe buffer instead of 64 KiB, when stdout is a pipe.

    The CDK's print buffer writes its messages in batches (every 100 ms by default: ~3 MB at
    40,000 records/s). With 64 KiB in the pipe, the connector then stands blocked until the
    platform's reader has taken all but 64 KiB of a batch, and on a busy machine that reader waits
    its turn for a core. Measured on two cores (emulator, reader process, connector and benchmark
    reader), with 100 ms batches: blocked in those writes 0.75 of ~3 s before, 0.2 after;
    user_events 35k -> 44k records/s. The batches are now 20 ms (PRINT_BUFFER_FLUSH_SECONDS), and
    the pipe holds one whole. Not a pipe, or not Linux: no-op.
    """
    try:
        import fcntl

        stdout = sys.stdout.fileno()
        if fcntl.fcntl(stdout, fcntl.F_GETPIPE_SZ) < size:  # never shrink a pipe the platform made bigger
            fcntl.fcntl(stdout, fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError, ValueError):
        pass  # a file, a terminal, a socket, or a limit below 1 MiB: the default buffer stays


# How often the CDK's print buffer writes its messages to stdout. At its default, 100 ms, it held
# ~4 MB of messages at 40,000 records/s, and writing them out copies them twice more. Measured
# (benchmarks/run.py, all streams): peak RSS 189 -> 166 MiB at 1,100 profiles and 206 -> 178 MiB
# at 11,000 with 20 ms, at the same records/s.
PRINT_BUFFER_FLUSH_SECONDS = 0.02


def prepare_process() -> None:
    """The connector process's setup before the CDK runs (the benchmark's CDK ceiling runs it too)."""
    limit_malloc_arenas()
    enlarge_stdout_pipe()
    PRINT_BUFFER.flush_interval = PRINT_BUFFER_FLUSH_SECONDS


def run() -> None:
    prepare_process()
    launch(SourceSegmentProfile(), sys.argv[1:])
