"""Many profiles read at once (profile_reader.py): every page of every profile exactly once, each
profile's pages in order, a heavy profile streamed page by page, and a failure or a consumer that
goes away stops every worker."""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Callable, Iterator

import pytest
from airbyte_cdk.models import FailureType, SyncMode

from source_segment_profile.profile_reader import ProfileRead, ProfileReader, RecordsRead
from unit_tests.builders import Reply, config, paged_answer
from unit_tests.conftest import run_read
from unit_tests.local_server import LocalProfileServer

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits on the budget

# Generous: every test below ends in well under a second unless the reader hangs.
HANG_SECONDS = 10.0


def reader_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("profile-reader-")]


def consume(items: Iterator, on_item: Callable[[object], None] = lambda item: None) -> list:
    """Takes every item on a helper thread so that a hung reader fails the test instead of the suite."""
    taken: list = []
    outcome: dict = {}

    def run() -> None:
        try:
            for item in items:
                taken.append(item)
                on_item(item)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    helper = threading.Thread(target=run, daemon=True)
    helper.start()
    helper.join(HANG_SECONDS)
    assert not helper.is_alive(), f"the reader hung after {len(taken)} items"
    if "error" in outcome:
        raise outcome["error"]
    return taken


def paged_profile(pages: int, pause: float = 0.0):
    """A read_profile whose every profile has `pages` pages of one record, as the streams hand them over."""

    def read_profile(external_id: str, stopping: threading.Event):
        for page in range(1, pages + 1):
            if stopping.is_set():
                return
            if pause:
                time.sleep(pause)
            yield RecordsRead(external_id, [{"external_id": external_id, "page": page}])
        yield ProfileRead(external_id, pages, found=True)

    return read_profile


def new_reader(read_profile, workers: int, on_idle=lambda: None, idle_seconds: float = 1.0) -> ProfileReader:
    return ProfileReader(read_profile, workers=workers, on_idle=on_idle, idle_seconds=idle_seconds)


# --- the reader ---------------------------------------------------------------------------


def test_every_page_of_every_profile_arrives_exactly_once_each_profile_in_order_and_done_last():
    sizes = {f"user_id:r{n:03d}": 1 + n % 5 for n in range(300)}

    def read_profile(external_id: str, stopping: threading.Event):
        for page in range(1, sizes[external_id] + 1):
            if random.random() < 0.05:
                time.sleep(0.001)  # workers overtake each other
            yield RecordsRead(external_id, [{"external_id": external_id, "page": page}])
        yield ProfileRead(external_id, sizes[external_id], found=True)

    items = consume(new_reader(read_profile, workers=8).read(sizes))

    pages_by_profile: dict[str, list[int]] = {}
    done: list[str] = []
    for item in items:
        if isinstance(item, RecordsRead):
            assert item.external_id not in done, "a page after its profile was done"
            (record,) = item.records
            pages_by_profile.setdefault(item.external_id, []).append(record["page"])
        else:
            done.append(item.external_id)
    assert sorted(done) == sorted(sizes)
    assert pages_by_profile == {profile: list(range(1, size + 1)) for profile, size in sizes.items()}
    assert reader_threads() == []


def test_a_heavy_profiles_first_pages_reach_the_consumer_while_its_later_pages_are_still_being_read():
    """Memory holds a few pages, not a profile: page 1 is handed over while page 3 is not yet answered."""
    waiting_for_page_3 = threading.Event()
    page_3_answered = threading.Event()

    def read_profile(external_id: str, stopping: threading.Event):
        for page in (1, 2, 3):
            if page == 3:
                waiting_for_page_3.set()
                assert page_3_answered.wait(HANG_SECONDS)
            yield RecordsRead(external_id, [{"external_id": external_id, "page": page}])
        yield ProfileRead(external_id, 3, found=True)

    seen_while_blocked: list[object] = []

    def on_item(item: object) -> None:
        if not page_3_answered.is_set():
            seen_while_blocked.append(item)
            if len(seen_while_blocked) == 2:
                assert waiting_for_page_3.wait(HANG_SECONDS)
                page_3_answered.set()

    items = consume(new_reader(read_profile, workers=2).read(["user_id:heavy"]), on_item)

    assert [item.records[0]["page"] for item in seen_while_blocked] == [1, 2]
    assert [type(item).__name__ for item in items] == ["RecordsRead"] * 3 + ["ProfileRead"]


def test_workers_stay_a_few_pages_ahead_of_a_slow_consumer():
    produced = itertools.count(1)
    made = [0]

    def read_profile(external_id: str, stopping: threading.Event):
        for page in range(1, 1001):
            if stopping.is_set():
                return
            made[0] = next(produced)
            yield RecordsRead(external_id, [{"page": page}])
        yield ProfileRead(external_id, 1000, found=True)

    items = new_reader(read_profile, workers=2).read(["user_id:a", "user_id:b"])
    next(items)
    time.sleep(0.3)  # the consumer is busy writing records

    # One page taken, `workers` queued, one in each worker's hand: nothing more was read ahead.
    assert made[0] <= 1 + 2 + 2
    items.close()


def test_the_first_failure_stops_every_worker_and_is_raised_to_the_consumer():
    profiles = [f"user_id:f{n:03d}" for n in range(200)]
    started: list[str] = []

    def read_profile(external_id: str, stopping: threading.Event):
        started.append(external_id)
        if external_id == "user_id:f010":
            raise RuntimeError("boom on f010")
        yield from paged_profile(pages=3, pause=0.002)(external_id, stopping)

    with pytest.raises(RuntimeError, match="boom on f010"):
        consume(new_reader(read_profile, workers=4).read(profiles))

    assert len(started) < len(profiles)  # no new profile was started after the failure
    assert reader_threads() == []


def test_a_failure_while_the_consumer_is_slow_still_reaches_it():
    """The queue is full when a worker fails, and the consumer comes back only after a while:
    the failure must still be raised, not lost with the reading left waiting for ever."""
    fail_now = threading.Event()

    def read_profile(external_id: str, stopping: threading.Event):
        if external_id == "user_id:fails":
            assert fail_now.wait(HANG_SECONDS)
            time.sleep(0.1)  # the other worker fills the queue meanwhile
            raise RuntimeError("boom while the queue was full")
        yield from paged_profile(pages=100)(external_id, stopping)

    def on_item(item: object) -> None:
        if not fail_now.is_set():
            fail_now.set()
            time.sleep(0.5)  # longer than a worker waits on a full queue (STOP_POLL_SECONDS) before it looks again

    with pytest.raises(RuntimeError, match="boom while the queue was full"):
        consume(new_reader(read_profile, workers=2).read(["user_id:many-pages", "user_id:fails"]), on_item)
    assert reader_threads() == []


def test_closing_the_reading_stops_every_worker_promptly():
    made = itertools.count()

    def endless(external_id: str, stopping: threading.Event):
        while not stopping.is_set():
            yield RecordsRead(external_id, [{"page": next(made)}])

    items = new_reader(endless, workers=4).read([f"user_id:e{n}" for n in range(4)])
    for _ in range(20):
        next(items)
    started = time.monotonic()

    items.close()

    assert time.monotonic() - started < 2.0
    assert reader_threads() == []
    pages_at_close = next(made)
    time.sleep(0.05)
    assert next(made) == pages_at_close + 1  # nothing read since


def test_the_idle_callback_runs_while_every_worker_waits_on_the_api():
    idle_calls = []

    items = new_reader(paged_profile(pages=1, pause=0.3), workers=1, on_idle=lambda: idle_calls.append(1), idle_seconds=0.05).read(["user_id:slow"])

    assert len(consume(items)) == 2
    assert len(idle_calls) >= 2  # progress lines still come while nothing arrives


# --- through the connector ------------------------------------------------------------------


def assert_each_profiles_records_in_page_order(records: list[dict], position: Callable[[dict], int]) -> None:
    by_profile: dict[str, list[int]] = {}
    for record in records:
        by_profile.setdefault(record["external_id"], []).append(position(record))
    for profile, positions in by_profile.items():
        assert positions == sorted(positions), f"{profile}'s pages out of order: {positions}"


def page_number(record: dict) -> int:
    """The page a `page_of` record came from (builders.page_of: the value ends with the page number)."""
    value = record.get("messageId") or record.get("id") or record["external_ids"][0]["id"]
    return int(value.rsplit("-", 1)[1].lstrip("mg"))


@pytest.mark.parametrize(
    "stream, sync_mode",
    [
        ("user_events", SyncMode.full_refresh),
        ("user_events", SyncMode.incremental),  # the only incremental stream
        ("user_external_ids", SyncMode.full_refresh),
        ("user_links", SyncMode.full_refresh),
        ("account_external_ids", SyncMode.full_refresh),
    ],
)
def test_every_page_of_every_profile_arrives_exactly_once(api, stream, sync_mode):
    ids = [f"{'group_id' if stream.startswith('account') else 'user_id'}:c{n:02d}" for n in range(12)]
    for profile in ids:
        api.handler(stream, profile, paged_answer(stream, profile, pages=3))
    id_field = "account_external_ids" if stream.startswith("account") else "user_external_ids"

    result = run_read(config(**{id_field: ids}, max_concurrency=4), [stream], sync_mode)

    requests = [(request.path, request.param("next")) for request in api.seen]
    assert len(requests) == 36 and len(set(requests)) == 36
    records = result.records()
    assert len(records) == 36
    keys = [(record["external_id"], str(sorted(record.items()))) for record in records]
    assert len(set(keys)) == 36
    assert sorted({record["external_id"] for record in records}) == ids
    assert_each_profiles_records_in_page_order(records, page_number)
    assert result.errors() == []


class InFlight:
    """Counts requests being answered at once; answers after a short real delay so workers overlap."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def around(self, answer):
        def wrapped(request):
            with self._lock:
                self.now += 1
                self.most = max(self.most, self.now)
            try:
                time.sleep(random.uniform(0.001, 0.004))
                return answer(request)
            finally:
                with self._lock:
                    self.now -= 1

        return wrapped


@pytest.mark.parametrize("sync_mode", [SyncMode.full_refresh, SyncMode.incremental])
def test_workers_really_overlap_up_to_max_concurrency_against_a_threaded_server(sync_mode):
    """Real sockets and real time: a threaded local server sees the workers' requests overlap."""
    ids = [f"email:c{n:02d}+x@example.com" for n in range(12)]
    in_flight = InFlight()
    server = LocalProfileServer()
    for profile in ids:
        server.handler("user_events", profile, in_flight.around(paged_answer("user_events", profile, pages=3)))

    with server.running():
        result = run_read(config(user_external_ids=ids, max_concurrency=4, api_base_url=server.url), ["user_events"], sync_mode)

    assert len(server.seen) == 36 and len({path for path, _ in server.seen}) == 36
    assert 2 <= in_flight.most <= 4
    records = result.records()
    assert len({(record["external_id"], record["messageId"]) for record in records}) == len(records) == 36
    assert_each_profiles_records_in_page_order(records, page_number)
    assert result.errors() == []


def test_traits_of_many_profiles_are_each_merged_into_one_record(api):
    ids = [f"user_id:t{n:02d}" for n in range(10)]
    for profile in ids:
        api.handler("user_traits", profile, paged_answer("user_traits", profile, pages=3))

    result = run_read(config(user_external_ids=ids, max_concurrency=5), ["user_traits"])

    assert len(api.seen) == 30
    assert sorted(record["external_id"] for record in result.records()) == ids
    for record in result.records():
        profile = record["external_id"]
        assert record["traits"] == {f"trait_00{n}": f"{profile}-{n}" for n in (1, 2, 3)}


def test_more_profiles_than_one_checkpoint_batch_are_all_read_once(api):
    ids = [f"user_id:b{n:03d}" for n in range(230)]
    for profile in ids:
        api.handler("user_external_ids", profile, paged_answer("user_external_ids", profile, pages=2))

    result = run_read(config(user_external_ids=ids, max_concurrency=8), ["user_external_ids"])

    assert len(api.seen) == 460
    assert len({(request.path, request.param("next")) for request in api.seen}) == 460
    assert len(result.records()) == 460
    assert len({(record["external_id"], record["id"]) for record in result.records()}) == 460


def test_a_failing_profile_stops_the_stream_without_hanging(api):
    ids = [f"user_id:f{n:02d}" for n in range(20)]
    for profile in ids:
        api.handler("user_events", profile, paged_answer("user_events", profile, pages=2))
    api.replies("user_events", "user_id:f05", Reply.error(401))
    started = time.monotonic()

    result = run_read(config(user_external_ids=ids, max_concurrency=4), ["user_events"])

    assert time.monotonic() - started < 10
    assert result.stream_error("user_events").failure_type == FailureType.config_error
    assert "INCOMPLETE" in result.statuses("user_events")
    emitted = [(record["external_id"], record["messageId"]) for record in result.records()]
    assert "user_id:f05" not in {profile for profile, _ in emitted}
    assert len(emitted) == len(set(emitted))  # whatever was emitted before the failure, once
    assert len(api.seen) < 30  # the other workers stopped: not every profile was read
    assert reader_threads() == []
