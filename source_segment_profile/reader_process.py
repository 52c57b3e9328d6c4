"""Reading profiles in a forked child process, so that HTTP and JSON decoding run on another core.

Python runs one thread at a time. The thread that hands records to the CDK is the sync's
bottleneck, and with readers on threads of the same process every request, page decode and
thread switch took the interpreter lock from it: user_events ran at 0.27 of the rate the CDK
alone reaches (benchmarks/run.py). In a child process the readers have an interpreter of their
own; the parent only decodes finished profiles' records (orjson, 200 at a time) and emits them.

The child is a fork of this process at the moment a stream starts reading: it already holds the
stream, its config and the request budget, so nothing has to be sent to it. It runs the same
`ConcurrentProfileReader` as in-process reading, and sends back, over one pipe:

    ("result", ProfileResult, counters)   one profile read completely, and the request counts so far
    ("log", logger name, level, message)  what its loggers said (the parent's handlers write stdout)
    ("budget", budget state, counters)    once the reading ended, well or not
    ("failed", exception)                 the error that ended the reading
    ("done",)                             every profile was sent

The child never writes to stdout (the protocol channel) and leaves with os._exit, so it cannot
flush output it inherited from the parent. It dies with the parent (PR_SET_PDEATHSIG) and is
killed when the parent stops taking results early.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import pickle
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Callable, Generic, Iterable, Iterator, Optional, TypeVar

from airbyte_cdk.utils.traced_exception import AirbyteTracedException

from source_segment_profile.api_client import ProfileApiClient
from source_segment_profile.concurrent_reader import ConcurrentProfileReader
from source_segment_profile.errors import ReaderProcessFailed

Result = TypeVar("Result")

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class ChildProcessProfileReader(Generic[Result]):
    """`ConcurrentProfileReader`'s interface, with the reading done in a forked child process."""

    def __init__(
        self,
        read_profile: Callable[[str, threading.Event], Result],
        max_workers: int,
        on_idle: Callable[[], None],
        idle_seconds: float,
        client: ProfileApiClient,
    ):
        self._read_profile = read_profile
        self._max_workers = max_workers
        self._on_idle = on_idle
        self._idle_seconds = idle_seconds
        self._client = client
        self.child_pid: Optional[int] = None

    def results(self, external_ids: Iterable[str]) -> Iterator[Result]:
        read_fd, write_fd = os.pipe()
        # Everything alive now (modules, config, the ids) lives as long as the sync: the collector
        # need not walk it again in either process, and the child then does not copy the pages
        # that walking would write to. Measured: the parent's CPU per record fell by a fifth.
        gc.freeze()
        pid = self.child_pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _run_child(Connection(write_fd, readable=False), self._read_in_child, external_ids)
        os.close(write_fd)
        with Connection(read_fd, writable=False) as connection:
            finished = False
            try:
                yield from self._receive(connection)
                finished = True
            finally:
                _reap(pid, kill=not finished)

    def _read_in_child(self, send: Callable[[tuple], None], external_ids: Iterable[str]) -> None:
        reader = ConcurrentProfileReader(self._read_profile, self._max_workers, on_idle=lambda: None, idle_seconds=self._idle_seconds)
        counters = self._client.counters
        try:
            for result in reader.results(external_ids):
                send(("result", result, counters.snapshot()))
        finally:
            # On a failure too: the CDK goes on with the next stream, which must start from this
            # budget (a running 429 pause included), not from the one the child was forked with.
            send(("budget", self._client.budget.snapshot(), counters.snapshot()))
        send(("done",))

    def _receive(self, connection: Connection) -> Iterator[Result]:
        while True:
            if not connection.poll(self._idle_seconds):
                self._on_idle()
                continue
            try:
                message = connection.recv()
            except EOFError:
                raise ReaderProcessFailed(
                    "The process reading profiles ended without finishing (killed, or out of memory?). "
                    "The sync can be retried; if it happens again, lower 'max_concurrency'."
                ) from None
            kind = message[0]
            if kind == "result":
                self._client.counters.restore(message[2])
                yield message[1]
            elif kind == "log":
                logging.getLogger(message[1]).log(message[2], message[3])
            elif kind == "budget":
                self._client.budget.restore(message[1])
                self._client.counters.restore(message[2])
            elif kind == "failed":
                raise message[1]
            elif kind == "done":
                return


def _run_child(connection: Connection, read: Callable[[Callable[[tuple], None], Iterable[str]], None], external_ids: Iterable[str]) -> None:
    """The child's whole life; it never returns."""
    status = 1
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            connection.send(message)

    try:
        _die_with_parent()
        _keep_off_stdout()
        _forward_logs(send)
        try:
            read(send, external_ids)
        except Exception as error:  # noqa: BLE001 (every failure is sent to the parent, typed when it can be)
            send(("failed", _transportable(error)))
        status = 0
    except BaseException:  # noqa: BLE001 (the parent is gone, or the pipe broke: nothing left to tell)
        pass
    finally:
        os._exit(status)


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the broken pipe still ends the child when the parent goes


def _keep_off_stdout() -> None:
    """stdout carries the Airbyte protocol: anything the child writes there goes to stderr instead."""
    os.dup2(2, 1)
    sys.stdout = sys.stderr = sys.__stderr__


class _ForwardingHandler(logging.Handler):
    def __init__(self, send: Callable[[tuple], None]):
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        self._send(("log", record.name, record.levelno, record.getMessage()))


def _forward_logs(send: Callable[[tuple], None]) -> None:
    """Every log record of the child goes to the parent instead of the handlers it inherited."""
    handler = _ForwardingHandler(send)
    airbyte = logging.getLogger("airbyte")
    for logger in (logging.getLogger(), airbyte):
        for inherited in list(logger.handlers):
            logger.removeHandler(inherited)
        logger.addHandler(handler)
    airbyte.propagate = False  # else the root's handler would send each record twice


def _transportable(error: Exception) -> Exception:
    """The error as the parent should raise it: the connector's typed errors as they are, others
    as a system error that carries the child's traceback."""
    if isinstance(error, AirbyteTracedException):
        try:
            pickle.loads(pickle.dumps(error))
            return error
        except Exception:  # noqa: BLE001 (an attribute that does not pickle: send it as text)
            pass
    trace = "".join(traceback.format_exception(error))
    return ReaderProcessFailed(f"Reading profiles failed with {type(error).__name__}: {error}\n{trace}")


def _reap(pid: int, kill: bool) -> None:
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.waitpid(pid, 0)
