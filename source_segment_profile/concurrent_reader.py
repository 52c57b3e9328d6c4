"""Reading many profiles at once, in bounded memory."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
        pending: set[Future[Result]] = set()
        ids = iter(external_ids)
        pool = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="profile-reader")

        def refill() -> None:
            for external_id in ids:
                pending.add(pool.submit(self._read_profile, external_id, self.stopping))
                if len(pending) >= self._max_workers * READ_AHEAD_PER_WORKER:
                    return

        try:
            refill()
            while pending:
                done, _ = wait(pending, timeout=self._idle_seconds, return_when=FIRST_COMPLETED)
                if not done:
                    self._on_idle()
                    continue
                for future in done:
                    pending.discard(future)
                    yield future.result()
                refill()
        finally:
            self.stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)
