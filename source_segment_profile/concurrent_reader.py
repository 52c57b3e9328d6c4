"""Reading many profiles at once, in bounded memory."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, Iterator, TypeVar

Result = TypeVar("Result")

# Profiles read ahead of the consumer per worker: enough to keep every worker busy while the
# consumer writes records out, few enough that memory stays flat whatever the profile count.
READ_AHEAD_PER_WORKER = 2


class ConcurrentProfileReader(Generic[Result]):
    """Runs `read_profile` for each id on `max_workers` threads and yields each result as it completes.

    Each result is one profile read completely (all its pages), so records of a profile are never
    interleaved or partial; order across profiles follows completion. At most
    `max_workers * READ_AHEAD_PER_WORKER` profiles are held at a time. The first failure stops the
    reading: unstarted profiles are cancelled and running ones see `stopping` set and
    give up before their next request.
    """

    def __init__(
        self,
        read_profile: Callable[[str, threading.Event], Result],
        max_workers: int,
        on_idle: Callable[[], None],
        idle_seconds: float,
    ):
        self._read_profile = read_profile
        self._max_workers = max_workers
        self._on_idle = on_idle
        self._idle_seconds = idle_seconds
        self.stopping = threading.Event()

    def results(self, external_ids: Iterable[str]) -> Iterator[Result]:
        # Completed futures arrive on a queue (O(1) each), rather than through wait() over
        # everything pending, which costs the consumer O(read-ahead) per profile.
        completed: queue.SimpleQueue[Future[Result]] = queue.SimpleQueue()
        ids = iter(external_ids)
        pool = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="profile-reader")
        in_flight = 0

        def submit_next() -> bool:
            external_id = next(ids, None)
            if external_id is None:
                return False
            pool.submit(self._read_profile, external_id, self.stopping).add_done_callback(completed.put)
            return True

        try:
            while in_flight < self._max_workers * READ_AHEAD_PER_WORKER and submit_next():
                in_flight += 1
            while in_flight:
                try:
                    future = completed.get(timeout=self._idle_seconds)
                except queue.Empty:
                    self._on_idle()
                    continue
                in_flight -= 1
                yield future.result()
                in_flight += submit_next()
        finally:
            self.stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)
