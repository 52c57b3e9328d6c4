"""A space whose other callers leave the connector far less than its budget (issue 14).

Segment's 100 requests/s are shared by everything that calls the space, so the rate left for a
sync is unknown. Here the emulator lets 30 requests/s through while the connector runs its
default config (a budget of 80/s, 32 workers), with Segment-like latency. A 429 must slow the
connector down, not only delay one request: few requests may draw a 429, and when the 429 says
Retry-After, no request may arrive before that wait is over (the emulator counts every request
that arrives during a wait it told, with no grace for requests already on their way).
"""

import re

import pytest

from integration_tests.conftest import FIXED_NOW, emulator_config
from integration_tests.connector_cli import STREAMS, configured_catalog, run_connector
from integration_tests.ground_truth import as_multiset, expected_records
from segment_profile_emulator.testing import running_emulator

# Enough requests (~850) that the 429s of the first second, before the rate has come down to the
# limit (a fixed ~15-20: each cut leaves rate x latency requests in flight), are not most of them.
USERS, ACCOUNTS = 150, 10
LIMIT = 30  # requests/s the space's other callers leave; the connector's default budget is 80/s
SUMMARY_RATE = re.compile(r"rate now ([\d.]+)/s after (\d+) cuts")


@pytest.mark.parametrize("retry_after", ["seconds", "none"], ids=["with-retry-after", "without-retry-after"])
def test_a_limit_far_below_the_budget_costs_few_429s_and_loses_nothing(tmp_path, retry_after):
    with running_emulator(
        users=USERS, accounts=ACCOUNTS, seed=21, now=FIXED_NOW,
        rate_limit=LIMIT, retry_after=retry_after, latency_ms=100, latency_spread=0.5,
    ) as emulator:
        truth = emulator.ground_truth()
        config = emulator_config(emulator, truth)
        # The default pacing: what a user who never heard of the other callers runs.
        del config["requests_per_second"], config["max_concurrency"]
        emulator.reset_stats()
        run = run_connector("read", tmp_path, config, configured_catalog(incremental=False))
        stats = emulator.stats()

    assert run.returncode == 0 and run.errors == [], run.stderr[-2000:] + "\n".join(run.logs[-20:])
    expected = expected_records(truth)
    for stream in STREAMS:
        assert as_multiset(run.records[stream]) == as_multiset(expected[stream]), f"{stream} differs from the ground truth"

    total, throttled, during_wait = stats["requests_total"], stats["rate_limited_429"], stats["requests_during_retry_after"]
    figures = f"{throttled} 429s and {during_wait} requests during Retry-After of {total} requests"
    assert throttled > 0, f"the limit never bit: {figures}"
    assert throttled <= 0.05 * total, figures
    if retry_after != "none":
        assert during_wait <= 0.01 * total, figures

    # The rate is shared by every stream of the sync: the last summary counts every cut.
    summaries = [line for line in run.logs if line.startswith("Summary ")]
    assert len(summaries) == len(STREAMS) and all(SUMMARY_RATE.search(line) for line in summaries), summaries
    assert int(SUMMARY_RATE.search(summaries[-1]).group(2)) > 0, summaries[-1]
