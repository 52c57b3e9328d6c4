"""The real HttpTransport against servers on 127.0.0.1: what it sends, what it returns, which
faults become a TransportError, how it keeps connections alive and how it honours proxies.

Each server is a `RawHttpServer` (local_server.py) running a small function per accepted
connection, so a test decides the exact bytes and the exact moment a connection closes or resets.
"""

from __future__ import annotations

import base64
import socket
import threading
import time

import pytest

from source_segment_profile.http_transport import HttpTransport, RawResponse, TransportError
from unit_tests.local_server import RawHttpServer

HEADERS = {"Authorization": "Basic dG9rZW46", "Accept": "application/json", "User-Agent": "transport-test"}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxies_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests go straight to 127.0.0.1 unless a test sets a proxy itself."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def transport(read_timeout: float = 5.0) -> HttpTransport:
    return HttpTransport(headers=HEADERS, connect_timeout=2.0, read_timeout=read_timeout)


def keep_alive(status: int = 200, body: bytes = b'{"ok": true}', headers=()):
    """A server function answering every request of a connection the same way, keeping it open."""

    def serve(server: RawHttpServer, connection: socket.socket, reader, index: int) -> None:
        while server.read_request(reader, index) is not None:
            server.answer(connection, status, body, headers)

    return serve


# --- what is sent and what comes back ---------------------------------------------------------


def test_a_get_returns_status_lower_cased_headers_and_the_exact_body_and_sends_the_headers_and_host():
    body = b'\x00{"traits": {"a": "\xc3\xa9"}}\xff\r\n'
    served = keep_alive(201, body, [("Request-Id", "rid-7"), ("X-Mixed-Case", "Value")])

    with RawHttpServer(served).running() as server:
        response = transport().get(f"{server.url}/v1/spaces/s/profiles/email:a%2Bb/traits?limit=200&include=a+b")

    assert response == RawResponse(
        201, {"content-length": str(len(body)), "request-id": "rid-7", "x-mixed-case": "Value"}, body
    )
    (request,) = server.requests
    assert request.line == "GET /v1/spaces/s/profiles/email:a%2Bb/traits?limit=200&include=a+b HTTP/1.1"
    assert {name: request.headers[name] for name in HEADERS} == HEADERS
    assert request.headers["Host"] == f"127.0.0.1:{server.port}"
    # Nothing else: in particular no Accept-Encoding, so the body arrives as the server wrote it.
    assert set(request.headers) == {*HEADERS, "Host"}


def test_a_redirect_is_returned_as_it_is_not_followed():
    with RawHttpServer(keep_alive(302, b"", [("Location", "http://127.0.0.1:9/elsewhere")])).running() as server:
        response = transport().get(f"{server.url}/v1/traits")

    assert response.status == 302
    assert response.headers["location"] == "http://127.0.0.1:9/elsewhere"
    assert [request.target for request in server.requests] == ["/v1/traits"]


# --- connections --------------------------------------------------------------------------


def test_sequential_gets_of_one_thread_reuse_one_connection():
    with RawHttpServer(keep_alive()).running() as server:
        client = transport()
        answers = [client.get(f"{server.url}/page/{n}") for n in range(3)]

    assert [answer.status for answer in answers] == [200, 200, 200]
    assert server.accepted == 1
    assert [(request.target, request.connection) for request in server.requests] == [("/page/0", 0), ("/page/1", 0), ("/page/2", 0)]


def test_each_thread_has_its_own_connection():
    with RawHttpServer(keep_alive()).running() as server:
        client = transport()
        client.get(f"{server.url}/main")
        worker = threading.Thread(target=lambda: [client.get(f"{server.url}/worker") for _ in range(2)])
        worker.start()
        worker.join(timeout=5)
        client.get(f"{server.url}/main")

    assert server.accepted == 2
    connections = {request.target: set() for request in server.requests}
    for request in server.requests:
        connections[request.target].add(request.connection)
    assert len(connections["/main"]) == 1 and len(connections["/worker"]) == 1
    assert connections["/main"] != connections["/worker"]


def test_a_kept_alive_connection_the_server_closed_while_idle_is_reopened_without_an_error():
    closed = threading.Event()

    def serve_one_then_close(server, connection, reader, index):
        while server.read_request(reader, index) is not None:
            server.answer(connection, 200, f"answer {index}".encode())  # no "Connection: close": looks kept alive
            if index == 0:  # the first connection goes away while idle, without a word
                server.close(connection, reader)
                closed.set()
                return

    with RawHttpServer(serve_one_then_close).running() as server:
        client = transport()
        first = client.get(f"{server.url}/one")
        assert closed.wait(timeout=5)
        time.sleep(0.02)  # the FIN reaches the client's socket
        second = client.get(f"{server.url}/two")

    assert (first.body, second.body) == (b"answer 0", b"answer 1")
    assert server.accepted == 2
    assert [(request.target, request.connection) for request in server.requests] == [("/one", 0), ("/two", 1)]


def test_a_kept_alive_connection_is_reopened_only_once():
    """Closed while idle, then the fresh connection resets too: that is a failure, not a loop."""

    def serve_one_then_reset_everything(server, connection, reader, index):
        if index == 0:
            server.read_request(reader, index)
            server.answer(connection, 200, b"first")
            server.close(connection, reader)
        else:
            server.read_request(reader, index)
            server.reset(connection, reader)

    with RawHttpServer(serve_one_then_reset_everything).running() as server:
        client = transport()
        assert client.get(f"{server.url}/one").body == b"first"
        time.sleep(0.05)
        with pytest.raises(TransportError):
            client.get(f"{server.url}/two")

    assert server.accepted == 2


def test_connection_close_answers_work_for_consecutive_requests():
    def serve_once_and_close(server, connection, reader, index):
        server.read_request(reader, index)
        server.answer(connection, 200, f"answer {index}".encode(), [("Connection", "close")])
        server.close(connection, reader)

    with RawHttpServer(serve_once_and_close).running() as server:
        client = transport()
        bodies = [client.get(f"{server.url}/page/{n}").body for n in range(3)]

    assert bodies == [b"answer 0", b"answer 1", b"answer 2"]
    assert server.accepted == 3
    assert [request.connection for request in server.requests] == [0, 1, 2]


# --- faults -------------------------------------------------------------------------------


def test_a_refused_connection_raises_a_transport_error():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed on leaving: nothing listens there

    with pytest.raises(TransportError, match="ConnectionRefusedError"):
        transport().get(f"http://127.0.0.1:{port}/v1/traits")


def test_a_reset_before_any_answer_raises_a_transport_error():
    def reset_on_request(server, connection, reader, index):
        server.read_request(reader, index)
        server.reset(connection, reader)

    with RawHttpServer(reset_on_request).running() as server:
        with pytest.raises(TransportError, match="^ConnectionResetError"):
            transport().get(f"{server.url}/v1/traits")

    assert server.accepted == 1  # a fresh connection's failure is not retried by the transport
    assert len(server.requests) == 1


def test_a_body_cut_short_of_its_content_length_raises_a_transport_error_saying_so():
    def short_body(server, connection, reader, index):
        server.read_request(reader, index)
        server.answer(connection, 200, b"x" * 40, length=100)
        server.close(connection, reader)

    with RawHttpServer(short_body).running() as server:
        with pytest.raises(TransportError) as raised:
            transport().get(f"{server.url}/v1/traits")

    assert str(raised.value) == "body cut short (40 bytes of 100)"


def test_an_answer_slower_than_the_read_timeout_raises_a_transport_error():
    def slow(server, connection, reader, index):
        server.read_request(reader, index)
        server.stopping.wait(timeout=5)  # answers only after the test is over

    with RawHttpServer(slow).running() as server:
        started = time.monotonic()
        with pytest.raises(TransportError) as raised:
            transport(read_timeout=0.3).get(f"{server.url}/v1/traits")
        elapsed = time.monotonic() - started

    assert str(raised.value) == "timed out"
    assert 0.29 <= elapsed < 0.8
    assert len(server.requests) == 1


def test_after_a_failure_the_next_get_uses_a_new_connection():
    def cut_the_first_then_answer(server, connection, reader, index):
        while server.read_request(reader, index) is not None:
            if index == 0:
                server.answer(connection, 200, b"x", length=10)
                server.close(connection, reader)
                return
            server.answer(connection, 200, b"whole")

    with RawHttpServer(cut_the_first_then_answer).running() as server:
        client = transport()
        with pytest.raises(TransportError, match="body cut short"):
            client.get(f"{server.url}/one")
        assert client.get(f"{server.url}/two").body == b"whole"

    assert server.accepted == 2


# --- proxies from the environment -----------------------------------------------------------


def test_http_proxy_from_the_environment_gets_the_absolute_url(monkeypatch):
    with RawHttpServer(keep_alive(200, b"from the proxy")).running() as proxy, RawHttpServer(keep_alive(200, b"direct")).running() as origin:
        monkeypatch.setenv("http_proxy", proxy.url)
        client = transport()  # proxies are read when the transport is built
        response = client.get(f"{origin.url}/v1/traits?limit=200")

    assert response.body == b"from the proxy"
    (request,) = proxy.requests
    assert request.line == f"GET {origin.url}/v1/traits?limit=200 HTTP/1.1"
    assert request.headers["Host"] == f"127.0.0.1:{origin.port}"
    assert request.headers["Authorization"] == HEADERS["Authorization"]
    assert "Proxy-Authorization" not in request.headers
    assert origin.accepted == 0


def test_proxy_credentials_are_sent_as_proxy_authorization(monkeypatch):
    with RawHttpServer(keep_alive()).running() as proxy:
        monkeypatch.setenv("http_proxy", f"http://proxy-user:p%40ss@127.0.0.1:{proxy.port}")
        transport().get("http://127.0.0.1:9/v1/traits")

    (request,) = proxy.requests
    assert request.headers["Proxy-Authorization"] == "Basic " + base64.b64encode(b"proxy-user:p@ss").decode()


def test_no_proxy_covering_the_host_bypasses_the_proxy(monkeypatch):
    with RawHttpServer(keep_alive(200, b"from the proxy")).running() as proxy, RawHttpServer(keep_alive(200, b"direct")).running() as origin:
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
        response = transport().get(f"{origin.url}/v1/traits?limit=200")

    assert response.body == b"direct"
    assert [request.line for request in origin.requests] == ["GET /v1/traits?limit=200 HTTP/1.1"]
    assert proxy.accepted == 0


def test_proxies_are_read_when_the_transport_is_built(monkeypatch):
    with RawHttpServer(keep_alive(200, b"from the proxy")).running() as proxy, RawHttpServer(keep_alive(200, b"direct")).running() as origin:
        client = transport()
        monkeypatch.setenv("http_proxy", proxy.url)  # too late for this transport
        response = client.get(f"{origin.url}/v1/traits")

    assert response.body == b"direct"
    assert proxy.accepted == 0
