"""The reading engine: many profiles read at once on threads, their records handed over page by page.

At the API's real limits (100 requests/s per space, 50-200 ms a request) a sync is bound by the
rate budget, not by the CPU: threads in the connector's process keep that many requests in flight
with room to spare, so there is nothing cleverer here than a pool and a bounded queue.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Union

# How long a worker blocked on a full queue waits before looking whether the reading stopped.
STOP_POLL_SECONDS = 0.2


class ReadingStopped(Exception):
    """The reading stopped (another profile failed, or the consumer left) while a request waited
    to be retried: it is not sent, and its profile is not completed."""


@dataclass(frozen=True)
class RecordsRead:
    """Records of one page (or of a whole profile, for resources merged across pages)."""

    external_id: str
    records: list[dict[str, Any]]


@dataclass(frozen=True)
class ProfileRead:
    """A profile is done: every record it has was handed over before this (none when it was not
    found, or skipped as unchanged since the stream last read it)."""

    external_id: str
    pages: int
    found: bool
    unchanged: bool = False


ReadItem = Union[RecordsRead, ProfileRead]


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _WorkerDone:
    pass


class _Stopped(Exception):
    """The consumer went away: a worker drops what it holds and ends."""


class ProfileReader:
    """Runs `read_profile(external_id, stopping)` for each id on `workers` threads.

    `read_profile` yields RecordsRead items as pages arrive and one ProfileRead last. Items reach
    the consumer through a queue of at most `workers` items, so memory holds a few pages per
    worker whatever the profile count or a profile's size: a profile with 100,000 events streams
    through. Items of different profiles interleave; each profile's own items keep their order.
    The first failure stops the reading: running profiles see `stopping` set before their next
    request, and the failure is raised to the consumer.
    """

    def __init__(
        self,
        read_profile: Callable[[str, threading.Event], Iterator[ReadItem]],
        workers: int,
        on_idle: Callable[[], None],
        idle_seconds: float,
    ):
        self._read_profile = read_profile
        self._workers = workers
        self._on_idle = on_idle
        self._idle_seconds = idle_seconds

    def read(self, external_ids: Iterable[str]) -> Iterator[ReadItem]:
        ids = iter(external_ids)
        ids_lock = threading.Lock()
        stopping = threading.Event()  # no profile starts a request any more: a failure, or the consumer left
        consumer_left = threading.Event()  # nothing will be taken from the queue again
        handed_over: queue.Queue[Any] = queue.Queue(maxsize=self._workers)

        def hand_over(item: Any) -> None:
            # Only the consumer's leaving drops an item: after a failure it still takes what is
            # queued, however slowly, until it reaches the failure (which must not be lost).
            while True:
                try:
                    handed_over.put(item, timeout=STOP_POLL_SECONDS)
                    return
                except queue.Full:
                    if consumer_left.is_set():
                        raise _Stopped from None

        def work() -> None:
            try:
                while not stopping.is_set():
                    with ids_lock:  # the ids may come from a paged listing: one page request at a time
                        external_id = next(ids, None)
                    if external_id is None:
                        break
                    for item in self._read_profile(external_id, stopping):
                        hand_over(item)
                hand_over(_WorkerDone())
            except _Stopped:
                pass
            except BaseException as error:  # noqa: BLE001 - every failure reaches the consumer
                stopping.set()
                try:
                    hand_over(_Failed(error))
                except _Stopped:
                    pass

        threads = [threading.Thread(target=work, name=f"profile-reader-{n}", daemon=True) for n in range(self._workers)]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                try:
                    item = handed_over.get(timeout=self._idle_seconds)
                except queue.Empty:
                    self._on_idle()
                    continue
                if isinstance(item, _WorkerDone):
                    running -= 1
                elif isinstance(item, _Failed):
                    raise item.error
                else:
                    yield item
        finally:
            stopping.set()
            consumer_left.set()
            for thread in threads:
                thread.join()
