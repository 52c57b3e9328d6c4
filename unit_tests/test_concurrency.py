"""Many profiles read at once: every page of every profile exactly once, a profile's records together."""

from __future__ import annotations

import itertools
import random
import statistics
import threading
import time

import pytest
from airbyte_cdk.models import SyncMode

from source_segment_profile.concurrent_reader import FEWEST_AT_ONCE, READ_AHEAD_PER_WORKER, ConcurrencyLimit, ConcurrentProfileReader
from unit_tests.builders import Reply, config, paged_answer
from unit_tests.conftest import run_read
from unit_tests.local_server import LocalProfileServer

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits


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


def assert_each_profile_contiguous(external_ids: list[str]) -> None:
    runs = [key for key, _ in itertools.groupby(external_ids)]
    assert len(runs) == len(set(runs)), "a profile's records are split by another profile's"


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
    assert_each_profile_contiguous([record["external_id"] for record in records])
    assert result.errors() == []


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
    assert_each_profile_contiguous([record["external_id"] for record in records])
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
    assert_each_profile_contiguous([record["external_id"] for record in result.records()])


def test_a_failing_profile_stops_the_stream_without_hanging(api):
    ids = [f"user_id:f{n:02d}" for n in range(20)]
    for profile in ids:
        api.handler("user_events", profile, paged_answer("user_events", profile, pages=2))
    api.replies("user_events", "user_id:f05", Reply.error(401))
    started = time.monotonic()

    result = run_read(config(user_external_ids=ids, max_concurrency=4), ["user_events"])

    assert time.monotonic() - started < 10
    assert result.stream_error("user_events").message
    assert "INCOMPLETE" in result.statuses("user_events")
    emitted = [record["external_id"] for record in result.records()]
    assert "user_id:f05" not in emitted
    # Whatever was emitted before the failure is whole: both pages of each profile.
    assert all(emitted.count(profile) == 2 for profile in set(emitted))


def finish_a_round(limit: ConcurrencyLimit, consumer_waited: bool) -> int:
    """Takes one round of results (as many as the limit); returns the limit after it."""
    if consumer_waited:
        limit.consumer_waited()
    for _ in range(limit.value):
        limit.result_taken()
    return limit.value


def test_the_limit_doubles_after_a_round_the_consumer_waited_and_steps_down_after_one_it_did_not():
    limit = ConcurrencyLimit(most=16)

    assert [finish_a_round(limit, consumer_waited=False) for _ in range(16)] == [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 2, 2]
    assert [finish_a_round(limit, consumer_waited=True) for _ in range(5)] == [4, 8, 16, 16, 16]
    assert finish_a_round(ConcurrencyLimit(most=1), consumer_waited=False) == 1


class ReadStarts:
    """At each profile's start: how far ahead of its consumer the reader is, and how many run."""

    def __init__(self) -> None:
        self.taken = 0
        self.leads: list[int] = []
        self.running = 0
        self.most_running: list[int] = []
        self._lock = threading.Lock()

    def read(self, pause: float):
        def read_profile(external_id: str, stopping: threading.Event) -> str:
            with self._lock:
                self.leads.append(int(external_id) - self.taken)
                self.running += 1
                self.most_running.append(self.running)
            time.sleep(pause)
            with self._lock:
                self.running -= 1
            return external_id

        return read_profile


def read_all(starts: ReadStarts, profiles: int, read_pause: float, consumer_pause: float) -> list[str]:
    """Reads `profiles` ids on 8 workers; the consumer takes `consumer_pause` per result."""
    reader = ConcurrentProfileReader(starts.read(pause=read_pause), max_workers=8, on_idle=lambda: None, idle_seconds=1.0)
    seen = []
    for result in reader.results([str(n) for n in range(profiles)]):
        seen.append(result)
        starts.taken += 1
        time.sleep(consumer_pause)
    assert sorted(seen, key=int) == [str(n) for n in range(profiles)]
    return seen


def test_a_consumer_slower_than_the_readers_lets_the_reader_step_down_to_a_few_profiles_at_once():
    starts = ReadStarts()

    # The consumer writes records out: slower than a profile read here.
    read_all(starts, profiles=400, read_pause=0, consumer_pause=0.001)

    assert max(starts.leads[:20]) >= 8  # it starts wide: 8 workers, 16 profiles ahead
    # Then it holds the fewest. The median, because on a loaded machine a reader thread that is
    # not scheduled in time makes the consumer wait once, and the limit doubles for a round or two.
    assert statistics.median(starts.leads[-100:]) < FEWEST_AT_ONCE * READ_AHEAD_PER_WORKER


def test_readers_slower_than_the_consumer_keep_every_worker_busy():
    starts = ReadStarts()

    read_all(starts, profiles=200, read_pause=0.01, consumer_pause=0)  # the API's latency: 10 ms a profile

    assert max(starts.most_running[-60:]) == 8  # all eight stay in flight to the end
