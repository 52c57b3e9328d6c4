"""Servers on 127.0.0.1 for tests that need real sockets.

`LocalProfileServer` is a tiny Profile API for tests that run the connector in a subprocess (where
the fake transport of the `api` fixture cannot reach): answers are chosen by path, like
FakeProfileApi's. `RawHttpServer` hands each accepted TCP connection to a test's own function,
for the HTTP transport's tests of keep-alive, resets, short bodies, slow answers and proxies.
"""

from __future__ import annotations

import itertools
import json
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO, Callable, Iterable, Iterator, Optional
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from unit_tests.builders import Reply, ReplyLike, as_reply, profile_path


@dataclass(frozen=True)
class LocalRequest:
    path: str
    params: dict[str, list[str]]

    def param(self, name: str) -> Optional[str]:
        values = self.params.get(name)
        return values[0] if values else None


class LocalProfileServer:
    def __init__(self) -> None:
        self._handlers: dict[str, Callable[[LocalRequest], Reply]] = {}
        self._request_ids = itertools.count(1)
        self.seen: list[tuple[str, dict[str, str]]] = []  # (path with query, headers)
        self._lock = threading.Lock()
        self._server: Optional[ThreadingHTTPServer] = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def replies(self, stream: str, external_id: str, *replies: ReplyLike, space_id: str = "spa_unit") -> "LocalProfileServer":
        queue = [as_reply(reply) for reply in replies]
        position = itertools.count()
        self._handlers[profile_path(stream, external_id, space_id)] = lambda _: queue[min(next(position), len(queue) - 1)]
        return self

    def handler(self, stream: str, external_id: str, answer: Callable[["LocalRequest"], ReplyLike], space_id: str = "spa_unit") -> "LocalProfileServer":
        """`answer` runs on the server's request thread: requests of several workers really overlap."""
        self._handlers[profile_path(stream, external_id, space_id)] = lambda request: as_reply(answer(request))
        return self

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        with self._lock:
            self.seen.append((handler.path, dict(handler.headers)))
            answer = self._handlers.get(parts.path)
        reply = answer(LocalRequest(parts.path, parse_qs(parts.query))) if answer else Reply(418, {"error": {"message": f"unregistered {parts.path}"}})
        body = reply.body if isinstance(reply.body, bytes) else (reply.body.encode() if isinstance(reply.body, str) else json.dumps(reply.body).encode())
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Request-Id", f"local-{next(self._request_ids)}")
        for key, value in reply.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)

    @contextmanager
    def running(self) -> Iterator["LocalProfileServer"]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else keep-alive requests stall on delayed ACKs

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                owner._answer(self)

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll: shutdown() waits for it, and every test using the server ends with one.
        thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)


# --- raw sockets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRequest:
    """A request as it arrived: its request line, its headers (names as sent), its connection's index."""

    line: str
    headers: dict[str, str]
    connection: int

    @property
    def target(self) -> str:
        return self.line.split(" ")[1]


class RawHttpServer:
    """Accepts TCP connections on 127.0.0.1 and runs `serve(server, connection, reader, index)` for
    each on its own thread (`index` counts accepted connections from 0). `serve` reads requests
    with `read_request` and writes whatever bytes the test wants with `answer` or `sendall`."""

    def __init__(self, serve: Callable[["RawHttpServer", socket.socket, BinaryIO, int], None]):
        self._serve = serve
        self._lock = threading.Lock()
        self._listener: Optional[socket.socket] = None
        self._port = 0
        self._connections: list[socket.socket] = []
        self.accepted = 0
        self.requests: list[RawRequest] = []
        self.stopping = threading.Event()  # set when the test ends: slow handlers stop waiting

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def read_request(self, reader: BinaryIO, index: int) -> Optional[RawRequest]:
        """The next request's line and headers (a GET has no body); None when the client closed."""
        line = reader.readline()
        if not line:
            return None
        headers: dict[str, str] = {}
        while True:
            header = reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip()] = value.strip()
        request = RawRequest(line.decode("latin-1").rstrip("\r\n"), headers, index)
        with self._lock:
            self.requests.append(request)
        return request

    @staticmethod
    def answer(connection: socket.socket, status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = (), length: Optional[int] = None) -> None:
        """Writes a whole answer; `length` overrides the Content-Length (to announce more than is sent)."""
        head = [f"HTTP/1.1 {status} Status", f"Content-Length: {len(body) if length is None else length}"]
        head += [f"{name}: {value}" for name, value in headers]
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    @staticmethod
    def close(connection: socket.socket, reader: BinaryIO) -> None:
        """Closes the connection now (the socket only closes once its reader is closed too)."""
        reader.close()
        connection.close()

    @staticmethod
    def reset(connection: socket.socket, reader: BinaryIO) -> None:
        """Closes with a TCP RST instead of a FIN (SO_LINGER with a zero timeout)."""
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        RawHttpServer.close(connection, reader)

    def _accept_loop(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            connection.settimeout(5)
            with self._lock:
                index = self.accepted
                self.accepted += 1
                self._connections.append(connection)
            threading.Thread(target=self._run, args=(connection, index), daemon=True).start()

    def _run(self, connection: socket.socket, index: int) -> None:
        try:
            with connection.makefile("rb") as reader:
                self._serve(self, connection, reader, index)
        except OSError:
            pass  # the client went away; the test judges by what it saw
        finally:
            connection.close()

    @contextmanager
    def running(self) -> Iterator["RawHttpServer"]:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._port = self._listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            # shutdown() wakes a thread blocked in accept(); close() alone may not on Linux.
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            thread.join(timeout=5)
            with self._lock:
                for connection in self._connections:
                    try:
                        connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
