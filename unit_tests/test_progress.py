"""What an operator reads while a sync runs (issue 8): steady progress lines and one summary per stream."""

from __future__ import annotations

import re

import pytest
from airbyte_cdk.models import Level

from unit_tests.builders import Reply, config, data_page, external_id, traits_page
from unit_tests.conftest import run_read

pytestmark = pytest.mark.usefixtures("clock")  # no test really waits


def lines_starting(result, prefix: str) -> list[str]:
    return [line for line in result.logs(Level.INFO) if line.startswith(prefix)]


def test_a_read_logs_one_summary_per_stream_with_its_figures(api):
    api.pages("user_traits", "user_id:a", traits_page({"x": 1}, next="y"), traits_page({"y": 2}))
    api.pages("user_traits", "user_id:b", traits_page({"x": 3}))
    api.replies("user_traits", "email:jane.doe@example.com", Reply.error(404))
    api.pages("user_external_ids", "user_id:a", data_page([external_id("a1"), external_id("a2")]))
    api.pages("user_external_ids", "user_id:b", data_page([]))
    api.replies("user_external_ids", "email:jane.doe@example.com", Reply.error(404))

    result = run_read(
        config(user_external_ids=["user_id:a", "email:jane.doe@example.com", "user_id:b"]), ["user_traits", "user_external_ids"]
    )

    (traits,) = lines_starting(result, "Summary user_traits:")
    assert "2 profiles read" in traits
    assert "1 not found (email:j***@example.com (user_external_ids[1]))" in traits
    assert "2 records" in traits and "4 requests" in traits and "3 pages" in traits
    assert re.search(r"\d+\.\d s\.$", traits)  # the duration
    (external_ids,) = lines_starting(result, "Summary user_external_ids:")
    assert "2 profiles read" in external_ids and "2 records" in external_ids and "3 requests" in external_ids
    assert "jane.doe" not in result.all_text()


def test_the_summary_counts_rate_limits_and_retries(api):
    api.replies("user_traits", "user_id:a", Reply.error(429, Retry_After="1"), Reply.error(500), traits_page({"x": 1}))

    result = run_read(config(user_external_ids=["user_id:a"]), ["user_traits"])

    (summary,) = lines_starting(result, "Summary user_traits:")
    assert "3 requests" in summary and "1 pages" in summary
    assert "1 rate-limited (429)" in summary and "1 retries" in summary
    # The shared rate as it stands: cut once to 0.7 of the 80/s budget, climbing back since.
    rate = float(re.search(r"rate now ([\d.]+)/s after 1 cuts", summary).group(1))
    assert 56.0 <= rate < 80.0


def test_the_not_found_list_in_the_summary_is_capped(api):
    missing = [f"email:person{n:02d}@example.com" for n in range(15)]
    for profile in missing:
        api.replies("user_traits", profile, Reply.error(404))

    result = run_read(config(user_external_ids=missing), ["user_traits"])

    (summary,) = lines_starting(result, "Summary user_traits:")
    assert "15 not found" in summary and "(+5 more)" in summary
    assert summary.count("***@example.com") == 10
    assert "person" not in summary


def test_progress_lines_appear_at_a_steady_pace_with_the_figures_an_operator_needs(api, clock):
    ids = [f"user_id:p{n:02d}" for n in range(24)]
    for profile in ids:
        api.pages("user_traits", profile, traits_page({"x": 1}))

    # 1 request/s on the fake clock: the read takes ~23 s, progress is due every 5 s.
    result = run_read(config(user_external_ids=ids, requests_per_second=1, max_concurrency=2), ["user_traits"])

    progress = lines_starting(result, "Progress user_traits:")
    assert 3 <= len(progress) <= 5, progress
    for line in progress:
        assert re.search(r"\d+/24 profiles", line)
        assert "requests/s" in line and "1/s budget" in line
        assert "429" in line and "retries" in line
        assert "rate now 1.0/s after 0 cuts" in line
        assert "left" in line
    done = [int(re.search(r"(\d+)/24 profiles", line).group(1)) for line in progress]
    assert done == sorted(done) and done[-1] <= 24
    rates = [float(re.search(r"([\d.]+) requests/s", line).group(1)) for line in progress]
    assert all(0.5 <= rate <= 1.3 for rate in rates), rates  # n requests in n-1 s at the first lines
    assert len(lines_starting(result, "Summary user_traits:")) == 1


def test_a_short_read_logs_no_progress_line(api):
    api.pages("user_traits", "user_id:u1", traits_page({"x": 1}))

    result = run_read(config(), ["user_traits"])

    assert lines_starting(result, "Progress") == []
    assert len(lines_starting(result, "Summary user_traits:")) == 1
