"""Rate limiting, injected faults, latency and the stats that count them."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import pytest
import requests

from segment_profile_emulator.testing import running_emulator

LOOKUP_ID = "user_id:user-00000"
RATE_LIMITED = {"error": {"code": "rate_limit_error", "message": "Too many requests"}}


def traits_url(emulator, lookup_id=LOOKUP_ID):
    return emulator.profile_url("users", lookup_id, "traits")


def session_for(emulator):
    session = requests.Session()
    session.auth = (emulator.token, "")
    return session


def statuses_of(emulator, count):
    with session_for(emulator) as session:
        return [session.get(traits_url(emulator), timeout=10).status_code for _ in range(count)]


def raw_connection(emulator):
    address = urllib.parse.urlsplit(emulator.url)
    return http.client.HTTPConnection(address.hostname, address.port, timeout=10)


def raw_get(connection, emulator):
    path = urllib.parse.urlsplit(traits_url(emulator)).path
    connection.request("GET", path, headers={"Authorization": requests.auth._basic_auth_str(emulator.token, "")})
    return connection.getresponse()


# --- rate limit ---------------------------------------------------------------------------------


def test_requests_above_the_rate_get_429_without_retry_after_by_default():
    with running_emulator(users=5, rate_limit=5) as emulator, session_for(emulator) as session:
        responses = [session.get(traits_url(emulator), timeout=10) for _ in range(12)]
        statuses = [response.status_code for response in responses]
        assert statuses[:5] == [200] * 5  # a burst of one second's worth
        assert statuses[5:].count(429) >= 5  # a slow machine may refill a token or two meanwhile
        limited = [response for response in responses if response.status_code == 429]
        assert all(response.json() == RATE_LIMITED and "Retry-After" not in response.headers for response in limited)
        stats = emulator.stats()
        assert stats["rate_limited_429"] == len(limited) == stats["by_status"]["429"]
        assert stats["requests_during_retry_after"] == 0


def test_requests_sent_while_told_to_wait_are_counted_even_right_after_the_429():
    with running_emulator(users=5, rate_limit=2, retry_after="seconds") as emulator, session_for(emulator) as session:
        statuses = [session.get(traits_url(emulator), timeout=10).status_code for _ in range(2)]
        limited = session.get(traits_url(emulator), timeout=10)
        assert statuses == [200, 200] and limited.status_code == 429
        assert limited.headers["Retry-After"] == "1"
        for _ in range(3):  # impatient, at once: each 429 tells it to wait again, and no grace hides it
            assert session.get(traits_url(emulator), timeout=10).headers["Retry-After"] == "1"
        time.sleep(1.1)
        assert session.get(traits_url(emulator), timeout=10).status_code == 200  # patient
        assert emulator.stats()["requests_during_retry_after"] == 3


def test_the_wait_counts_from_when_the_429_is_sent_not_from_when_its_request_arrived():
    with running_emulator(users=5, rate_limit=1, retry_after="seconds", latency_ms=300, latency_spread=0) as emulator:
        with session_for(emulator) as session:
            assert session.get(traits_url(emulator), timeout=10).status_code == 200
            assert session.get(traits_url(emulator), timeout=10).headers["Retry-After"] == "1"
            time.sleep(0.8)  # 1.1 s after its request arrived, but 0.8 s after the 429 was read: too early
            session.get(traits_url(emulator), timeout=10)
        assert emulator.stats()["requests_during_retry_after"] == 1


def test_retry_after_can_be_an_http_date():
    with running_emulator(users=5, rate_limit=1, retry_after="http-date") as emulator:
        statuses = statuses_of(emulator, 1)
        with session_for(emulator) as session:
            limited = session.get(traits_url(emulator), timeout=10)
        assert statuses == [200] and limited.status_code == 429
        wait = (parsedate_to_datetime(limited.headers["Retry-After"]) - datetime.now(timezone.utc)).total_seconds()
        assert 0 < wait <= 2


@pytest.mark.parametrize(
    "value, tells_a_wait",
    [("40", True), ("1e9", True), ("inf", True), ("Fri, 31 Dec 9999 23:59:59 GMT", True), ("soon", False), ("-5", False)],
)
def test_a_fixed_retry_after_is_sent_as_is_and_counted_as_the_wait_it_tells(value, tells_a_wait):
    with running_emulator(users=5, rate_limit=1, retry_after="seconds", retry_after_value=value) as emulator:
        with session_for(emulator) as session:
            responses = [session.get(traits_url(emulator), timeout=10) for _ in range(3)]
        assert [response.status_code for response in responses] == [200, 429, 429]
        assert [response.headers.get("Retry-After") for response in responses] == [None, value, value]
        assert responses[1].json() == RATE_LIMITED
        # the third request came at once, while the second's Retry-After (if a client can read one) ran
        assert emulator.stats()["requests_during_retry_after"] == (1 if tells_a_wait else 0)


def test_a_fixed_retry_after_also_comes_with_the_429_storm_and_changes_while_running():
    with running_emulator(users=5, rate_limit=0, fault_429=1) as emulator:
        assert "Retry-After" not in status_and_retry_after(emulator)
        emulator.set_faults(retry_after_value="40")
        assert status_and_retry_after(emulator) == {"status": 429, "Retry-After": "40"}
        emulator.set_faults(retry_after_value="")
        assert "Retry-After" not in status_and_retry_after(emulator)
        for invalid in ("40\r\nX-Injected: 1", "\x00", "\u20ac"):
            with pytest.raises(urllib.error.HTTPError) as rejected:
                emulator.set_faults(retry_after_value=invalid)
            assert rejected.value.code == 400
        assert emulator.stats()["faults"]["429"] == 3


def status_and_retry_after(emulator):
    with session_for(emulator) as session:
        response = session.get(traits_url(emulator), timeout=10)
    return {"status": response.status_code, **{name: value for name, value in response.headers.items() if name == "Retry-After"}}


def test_a_burst_size_can_differ_from_the_rate():
    with running_emulator(users=5, rate_limit=1, rate_burst=3) as emulator:
        assert statuses_of(emulator, 4) == [200, 200, 200, 429]


def test_the_rate_limit_schedule_lowers_the_limit_and_caps_the_bucket_at_the_new_burst():
    with running_emulator(users=5, rate_limit=50, rate_limit_schedule="1:2") as emulator:
        assert emulator.stats()["current_rate_limit"] == 50
        started = time.monotonic()
        assert statuses_of(emulator, 5) == [200] * 5  # the schedule's clock starts with the first request
        assert emulator.stats()["current_rate_limit"] == 50
        time.sleep(max(0.0, 1.05 - (time.monotonic() - started)))
        assert emulator.stats()["current_rate_limit"] == 2
        # 45 tokens were left at 50/s; at 2/s the bucket holds 2 at most
        assert statuses_of(emulator, 3) == [200, 200, 429]
        assert emulator.stats()["successful_requests"] == 7
        emulator.reset_stats()  # the schedule starts again with the next request
        assert emulator.stats()["current_rate_limit"] == 50


def test_the_schedule_and_the_limit_change_while_running():
    with running_emulator(users=5, rate_limit=0) as emulator:
        assert statuses_of(emulator, 3) == [200] * 3
        knobs = emulator.set_faults(rate_limit_schedule="0:1")  # counted from the first request, long past
        assert knobs["rate_limit_schedule"] == "0:1" and emulator.stats()["current_rate_limit"] == 1
        assert statuses_of(emulator, 2) == [200, 429]
        emulator.set_faults(rate_limit_schedule="", rate_limit=30)
        assert emulator.stats()["current_rate_limit"] == 30
        for invalid in ("30", "a:b", "10:5,5:1", "-1:3"):
            with pytest.raises(urllib.error.HTTPError) as rejected:
                emulator.set_faults(rate_limit_schedule=invalid)
            assert rejected.value.code == 400
        assert emulator.set_faults()["rate_limit_schedule"] == ""


# --- injected faults ----------------------------------------------------------------------------


def test_a_429_storm_comes_on_top_of_the_rate_limit():
    with running_emulator(users=5, rate_limit=0, fault_429=1, retry_after="seconds") as emulator:
        with session_for(emulator) as session:
            response = session.get(traits_url(emulator), timeout=10)
        assert response.status_code == 429 and response.json() == RATE_LIMITED
        assert response.headers["Retry-After"] == "1"
        stats = emulator.stats()
        assert stats["faults"]["429"] == 1 and stats["rate_limited_429"] == 0


def test_server_errors_are_500_502_or_503_with_an_error_body():
    with running_emulator(users=5, rate_limit=0, fault_5xx=1) as emulator, session_for(emulator) as session:
        responses = [session.get(traits_url(emulator), timeout=10) for _ in range(20)]
        assert {response.status_code for response in responses} == {500, 502, 503}
        assert all(set(response.json()["error"]) == {"code", "message"} for response in responses)
        assert all(response.headers["Request-Id"] for response in responses)
        assert emulator.stats()["faults"]["5xx"] == 20


def test_a_reset_closes_the_connection_without_a_response():
    with running_emulator(users=5, rate_limit=0, fault_reset=1) as emulator:
        connection = raw_connection(emulator)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
            raw_get(connection, emulator)
        connection.close()
        stats = emulator.stats()
        assert stats["faults"]["reset"] == 1 and stats["by_status"] == {}
        assert emulator.requests()[0]["status"] is None


def test_a_truncated_response_announces_the_full_length_and_sends_half():
    with running_emulator(users=5, rate_limit=0, fault_truncate=1) as emulator:
        connection = raw_connection(emulator)
        response = raw_get(connection, emulator)
        length = int(response.headers["Content-Length"])
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead) as incomplete:
            response.read()
        assert len(incomplete.value.partial) == length // 2
        connection.close()
        assert emulator.stats()["faults"]["truncate"] == 1


def test_a_reset_mid_body_sends_the_headers_and_part_of_the_body_then_an_rst():
    with running_emulator(users=5, rate_limit=0, fault_reset_mid_body=1) as emulator:
        connection = raw_connection(emulator)
        response = raw_get(connection, emulator)
        assert response.status == 200 and int(response.headers["Content-Length"]) > 0
        assert "Connection" not in response.headers  # unannounced, unlike a truncated answer
        with pytest.raises(ConnectionResetError):
            response.read()
        connection.close()
        with session_for(emulator) as session, pytest.raises(requests.exceptions.ChunkedEncodingError) as broken:
            session.get(traits_url(emulator), timeout=10)
        assert "Connection reset by peer" in str(broken.value)
        stats = emulator.stats()
        assert stats["faults"]["reset_mid_body"] == 2 and stats["by_status"] == {"200": 2}


def test_slow_answers_and_latency_delay_responses():
    with running_emulator(users=5, rate_limit=0, fault_slow=1, slow_seconds=0.3) as emulator:
        started = time.monotonic()
        assert statuses_of(emulator, 1) == [200]
        assert time.monotonic() - started >= 0.3
        assert emulator.stats()["faults"]["slow"] == 1
    with running_emulator(users=5, rate_limit=0, latency_ms=100, latency_spread=0) as emulator:
        started = time.monotonic()
        assert statuses_of(emulator, 3) == [200] * 3
        assert time.monotonic() - started >= 0.3


def test_fault_draws_replay_with_the_same_fault_seed():
    sequences = []
    for fault_seed in (1, 1, 2):
        with running_emulator(users=5, rate_limit=0, fault_5xx=0.5, fault_seed=fault_seed) as emulator:
            sequences.append([status == 200 for status in statuses_of(emulator, 30)])
    assert sequences[0] == sequences[1] != sequences[2]
    assert 0 < sum(sequences[0]) < 30


def test_faults_can_change_while_running():
    with running_emulator(users=5, rate_limit=0) as emulator:
        assert statuses_of(emulator, 1) == [200]
        knobs = emulator.set_faults(fault_5xx=1)
        assert knobs["fault_5xx"] == 1
        assert statuses_of(emulator, 1)[0] >= 500
        emulator.set_faults(fault_5xx=0, rate_limit=1, rate_burst=1)
        assert statuses_of(emulator, 2) == [200, 429]
        with pytest.raises(urllib.error.HTTPError) as rejected:
            emulator.set_faults(no_such_knob=1)
        assert rejected.value.code == 400


# --- stats --------------------------------------------------------------------------------------


def test_stats_count_requests_by_endpoint_and_status_and_log_them():
    with running_emulator(users=5, accounts=2, rate_limit=0) as emulator, session_for(emulator) as session:
        plus_id = "email:first.last+promo1@example.com"
        session.get(traits_url(emulator), params={"limit": "3"}, timeout=10)
        session.get(traits_url(emulator, plus_id), timeout=10)
        session.get(emulator.profile_url("users", "user_id:nobody", "events"), timeout=10)
        session.get(emulator.profile_url("accounts", "group_id:acct-0000", "traits"), timeout=10)
        requests.get(traits_url(emulator), timeout=10)
        session.get(emulator.url + "/v1/nowhere", timeout=10)
        emulator.stats()  # admin routes are not counted

        stats = emulator.stats()
        assert stats["requests_total"] == 6
        assert stats["by_endpoint"] == {
            "user_traits": 3, "user_events": 1, "user_external_ids": 0, "user_metadata": 0, "user_links": 0,
            "account_traits": 1, "account_external_ids": 0, "account_links": 0, "list_users": 0,
        }
        assert stats["by_status"] == {"200": 3, "404": 2, "401": 1}
        assert stats["successful_requests"] == 3 and stats["current_rate_limit"] == 0
        assert stats["elapsed_seconds"] > 0 and stats["peak_requests_per_second"] == 6
        log = emulator.requests()
        assert [entry["status"] for entry in log] == [200, 200, 404, 200, 401, 404]
        assert log[0]["query"] == {"limit": "3"} and log[0]["endpoint"] == "user_traits"
        assert log[1]["external_id"] == plus_id  # decoded

        emulator.reset_stats()
        assert emulator.stats()["requests_total"] == 0 and emulator.requests() == []


def test_peak_in_flight_counts_concurrent_requests():
    with running_emulator(users=5, rate_limit=0, latency_ms=300, latency_spread=0) as emulator:
        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(lambda _: statuses_of(emulator, 1)[0], range(6))) == [200] * 6
        assert emulator.stats()["peak_in_flight"] == 6
