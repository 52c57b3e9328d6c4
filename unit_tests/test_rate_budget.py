"""The shared request budget (issue 14): a 429 cuts the rate, the rate climbs back, pauses release no herd.

Time is driven by hand. `FakeClock` (conftest) moves forward by whatever a caller sleeps, for
one thread at a time; `HeldClock` below keeps sleeping threads blocked until the test moves time
on, so that several threads can wait on the budget at once, as workers do.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from source_segment_profile.rate_budget import (
    CUT_FACTOR,
    FLOOR_REQUESTS_PER_SECOND,
    RECOVERY_SECONDS,
    AcceptedRate,
    CubicRate,
    RateBudget,
)
from unit_tests.builders import Reply, config, traits_page
from unit_tests.conftest import FakeClock, run_read

START = 1_000.0


def budget_on(clock: FakeClock, requests_per_second: float = 10.0) -> RateBudget:
    return RateBudget(requests_per_second, clock=clock.now, sleep=clock.sleep)


def advance(clock: FakeClock, seconds: float) -> None:
    clock.sleep(seconds)


# --- cutting the rate -----------------------------------------------------------------------


def test_a_429_cuts_the_rate_to_seven_tenths():
    clock = FakeClock(START)
    budget = budget_on(clock)
    sent_at = budget.acquire()

    budget.throttled(sent_at)

    assert budget.rate == pytest.approx(10.0 * CUT_FACTOR) == pytest.approx(7.0)
    assert budget.cuts == 1


def test_a_second_429_for_a_request_sent_before_the_cut_does_not_cut_again():
    clock = FakeClock(START)
    budget = budget_on(clock)
    first, second = budget.acquire(), budget.acquire()  # both in flight when the space says 429
    advance(clock, 0.05)

    budget.throttled(first)
    budget.throttled(second)

    assert budget.cuts == 1
    assert budget.rate == pytest.approx(7.0, abs=0.01)


def test_a_429_for_a_request_sent_after_the_cut_cuts_again():
    clock = FakeClock(START)
    budget = budget_on(clock)
    budget.throttled(budget.acquire())
    after_the_cut = budget.acquire()
    advance(clock, 0.05)
    rate_before = budget.rate

    budget.throttled(after_the_cut)

    assert budget.cuts == 2
    assert budget.rate == pytest.approx(rate_before * CUT_FACTOR, rel=0.01)


def test_the_rate_never_falls_below_the_floor_however_many_429s():
    clock = FakeClock(START)
    budget = budget_on(clock)

    for _ in range(60):
        budget.throttled(budget.acquire())  # each sent after the previous cut: a new congestion event
        assert budget.rate >= FLOOR_REQUESTS_PER_SECOND

    assert budget.cuts == 60
    assert budget.rate == pytest.approx(FLOOR_REQUESTS_PER_SECOND)


def test_the_rate_accepted_over_the_last_second_caps_the_rate_a_cut_starts_from():
    """Asked for 10/s, the space let 3 through in the last second: the cut is from 3, not from 10."""
    clock = FakeClock(START)
    budget = budget_on(clock)
    advance(clock, 1.0)
    for _ in range(3):
        budget.acquire()
        budget.accepted()
        advance(clock, 0.3)
    refused = budget.acquire()

    budget.throttled(refused)

    assert budget.rate == pytest.approx(3 / 1.0 * CUT_FACTOR, rel=0.01)
    advance(clock, RECOVERY_SECONDS)
    assert budget.rate == pytest.approx(3.0, rel=0.01)  # back at the measured rate, not at 10


def test_the_accepted_rate_is_not_measured_over_less_than_half_a_second():
    rates = AcceptedRate(window=1.0)
    for moment in (START, START + 0.1, START + 0.2):
        rates.record(moment)

    assert rates.per_second(START + 0.3, since=START) is None  # 0.3 s of evidence: too little
    assert rates.per_second(START + 1.0, since=START) == pytest.approx(3.0)
    assert rates.per_second(START + 1.05, since=START) == pytest.approx(2.0)  # the first one left the window
    assert rates.per_second(START + 1.0, since=START + 0.6) is None  # paused until 0.4 s ago


# --- climbing back --------------------------------------------------------------------------


def test_the_rate_climbs_back_to_the_cut_from_rate_after_the_recovery_time_then_probes_up_to_the_budget():
    clock = FakeClock(START)
    budget = budget_on(clock)
    budget.throttled(budget.acquire())  # 10 -> 7
    sent_after_the_cut = budget.acquire()
    cut_from = budget.rate  # ~7, climbing
    budget.throttled(sent_after_the_cut)
    assert budget.rate == pytest.approx(cut_from * CUT_FACTOR)

    seen = []
    for _ in range(int(RECOVERY_SECONDS)):
        advance(clock, 1.0)
        seen.append(budget.rate)

    assert seen == sorted(seen)  # climbing, never dropping without a 429
    assert cut_from * CUT_FACTOR < seen[0] < cut_from
    assert seen[-1] == pytest.approx(cut_from)  # RECOVERY_SECONDS later: where it was cut from
    advance(clock, 2.0)
    assert cut_from < budget.rate < 10.0  # then it probes above, in case the space freed up
    for _ in range(60):
        advance(clock, 1.0)
        assert budget.rate <= 10.0
    assert budget.rate == pytest.approx(10.0)  # never above the configured budget


def test_the_cubic_curve_is_flat_near_the_old_rate():
    curve = CubicRate(max_rate=100.0, floor=1.0)
    curve.cut(peak=50.0, epoch=0.0)

    assert curve.at(0.0) == pytest.approx(35.0)
    early = curve.at(RECOVERY_SECONDS * 0.25) - curve.at(0.0)
    late = curve.at(RECOVERY_SECONDS) - curve.at(RECOVERY_SECONDS * 0.75)
    assert early > 10 * late  # fast at first, slow near the peak
    assert curve.at(RECOVERY_SECONDS) == pytest.approx(50.0)
    assert curve.at(RECOVERY_SECONDS * 10) == 100.0


# --- spacing and pauses ---------------------------------------------------------------------


def test_slots_are_spaced_at_the_rate_and_an_idle_budget_banks_no_burst():
    clock = FakeClock(START)
    budget = budget_on(clock, requests_per_second=4)

    slots = [budget.acquire() for _ in range(5)]
    advance(clock, 10.0)  # idle
    after_idle = [budget.acquire() for _ in range(3)]

    assert [later - earlier for earlier, later in zip(slots, slots[1:])] == [pytest.approx(0.25)] * 4
    assert [later - earlier for earlier, later in zip(after_idle, after_idle[1:])] == [pytest.approx(0.25)] * 2


def test_retry_after_pauses_the_budget_and_it_resumes_at_the_cut_rate():
    clock = FakeClock(START)
    budget = budget_on(clock)
    refused = budget.acquire()

    budget.throttled(refused, retry_after_seconds=2.0)
    slots = [budget.acquire() for _ in range(4)]

    assert slots[0] == pytest.approx(START + 2.0)
    gaps = [later - earlier for earlier, later in zip(slots, slots[1:])]
    assert all(1 / 8.0 < gap <= 1 / 7.0 + 1e-9 for gap in gaps), gaps  # 7/s, climbing
    assert budget.seconds_paused == pytest.approx(2.0)


def test_a_429_that_repeats_a_pause_already_running_does_not_lengthen_it():
    clock = FakeClock(START)
    budget = budget_on(clock)
    first, second = budget.acquire(), budget.acquire()
    advance(clock, 0.05)
    pause_starts = clock.now()

    budget.throttled(first, retry_after_seconds=5.0)
    advance(clock, 1.0)
    budget.throttled(second, retry_after_seconds=2.0)  # would end inside the first pause

    assert budget.acquire() == pytest.approx(pause_starts + 5.0)
    assert budget.seconds_paused == pytest.approx(5.0)
    assert budget.cuts == 1


class HeldClock:
    """A clock whose sleepers stay asleep until the test moves time past their wake-up time."""

    def __init__(self, start: float):
        self._now = start
        self._changed = threading.Condition()
        self.sleeping = 0
        self.naps = 0  # sleeps begun, ever

    def now(self) -> float:
        with self._changed:
            return self._now

    def sleep(self, seconds: float, stopping: Any = None) -> None:
        with self._changed:
            wake_at = self._now + seconds
            self.sleeping += 1
            self.naps += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._now >= wake_at)
            self.sleeping -= 1
            self._changed.notify_all()

    def wait_until_asleep(self, sleeping: int, naps: int) -> None:
        """Until `sleeping` threads sleep, after `naps` sleeps begun in all."""
        with self._changed:
            settled = self._changed.wait_for(lambda: (self.sleeping, self.naps) == (sleeping, naps), timeout=5)
            assert settled, f"{self.sleeping} sleeping after {self.naps} naps, not {sleeping} after {naps}"

    def move_to(self, moment: float) -> None:
        with self._changed:
            self._now = moment
            self._changed.notify_all()


def test_a_retry_after_holds_every_waiting_thread_and_releases_them_one_slot_apart():
    """Four workers hold slots 0.1 s apart when a 429 with Retry-After: 2 arrives: none of them
    sends before the pause ends, and afterwards they leave one by one, not all at once."""
    clock = HeldClock(START)
    budget = RateBudget(10.0, clock=clock.now, sleep=clock.sleep)
    refused = budget.acquire()  # the request the 429 answers
    released: list[tuple[str, float]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        slot = budget.acquire()
        with lock:
            released.append((name, slot))

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    clock.wait_until_asleep(4, naps=4)  # each granted a slot before the pause: START + 0.1 ... + 0.4

    budget.throttled(refused, retry_after_seconds=2.0)
    clock.move_to(START + 0.5)  # their old slots are due: they wake, see the pause and queue again
    clock.wait_until_asleep(4, naps=8)
    assert released == []

    clock.move_to(START + 10.0)
    for thread in threads:
        thread.join(timeout=5)

    slots = sorted(slot for _, slot in released)
    assert len(slots) == 4
    assert slots[0] == pytest.approx(START + 2.0)  # not before the pause ends
    gaps = [later - earlier for earlier, later in zip(slots, slots[1:])]
    assert all(gap >= 1 / 10.0 for gap in gaps), gaps  # spaced at the (cut) rate: no herd


# --- through the connector ------------------------------------------------------------------


@pytest.mark.usefixtures("clock")
def test_requests_after_a_429_are_spaced_at_the_cut_rate(api):
    ids = [f"user_id:r{n}" for n in range(6)]
    api.replies("user_traits", ids[0], Reply.error(429), traits_page({"a": 0}))
    for profile in ids[1:]:
        api.pages("user_traits", profile, traits_page({"a": 1}))

    result = run_read(config(user_external_ids=ids, requests_per_second=10, max_concurrency=1), ["user_traits"])

    assert len(result.records()) == 6
    times = [request.at for request in api.seen]
    assert len(times) == 7
    gaps = [after - before for before, after in zip(times[1:], times[2:])]  # from the 429's retry on
    assert all(1 / 8.0 < gap <= 1 / 7.0 + 1e-9 for gap in gaps), gaps  # 7/s and climbing, not 10/s
    (summary,) = [line for line in result.logs() if line.startswith("Summary user_traits")]
    assert "after 1 cuts" in summary and "1 rate-limited (429)" in summary


def test_a_later_429_whose_retry_after_ends_inside_the_running_pause_hands_out_no_slot_twice():
    """Requests in flight when the space began refusing come back 429 during the pause, often with a
    Retry-After that ends no later than the pause (an HTTP date, say). Threads already queued for
    the end of the pause keep their slots, and a thread that asks now queues behind them."""
    clock = HeldClock(START)
    budget = RateBudget(10.0, clock=clock.now, sleep=clock.sleep)
    budget.throttled(budget.acquire(), retry_after_seconds=2.0)  # paused until START + 2
    released: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        slot = budget.acquire()
        with lock:
            released.append(slot)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads[:2]:
        thread.start()
    clock.wait_until_asleep(2, naps=2)  # queued for START + 2 and one slot later
    clock.move_to(START + 0.5)
    budget.throttled(START - 0.01, retry_after_seconds=1.0)  # sent before the cut; ends inside the pause
    threads[2].start()
    clock.wait_until_asleep(3, naps=3)
    clock.move_to(START + 10.0)
    for thread in threads:
        thread.join(timeout=5)

    slots = sorted(released)
    assert len(slots) == 3 and slots[0] == pytest.approx(START + 2.0)
    gaps = [later - earlier for earlier, later in zip(slots, slots[1:])]
    assert all(gap >= 1 / 10.0 for gap in gaps), slots
