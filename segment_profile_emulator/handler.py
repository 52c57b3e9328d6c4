"""HTTP: a request's way from the socket to its answer, and the answer's bytes, written by hand
(one write per response, the emulated clock's Date, gzip, half bodies and RST for the faults)."""

from __future__ import annotations

import gzip
import socket
import struct
import time
import traceback
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .admin import ADMIN_PREFIX, AdminRoutes
from .answers import SERVER_ERRORS, Outcome, error_body

if TYPE_CHECKING:
    from .server import EmulatorServer

# nginx's default gzip_comp_level: the cheapest level, for an emulator that shares the machine
GZIP_LEVEL = 1


def _coalesce(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Joins small pieces into writes of about `size` bytes."""
    pending: list[bytes] = []
    pending_size = 0
    for chunk in chunks:
        pending.append(chunk)
        pending_size += len(chunk)
        if pending_size >= size:
            yield b"".join(pending)
            pending, pending_size = [], 0
    if pending:
        yield b"".join(pending)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header accepts gzip: listed (or `*`) with a q-value above 0."""
    if not accept_encoding:
        return False
    weights = {}
    for item in accept_encoding.split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.lower()] = weight
    for coding in ("gzip", "x-gzip", "*"):
        if coding in weights:
            return weights[coding] > 0
    return False


class RequestHeaders(dict):
    """Request headers by lower-cased name; `get` takes any casing, as http.server's message does."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


MAX_REQUEST_HEADERS = 100


class ProfileApiHandler(AdminRoutes, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # else keep-alive requests stall ~40 ms on delayed ACKs
    server: EmulatorServer

    def parse_request(self) -> bool:
        """http.server's parse_request without its email-parser pass over the headers.

        That pass was a fifth of the emulator's CPU per request, and the emulator shares the
        machine with the connector it measures (benchmarks/run.py). Anything but a plain
        `METHOD /path HTTP/1.x` line goes to http.server's own parser and its error answers.
        """
        words = self.raw_requestline.decode("latin-1").rstrip("\r\n").split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            return super().parse_request()
        self.command, self.path, self.request_version = words
        headers = RequestHeaders()
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(headers) >= MAX_REQUEST_HEADERS or len(line) > 65536:
                self.send_error(431, "Request header fields too large")
                return False
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment] # only .get is used
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (self.request_version == "HTTP/1.0" and connection != "keep-alive")
        return True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would cost more than answering it."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        request_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query_string = self.path.partition("?")
        if path.startswith(ADMIN_PREFIX):
            self._serve_admin(method, path, query_string, request_body)
        elif method == "GET":
            self._serve_profile_api(path, query_string)
        else:
            self._send(405, error_body("method_not_allowed", "Only GET is supported."))

    def _serve_profile_api(self, path: str, query_string: str) -> None:
        server = self.server
        stats = server.stats
        arrival = time.time()
        number = stats.request_started(arrival)
        try:
            outcome = server.decide(path, query_string, self.headers, arrival, number)
        except Exception:
            traceback.print_exc()
            outcome = Outcome(status=500, body=error_body(*SERVER_ERRORS[500]))
        if outcome.delay_seconds > 0:
            time.sleep(outcome.delay_seconds)
        # Counted before answering: a client that reads the stats after its answer finds it there.
        stats.request_finished(outcome, arrival)
        if outcome.status is None:
            self.close_connection = True  # a reset: hang up without a word
            return
        body, headers = outcome.body, list(outcome.headers)
        if server.settings.gzip:
            headers.append(("Vary", "Accept-Encoding"))
            if accepts_gzip(self.headers.get("Accept-Encoding")):
                body = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
                headers.append(("Content-Encoding", "gzip"))
        window = None
        if outcome.retry_after is not None:
            window = stats.open_wait_window(outcome.space_id, outcome.retry_after)
            headers.append(("Retry-After", outcome.retry_after.header(window and window.until)))
        try:
            self._send(outcome.status, body, headers, outcome.cut)
        except ConnectionError:
            self.close_connection = True
            if window is not None:
                stats.withdraw_wait_window(outcome.space_id, window)

    def _send_chunked(self, chunks: Iterator[bytes]) -> None:
        """A 200 JSON answer too big to hold whole, sent in chunks as it is produced."""
        head = ["HTTP/1.1 200 OK", "Content-Type: application/json", "Transfer-Encoding: chunked"]
        head += [f"Request-Id: {uuid.uuid4().hex}", f"Date: {self.server.http_date()}"]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        for chunk in _coalesce(chunks, 1 << 18):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (malformed request, unsupported method) as JSON errors too."""
        self.close_connection = True
        try:
            self._send(code, error_body("invalid_request_error", message or HTTPStatus(code).phrase))
        except ConnectionError:
            pass

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]] = (), cut: str | None = None) -> None:
        """One write per response. A `cut` response announces the full length and sends half of
        the body: "truncate" then hangs up as announced (Connection: close, FIN), "reset_mid_body"
        aborts unannounced (RST). The one Date header is the emulated clock's (the response is
        written here, not through http.server's send_response, which would add the wall clock's)."""
        lines = [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            f"Request-Id: {uuid.uuid4().hex}",
            f"Date: {self.server.http_date()}",
        ]
        lines += [f"{name}: {value}" for name, value in headers]
        if cut:
            body = body[: len(body) // 2]
        if cut == "truncate":
            self.close_connection = True
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if cut == "reset_mid_body":
            self._abort()

    def _abort(self) -> None:
        """Hangs up with RST: with SO_LINGER 0 a close aborts the connection, and the client's
        next read fails with ECONNRESET, where a plain close (FIN) would read as a clean end."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.rfile.close()  # the socket's last reference: the close happens now
