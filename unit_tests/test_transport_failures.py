"""Failure paths on real sockets (issue 21): what a refused, reset, cut-short, silent, TLS-less or
proxied connection does to a sync, and that no configured id appears in clear in anything printed.

Every server here is started by the test on 127.0.0.1; the exceptions are requests' own, raised by
real sockets, so their text (which quotes the URL, and so the id) is what a user would get.
"""

from __future__ import annotations

import gzip
import json
import socket

import pytest
from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer, FailureType

from unit_tests.builders import Reply, config, traits_page
from unit_tests.conftest import catalog_for, check_status, run_main, run_read, write_json
from unit_tests.local_server import LocalProfileServer, RawHttpServer

pytestmark = pytest.mark.usefixtures("clock")  # retries' waits run on the fake clock

EMAIL = "email:jane.doe@example.com"
EMAIL_AS_USER_ID = "user_id:alice.smith@example.org"  # many user ids are emails
IN_CLEAR = ("jane.doe", "jane.doe%40", "alice.smith")


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def misbehaving_first_connection(first_connection) -> RawHttpServer:
    """A raw server whose first connection misbehaves as `first_connection` says; later ones answer."""
    whole = json.dumps(traits_page({"a": 1})).encode()

    def serve(server, connection, reader, index):
        if server.read_request(reader, index) is None:
            return
        if index == 0:
            first_connection(server, connection, reader)
            return
        server.answer(connection, 200, whole, [("Content-Type", "application/json")])
        server.close(connection, reader)

    return RawHttpServer(serve)


def reset_mid_body(server, connection, reader):
    server.answer(connection, 200, b'{"traits": {"a"', [("Content-Type", "application/json")], length=2048)
    server.reset(connection, reader)


def cut_short(server, connection, reader):
    server.answer(connection, 200, b'{"traits": {"a"', [("Content-Type", "application/json")], length=2048)
    server.close(connection, reader)


def silent(server, connection, reader):
    server.stopping.wait(5)


def assert_no_id_in_clear(text: str) -> None:
    for clear in IN_CLEAR:
        assert clear not in text, text[max(0, text.find(clear) - 300) : text.find(clear) + 100]


@pytest.mark.parametrize(
    "first_connection, reason",
    [(reset_mid_body, "connection reset"), (cut_short, "the answer was cut short"), (silent, "no answer within 'request_timeout_seconds' (1 s)")],
    ids=["reset-mid-body", "cut-short", "read-timeout"],
)
def test_a_broken_answer_is_retried_and_logged_by_its_reason_without_the_url(first_connection, reason):
    server = misbehaving_first_connection(first_connection)

    with server.running():
        result = run_read(config(api_base_url=server.url, user_external_ids=[EMAIL], request_timeout_seconds=1.0), ["user_traits"])

    assert len(server.requests) == 2
    assert result.records() == [{"external_id": EMAIL, "traits": {"a": 1}}]
    retries = [line for line in result.logs() if line.startswith("Retrying")]
    assert len(retries) == 1 and f"after {reason}" in retries[0], retries
    assert "email:j***@example.com (user_external_ids[0])" in retries[0]
    assert_no_id_in_clear("\n".join(result.logs()))


def test_a_gzip_body_that_does_not_decode_is_retried():
    server = LocalProfileServer().replies(
        "user_traits", "user_id:u1", Reply(200, b"\x1f\x8b not really gzip", {"Content-Encoding": "gzip"}), traits_page({"a": 1})
    )

    with server.running():
        result = run_read(config(api_base_url=server.url), ["user_traits"])

    assert len(server.seen) == 2
    assert result.records() == [{"external_id": "user_id:u1", "traits": {"a": 1}}]
    assert any("the answer was cut short (" in line for line in result.logs() if line.startswith("Retrying"))


def test_a_refused_connection_fails_after_the_retries_with_a_transient_error_naming_host_and_masked_id():
    port = closed_port()

    result = run_read(config(api_base_url=f"http://127.0.0.1:{port}", user_external_ids=[EMAIL, EMAIL_AS_USER_ID], max_retries=2), ["user_traits"])

    error = result.stream_error("user_traits")
    assert error.failure_type == FailureType.transient_error
    assert f"at 127.0.0.1:{port} failed 3 times, last with connection refused" in error.message
    assert "(user_external_ids[" in error.message
    assert result.records() == []
    assert_no_id_in_clear(result.all_text())


def test_https_to_a_server_without_tls_is_a_config_error_with_the_reason_and_no_retry():
    server = misbehaving_first_connection(cut_short)  # speaks plain HTTP: the TLS handshake fails

    with server.running():
        result = run_read(config(api_base_url=f"https://127.0.0.1:{server.port}", user_external_ids=[EMAIL]), ["user_traits"])

    error = result.stream_error("user_traits")
    assert error.failure_type == FailureType.config_error
    assert "the TLS handshake failed (" in error.message and "not retried" in error.message
    assert server.accepted == 1  # no retry
    assert_no_id_in_clear(result.all_text())


def test_a_proxy_that_refuses_is_a_config_error_naming_the_proxy_settings(monkeypatch):
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")

    result = run_read(config(api_base_url="https://profiles.segment.com", user_external_ids=[EMAIL]), ["user_traits"])

    error = result.stream_error("user_traits")
    assert error.failure_type == FailureType.config_error
    assert "the proxy failed" in error.message and "HTTPS_PROXY" in error.message
    assert_no_id_in_clear(result.all_text())


def test_check_against_a_closed_port_fails_with_the_reason_and_no_id_in_clear():
    status, message, output = check_status(config(api_base_url=f"http://127.0.0.1:{closed_port()}", user_external_ids=[EMAIL, EMAIL_AS_USER_ID]))

    assert status == "FAILED"
    assert "Could not reach the Profile API" in message and "connection refused" in message
    assert_no_id_in_clear(message + "\n".join(line.log.message for line in output.logs))


@pytest.mark.parametrize("command", [["check"], ["read"], ["read", "--debug"]], ids=["check", "read", "read-debug"])
def test_the_console_script_prints_no_configured_id_in_clear_when_the_api_is_unreachable(tmp_path, command):
    # Issue 21: 0.2.0 printed the email 33 times here: requests' exception text carries the URL.
    settings = config(api_base_url=f"http://127.0.0.1:{closed_port()}", user_external_ids=[EMAIL, EMAIL_AS_USER_ID], max_retries=1)
    arguments = [*command, "--config", write_json(tmp_path / "config.json", settings)]
    if command[0] == "read":
        catalog = ConfiguredAirbyteCatalogSerializer.dump(catalog_for(["user_traits", "user_events"]))
        arguments += ["--catalog", write_json(tmp_path / "catalog.json", catalog)]

    completed = run_main(*arguments, folder=tmp_path)

    printed = completed.stdout + completed.stderr
    assert "connection refused" in printed
    assert "email:j***@example.com (user_external_ids[0])" in printed
    assert_no_id_in_clear(printed)
    if command[0] == "read":
        assert completed.returncode != 0


def test_records_keep_the_id_as_configured_while_logs_mask_it(tmp_path):
    body = gzip.compress(json.dumps(traits_page({"plan": "pro"})).encode())
    server = LocalProfileServer().replies("user_traits", EMAIL_AS_USER_ID, Reply(200, body, {"Content-Encoding": "gzip"}))
    catalog = ConfiguredAirbyteCatalogSerializer.dump(catalog_for(["user_traits"]))

    with server.running():
        completed = run_main(
            "read", "--debug",
            "--config", write_json(tmp_path / "config.json", config(api_base_url=server.url, user_external_ids=[EMAIL_AS_USER_ID])),
            "--catalog", write_json(tmp_path / "catalog.json", catalog),
            folder=tmp_path,
        )

    assert completed.returncode == 0, completed.stderr[-2000:]
    messages = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith('{"type":')]
    assert [message["record"]["data"]["external_id"] for message in messages if message["type"] == "RECORD"] == [EMAIL_AS_USER_ID]
    assert_no_id_in_clear("\n".join(line for line in completed.stdout.splitlines() if '"RECORD"' not in line) + completed.stderr)
