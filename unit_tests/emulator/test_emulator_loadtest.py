"""The load test itself works: its count matches the server's. Its rate is a benchmark figure
(README), not an assertion: timing targets do not live in tests."""

from segment_profile_emulator.loadtest import run_load


def test_load_test_counts_what_the_server_served():
    result = run_load(seconds=1, clients=2, users=50)
    assert result.requests > 0
    assert set(result.statuses) == {200}
    assert result.server_stats["requests_total"] == result.requests
