"""Reading many profiles at once, in bounded memory."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, Iterator, TypeVar

Result = TypeVar("Result")

# Profiles held (reading, or read and not yet taken) per unit of the concurrency limit: enough to
# keep the readers busy while the consumer writes records out, few enough that memory stays flat
# whatever the profile count.
READ_AHEAD_PER_WORKER = 2
# The lowest the limit goes once the consumer is the slower side: two, so that one profile's
# request can be on the wire while another's page is decoded (up to four profiles held).
FEWEST_AT_ONCE = 2


class ConcurrencyLimit:
    """How many profiles to read at once: as many as keep the consumer supplied, at most `most`.

    Judged once per round of `value` results: if the consumer had to wait for one, the readers are
    the slower side (the API's latency, the budget) and the limit doubles; if it never waited, one
    reader fewer would still keep up, and the limit steps down by one. Against the emulator with
    100 ms latency (benchmarks/run.py, budget use) the consumer waits all along and every worker
    runs. Against one with no latency the limit settles at a few: more threads would only take
    turns at the interpreter lock, which cost the reader process ~13% more CPU per record and the
    sync ~12% of its records/s on two cores (benchmarks/run.py, events vs the CDK ceiling).
    """

    def __init__(self, most: int):
        self.most = most
        self.value = most  # start wide: a slow API is served at once, a fast one steps down
        self._left_in_round = most
        self._consumer_waited = False

    def consumer_waited(self) -> None:
        self._consumer_waited = True

    def result_taken(self) -> None:
        self._left_in_round -= 1
        if self._left_in_round > 0:
            return
        if self._consumer_waited:
            self.value = min(self.most, self.value * 2)
        else:
            self.value = max(min(FEWEST_AT_ONCE, self.most), self.value - 1)
        self._left_in_round = self.value
        self._consumer_waited = False


class ConcurrentProfileReader(Generic[Result]):
    """Runs `read_profile` for each id on `max_workers` threads and yields each result as it completes.

    Each result is one profile read completely (all its pages), so records of a profile are never
    interleaved or partial; order across profiles follows completion. At most
    `limit * READ_AHEAD_PER_WORKER` profiles are held at a time; the limit (ConcurrencyLimit) is
    `max_workers` while the consumer waits for results, fewer while it does not. The first
    failure stops the reading: unstarted profiles are cancelled and running ones see `stopping`
    set and give up before their next request.
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
        limit = ConcurrencyLimit(self._max_workers)
        in_flight = 0

        def submit_up_to_limit() -> int:
            submitted = 0
            while in_flight + submitted < limit.value * READ_AHEAD_PER_WORKER:
                external_id = next(ids, None)
                if external_id is None:
                    break
                pool.submit(self._read_profile, external_id, self.stopping).add_done_callback(completed.put)
                submitted += 1
            return submitted

        try:
            in_flight += submit_up_to_limit()
            while in_flight:
                try:
                    future = completed.get_nowait()
                except queue.Empty:
                    limit.consumer_waited()
                    try:
                        future = completed.get(timeout=self._idle_seconds)
                    except queue.Empty:
                        self._on_idle()
                        continue
                in_flight -= 1
                yield future.result()
                limit.result_taken()
                in_flight += submit_up_to_limit()
        finally:
            self.stopping.set()
            pool.shutdown(wait=True, cancel_futures=True)
